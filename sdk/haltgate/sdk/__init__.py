"""haltgate for agent code: typed halts, budgets, and framework integrations.

The ``haltgate-sdk`` distribution: it speaks HTTP to the sidecar and imports nothing of
haltgate's engine, policy model or servers. ``haltgate.sdk``, ``.errors``, ``.client`` and
``.wire`` need only the standard library; ``haltgate.sdk.langchain`` needs the
``langchain`` extra, ``haltgate.sdk.autogen`` the ``autogen`` extra. See
``docs/integrations.md``.
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
