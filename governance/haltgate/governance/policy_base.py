"""The vocabulary of the policy model: the ``Spec`` base class and the enumerations.

Every section of the GovernancePolicy and BudgetPool specs (``policy_budgets``,
``policy_rules``, ``policy_checks``, ``policy``) builds on these; the enumerations are also
the typed values the rest of haltgate passes around (failure types, request kinds...).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class Spec(BaseModel):
    """Base of every spec model: camelCase aliases, unknown fields rejected, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


class FailureType(StrEnum):
    """Typed halt failures (EmoCore's taxonomy)."""

    EXHAUSTION = "EXHAUSTION"
    """A spend budget (calls, tokens, cost, time) is used up."""
    STAGNATION = "STAGNATION"
    """The agent repeats itself without progress."""
    OVERRISK = "OVERRISK"
    """Accumulated risk passed its limit."""
    SAFETY = "SAFETY"
    """A guardrail or policy forbids the action."""
    EXTERNAL = "EXTERNAL"
    """Halted from outside: an operator, a pool, a cascade."""


class Period(StrEnum):
    RUN = "run"
    HOUR = "hour"
    DAY = "day"


class Window(StrEnum):
    ROLLING = "rolling"
    CALENDAR = "calendar"


class RequestKind(StrEnum):
    LLM = "llm"
    MCP = "mcp"
    HTTP = "http"


class Action(StrEnum):
    ALLOW = "allow"
    DENY = "deny"


class Provider(StrEnum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"


class TLSMode(StrEnum):
    INSPECT = "inspect"
    PASSTHROUGH = "passthrough"


class GuardAction(StrEnum):
    BLOCK = "block"
    REDACT = "redact"
    LOG = "log"


class Direction(StrEnum):
    REQUEST = "request"
    RESPONSE = "response"
    BOTH = "both"


class PayloadCapture(StrEnum):
    NONE = "none"
    REDACTED = "redacted"
    FULL = "full"


class FailMode(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
