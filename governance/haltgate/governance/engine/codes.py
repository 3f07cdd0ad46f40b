"""Budget dimensions and their stable reason codes.

A reason code is an interface (JSON error body, audit column, metric label): never rename
one, add new ones. ``docs/budgets.md`` documents the same table; a unit test checks that
every dimension here appears there.
"""

from __future__ import annotations

from dataclasses import dataclass

from haltgate.governance.policy_base import FailureType


@dataclass(frozen=True, slots=True)
class Dimension:
    """One budget dimension: its key in ``Decision.budget``, its code and failure type."""

    name: str
    """Key in ``Decision.budget`` and ``Decision.warnings`` (snake_case budget field)."""
    code: str
    """Reason code when this dimension refuses a call or halts the run."""
    failure_type: FailureType
    """Failure type reported with the code."""
    unit: str
    """Unit of ``used``/``reserved``/``limit`` in ``Decision.budget``."""


CALLS = Dimension("calls", "calls_exhausted", FailureType.EXHAUSTION, "calls")
TOKENS = Dimension("tokens", "tokens_exhausted", FailureType.EXHAUSTION, "tokens")
INPUT_TOKENS = Dimension("input_tokens", "input_tokens_exhausted", FailureType.EXHAUSTION, "tokens")
OUTPUT_TOKENS = Dimension(
    "output_tokens", "output_tokens_exhausted", FailureType.EXHAUSTION, "tokens"
)
COST_USD = Dimension("cost_usd", "cost_exhausted", FailureType.EXHAUSTION, "USD")
RISK_SCORE = Dimension("risk_score", "risk_exceeded", FailureType.OVERRISK, "risk")
WALL_TIME = Dimension("wall_time", "wall_time_exhausted", FailureType.EXHAUSTION, "seconds")
CONSECUTIVE_FAILURES = Dimension(
    "consecutive_failures", "consecutive_failures", FailureType.EXHAUSTION, "calls"
)
IDENTICAL_RETRIES = Dimension(
    "identical_retries", "identical_retries", FailureType.STAGNATION, "calls"
)
DISTINCT_TOOLS = Dimension(
    "distinct_tools", "distinct_tools_exhausted", FailureType.EXHAUSTION, "tools"
)
DISTINCT_HOSTS = Dimension(
    "distinct_hosts", "distinct_hosts_exhausted", FailureType.EXHAUSTION, "hosts"
)
STAGNATION = Dimension("stagnation", "stagnation_window", FailureType.STAGNATION, "steps")

DIMENSIONS: tuple[Dimension, ...] = (
    CALLS,
    TOKENS,
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    COST_USD,
    RISK_SCORE,
    WALL_TIME,
    CONSECUTIVE_FAILURES,
    IDENTICAL_RETRIES,
    DISTINCT_TOOLS,
    DISTINCT_HOSTS,
    STAGNATION,
)
"""Every dimension, in the order the engine checks them."""

# Codes that are not a dimension.
REPEATED_TOOL_CALLS = "repeated_tool_calls"
"""identical_retries reached by a *tool* call (MCP/HTTP tool): a runaway tool loop."""
UNKNOWN_MODEL_PRICE = "unknown_model_price"
"""The model has no price and the policy says unknownModel: deny (SAFETY, not a halt)."""
DUPLICATE_CALL_ID = "duplicate_call_id"
"""A Reserve reused the call_id of a call still in flight (a sidecar bug; SAFETY)."""
INVALID_EVENT = "invalid_event"
"""Non-finite timestamp, negative amounts: refused, fail closed (SAFETY)."""
EXTERNAL_HALT = "external_halt"
"""Default code of an EXTERNAL halt that came without one."""
STATE_UNREADABLE = "state_unreadable"
"""The Governor could not read its persisted state at start: halted until reset."""
STATE_PERSIST_FAILED = "state_persist_failed"
"""The Governor could not persist a reservation: the call is refused (fail closed)."""
RESET = "reset"
"""Code of the (allowed) decision of a Reset."""
LIFTED = "lifted"
"""Code of the decision of a Lift that ended an EXTERNAL halt."""
