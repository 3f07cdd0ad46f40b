"""OPA's answers: the decision type and the parsing of a decision rule's value.

The policy's decision rule answers either a boolean or an object ``{allow, reason,
failure_type, risk, headers}`` (see ``docs/policies.md``). Everything that is not a clear
answer is a deny with a typed code:

=================  =====================================================  ==============
code               when                                                   fail mode
=================  =====================================================  ==============
opa_denied         the policy answered allow = false                      —
opa_undefined      the decision rule is undefined for this input          always deny
opa_malformed      the answer is neither a bool nor a valid object        always deny
opa_error          OPA reported an evaluation error (e.g. a conflict)     always deny
opa_unavailable    OPA unreachable, or the policy not loaded              ``failMode``
opa_timeout        no answer within ``timeoutMs``                         ``failMode``
=================  =====================================================  ==============

Only unavailability and timeouts follow ``spec.opa.failMode`` (closed by default): a policy
that answers badly is a policy bug and never opens the gate. A decision allowed because of
``failMode: open`` carries ``fail_open=True`` so the sidecar counts it in a metric and
writes it to the audit trail.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from haltgate.governance.policy_base import FailureType

__all__ = [
    "CODE_OPA_DENIED",
    "CODE_OPA_ERROR",
    "CODE_OPA_MALFORMED",
    "CODE_OPA_TIMEOUT",
    "CODE_OPA_UNAVAILABLE",
    "CODE_OPA_UNDEFINED",
    "OPADecision",
    "PolicyEvaluator",
    "cut_reason",
    "malformed_decision",
    "parse_decision",
]

CODE_OPA_DENIED: Final = "opa_denied"
CODE_OPA_UNDEFINED: Final = "opa_undefined"
CODE_OPA_MALFORMED: Final = "opa_malformed"
CODE_OPA_ERROR: Final = "opa_error"
CODE_OPA_UNAVAILABLE: Final = "opa_unavailable"
CODE_OPA_TIMEOUT: Final = "opa_timeout"

MAX_REASON_CHARS: Final = 512
"""Reasons and OPA error messages reach the agent and the audit trail: cut to this size."""

MAX_HEADERS: Final = 16
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}\Z")
_FORBIDDEN_HEADERS: Final = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "upgrade",
        "keep-alive",
        "te",
        "trailer",
        "proxy-authorization",
        "proxy-connection",
    }
)
"""Framing and hop-by-hop headers a policy must not set (they would corrupt the exchange)."""


@dataclass(frozen=True, slots=True)
class OPADecision:
    """The outcome of one OPA decision.

    ``allow``: go ahead. ``code``: ``None`` for a plain allow, else one of the ``opa_*``
    codes (also set on a fail-open allow, which then has ``fail_open=True``). ``headers``:
    on allow, added to the request forwarded upstream; on deny, to the error response.
    ``risk``: added to the risk budget. ``failure_type``: for denials the policy's choice
    (default SAFETY); ``None`` for unavailability (the sidecar reports it as unavailable).
    """

    allow: bool
    reason: str = ""
    failure_type: FailureType | None = None
    risk: float = 0.0
    headers: Mapping[str, str] = field(default_factory=dict)
    code: str | None = None
    fail_open: bool = False
    """Allowed only because OPA failed and ``failMode`` is ``open``: count and audit it."""
    cached: bool = False
    """Served from the decision cache."""
    opa_decision_id: str | None = None
    """OPA's own decision id when its decision log is on, to join the two trails."""


class PolicyEvaluator(Protocol):
    """What the sidecar's pipeline needs from a policy decision point."""

    async def decide(self, input: Mapping[str, Any]) -> OPADecision:
        """Decide one call. Never raises for OPA's failures: they are typed denials."""
        ...


# --------------------------------------------------------------------------- parsing


def cut_reason(text: str) -> str:
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


def malformed_decision(why: str) -> OPADecision:
    return OPADecision(
        False,
        cut_reason(f"malformed OPA decision: {why}"),
        FailureType.SAFETY,
        code=CODE_OPA_MALFORMED,
    )


def parse_decision(body: Any) -> OPADecision:
    """Turn the body of ``POST /v1/data/<path>`` (already parsed JSON) into a decision.

    ``{}`` (no ``result``) is undefined; ``result`` must be a boolean or an object with a
    boolean ``allow`` and optional ``reason`` (string), ``failure_type`` (one of the failure
    types), ``risk`` (finite number >= 0) and ``headers`` (string to string). Unknown keys are
    ignored so policies can carry their own annotations.
    """
    if not isinstance(body, dict):
        return malformed_decision("response is not a JSON object")
    decision_id = body.get("decision_id")
    decision_id = decision_id if isinstance(decision_id, str) else None
    if "result" not in body:
        return OPADecision(
            False,
            "OPA decision is undefined for this input (check the "
            "decision path and give the rule a default)",
            FailureType.SAFETY,
            code=CODE_OPA_UNDEFINED,
            opa_decision_id=decision_id,
        )
    result = body["result"]
    if isinstance(result, bool):
        return OPADecision(
            result,
            "" if result else "denied by OPA policy",
            None if result else FailureType.SAFETY,
            code=None if result else CODE_OPA_DENIED,
            opa_decision_id=decision_id,
        )
    if not isinstance(result, dict):
        return malformed_decision(f"expected a boolean or an object, got {type(result).__name__}")
    allow = result.get("allow")
    if not isinstance(allow, bool):
        return malformed_decision("'allow' must be a boolean")
    reason = result.get("reason", "")
    if not isinstance(reason, str):
        return malformed_decision("'reason' must be a string")
    raw_ft = result.get("failure_type")
    failure_type: FailureType | None = None
    if raw_ft is not None:
        if not isinstance(raw_ft, str) or raw_ft.upper() not in FailureType.__members__:
            return malformed_decision(f"'failure_type' must be one of {', '.join(FailureType)}")
        failure_type = FailureType[raw_ft.upper()]
    risk = result.get("risk", 0)
    if (
        isinstance(risk, bool)
        or not isinstance(risk, int | float)
        or not (math.isfinite(risk) and risk >= 0)
    ):
        return malformed_decision("'risk' must be a finite number >= 0")
    headers = result.get("headers", {})
    if not isinstance(headers, dict) or len(headers) > MAX_HEADERS:
        return malformed_decision(f"'headers' must be an object of at most {MAX_HEADERS} entries")
    for name, value in headers.items():
        if not _HEADER_NAME.match(name) or name.lower() in _FORBIDDEN_HEADERS:
            return malformed_decision(f"header name {name!r} is not allowed")
        if not isinstance(value, str) or any(c in value for c in "\r\n\0") or len(value) > 1024:
            return malformed_decision(f"header {name!r} must be a single-line string")
    if not allow and failure_type is None:
        failure_type = FailureType.SAFETY
    return OPADecision(
        allow=allow,
        reason=cut_reason(reason or ("" if allow else "denied by OPA policy")),
        failure_type=None if allow else failure_type,
        risk=float(risk),
        headers=dict(headers),
        code=None if allow else CODE_OPA_DENIED,
        opa_decision_id=decision_id,
    )
