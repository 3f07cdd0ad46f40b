"""The sidecar's wire format, as the agent sees it: the one place the SDK names it.

Documented once, for every client, in ``docs/sidecar.md`` ("Refusals and errors", "What
the agent can read about its own run"). A refusal is an HTTP answer whose JSON body is::

    {"error": {"type": "EXHAUSTION", "code": "calls_exhausted", "message": "...",
               "decision_id": "...", "budget": {"calls": {"used": 5, "reserved": 0,
                                                          "limit": 5}}}}

the same object in the ``data`` of a JSON-RPC error (MCP), or in the ``data`` of a final
``event: error`` of a stream the sidecar cut. The headers below come with it.

The SDK is its own distribution and imports nothing of the sidecar's: these names are
copied here on purpose, and the main suite checks them against the sidecar's own
definitions (``tests/sdk/test_wire.py``), so the two cannot drift apart.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "CATEGORIES",
    "DECISION_HEADER",
    "FAILURE_HEADER",
    "RETRY_AFTER_HEADER",
    "RUN_HALT_CODES",
    "RUN_HALT_PREFIXES",
    "SELF_PATH",
    "WARNING_HEADER",
    "FailureType",
]


class FailureType(StrEnum):
    """``error.type`` of a governance refusal: why the call was not forwarded."""

    EXHAUSTION = "EXHAUSTION"
    """A budget (calls, tokens, cost, wall time, failures) is used up. HTTP 429."""
    STAGNATION = "STAGNATION"
    """The agent repeats itself without progress. HTTP 409."""
    OVERRISK = "OVERRISK"
    """Accumulated risk passed its limit. HTTP 403."""
    SAFETY = "SAFETY"
    """A rule forbids the call (tool rule, guardrail, OPA), or the run is halted for
    safety. HTTP 403."""
    EXTERNAL = "EXTERNAL"
    """Halted from outside: an operator, a budget pool, a cascade rule. HTTP 423."""


CATEGORIES = frozenset({"invalid_request", "not_found", "upstream_error", "unavailable",
                        "internal", "denied"})  # fmt: skip
"""``error.type`` of the sidecar's errors that are not governance decisions."""

RUN_HALT_CODES = frozenset({
    # budget dimensions (docs/budgets.md)
    "calls_exhausted", "tokens_exhausted", "input_tokens_exhausted",
    "output_tokens_exhausted", "cost_exhausted", "risk_exceeded", "wall_time_exhausted",
    "consecutive_failures", "identical_retries", "distinct_tools_exhausted",
    "distinct_hosts_exhausted", "stagnation_window",
    # the engine's other halts
    "repeated_tool_calls", "external_halt", "state_unreadable", "state_persist_failed",
})  # fmt: skip
"""Codes of the budget engine: a ``SAFETY`` refusal with one of these halts the run; any
other ``SAFETY`` code refuses one call only (a tool rule, a guardrail, OPA)."""

RUN_HALT_PREFIXES = ("emocore_",)
"""Code prefixes of the EmoCore engine's halts (same meaning as :data:`RUN_HALT_CODES`)."""

DECISION_HEADER = "x-haltgate-decision-id"
"""On every answer of the sidecar: the decision's id (audit record, logs)."""
FAILURE_HEADER = "x-haltgate-failure-type"
"""On halts and denials: the failure type."""
WARNING_HEADER = "x-haltgate-budget-warning"
"""Budget dimensions past their ``warnAt``, comma-separated."""
RETRY_AFTER_HEADER = "retry-after"
"""Seconds until a budget period frees room (periodic budgets only)."""

SELF_PATH = "/haltgate/v1/self"
"""The read-only view of the agent's own run on the explicit port (no token)."""
