"""The one error root of haltgate, with stable snake_case codes.

A ``code`` is an interface: it is the ``error.code`` of the JSON body the agent receives,
the ``code`` column of the audit record and the ``code`` label of metrics. Never rename one;
add new ones. Halts and denials carry the :class:`FailureType` of the budget taxonomy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from haltgate.governance.policy_base import FailureType

__all__ = [
    "BadRequestError",
    "DeniedError",
    "HaltgateError",
    "NotFoundError",
    "UnavailableError",
    "UpstreamError",
]

MAX_MESSAGE_CHARS = 512
"""Messages can quote untrusted input (a model name, a host): cut them to a fixed size."""


class HaltgateError(Exception):
    """Root of every error haltgate reports to a caller.

    ``code``: stable snake_case reason. ``category``: the ``error.type`` of the JSON body
    when there is no failure type (``invalid_request``, ``upstream_error``, ``unavailable``,
    ``not_found``, ``internal``). ``failure_type``: set for halts and denials.
    """

    code: str = "internal_error"
    category: str = "internal"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        failure_type: FailureType | None = None,
        budget: Mapping[str, Any] | None = None,
    ) -> None:
        message = message[:MAX_MESSAGE_CHARS]
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.failure_type = failure_type
        self.budget = budget

    @property
    def type(self) -> str:
        """``error.type`` of the JSON body: the failure type, else the category."""
        return self.failure_type.value if self.failure_type is not None else self.category


class DeniedError(HaltgateError):
    """A governance decision refused the call (halt, budget, tool rule, guardrail, OPA)."""

    code = "denied"
    category = "denied"


class BadRequestError(HaltgateError):
    """The agent's request cannot be governed: malformed, not JSON, too large."""

    code = "bad_request"
    category = "invalid_request"


class UpstreamError(HaltgateError):
    """The upstream failed: unreachable, timed out, truncated its answer."""

    code = "upstream_error"
    category = "upstream_error"


class UnavailableError(HaltgateError):
    """A control the decision depends on is unavailable (audit, OPA): fail closed."""

    code = "unavailable"
    category = "unavailable"


class NotFoundError(HaltgateError):
    """The target is unknown (e.g. an upstream alias the policy does not define)."""

    code = "not_found"
    category = "not_found"
