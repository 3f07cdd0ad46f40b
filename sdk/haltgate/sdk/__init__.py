"""haltgate for agent code: typed halts, budgets, and framework integrations.

``haltgate.sdk.client`` (sidecar client and error mapping) needs nothing beyond haltgate;
``haltgate.sdk.langchain`` needs the ``langchain`` extra, ``haltgate.sdk.autogen`` the
``autogen`` extra. See ``docs/integrations.md``.
"""

from haltgate.sdk.errors import (
    DeniedError,
    ExhaustionError,
    ExternalHaltError,
    HaltError,
    HaltgateError,
    OverriskError,
    SafetyError,
    SidecarError,
    StagnationError,
)

__all__ = [
    "DeniedError",
    "ExhaustionError",
    "ExternalHaltError",
    "HaltError",
    "HaltgateError",
    "OverriskError",
    "SafetyError",
    "SidecarError",
    "StagnationError",
]
