"""Budget sections of the policy: the limits per agent run, the model prices, the engine.

``spec.budgets`` (calls, tokens, cost, wall time, failures, retries, risk, distinct tools
and hosts, stagnation), ``spec.pricing`` (overrides of the shipped price table) and
``spec.engine`` (which budget engine enforces them). Pools reuse the periodic limits.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from haltgate.governance.policy_base import Period, Spec, Window

NonNegInt = Annotated[int, Field(ge=0)]
NonNegFloat = Annotated[float, Field(ge=0)]


class PeriodicLimit(Spec):
    """A limit that applies per run, or per hour/day window."""

    limit: int = Field(ge=0, description="Maximum allowed in one period.")
    period: Period = Field(
        default=Period.RUN,
        description="Accounting period: the whole run (until reset), an hour or a day.",
    )
    window: Window = Field(
        default=Window.CALENDAR,
        description=(
            "For hour/day periods: 'calendar' resets at the UTC boundary (xx:00, 00:00); "
            "'rolling' counts the last hour/day from each call's timestamp."
        ),
    )


class TokenBudget(Spec):
    limit: int | None = Field(
        default=None, ge=0, description="Maximum input+output tokens in one period."
    )
    input: int | None = Field(default=None, ge=0, description="Maximum input (prompt) tokens.")
    output: int | None = Field(
        default=None, ge=0, description="Maximum output (completion, incl. reasoning) tokens."
    )
    period: Period = Field(default=Period.RUN, description="Accounting period.")
    window: Window = Field(default=Window.CALENDAR, description="Calendar or rolling window.")


class CostBudget(Spec):
    limit: float = Field(ge=0, description="Maximum spend in US dollars in one period.")
    period: Period = Field(default=Period.RUN, description="Accounting period.")
    window: Window = Field(default=Window.CALENDAR, description="Calendar or rolling window.")


class WallTimeBudget(Spec):
    limit_seconds: float = Field(
        gt=0, description="Seconds from the run's first call after which every call is refused."
    )


class CountLimit(Spec):
    limit: int = Field(ge=1, description="Halt when the count reaches this value.")


class RiskBudget(Spec):
    limit: float = Field(gt=0, description="Halt (OVERRISK) when accumulated risk reaches this.")


class StagnationBudget(Spec):
    window: int = Field(
        ge=2,
        description=(
            "Halt (STAGNATION) after this many consecutive steps without progress: the same "
            "call repeated, the same error repeated, no new tool and no new result."
        ),
    )


class Budgets(Spec):
    calls: PeriodicLimit | None = Field(default=None, description="Number of governed calls.")
    tokens: TokenBudget | None = Field(default=None, description="LLM token budget.")
    cost_usd: CostBudget | None = Field(
        default=None, alias="costUSD", description="Spend in US dollars, from the price table."
    )
    wall_time: WallTimeBudget | None = Field(default=None, description="Run duration budget.")
    consecutive_failures: CountLimit | None = Field(
        default=None, description="Failed calls (upstream 5xx, network errors) in a row."
    )
    identical_retries: CountLimit | None = Field(
        default=None, description="The exact same request repeated in a row."
    )
    risk_score: RiskBudget | None = Field(
        default=None, description="Sum of tool risk weights and guardrail finding risks."
    )
    distinct_tools: CountLimit | None = Field(
        default=None, description="Number of different tools the agent may use in a run."
    )
    distinct_hosts: CountLimit | None = Field(
        default=None, description="Number of different upstream hosts in a run."
    )
    stagnation: StagnationBudget | None = Field(default=None, description="Steps without progress.")
    warn_at: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="Fraction of a limit at which a warning is reported before the halt.",
    )


class ModelPrice(Spec):
    """Prices in US dollars per one million tokens."""

    input: float = Field(ge=0, description="USD per 1M input tokens.")
    output: float = Field(ge=0, description="USD per 1M output tokens.")
    cached_input: float | None = Field(
        default=None, ge=0, description="USD per 1M cached input tokens (defaults to input)."
    )
    cache_write: float | None = Field(
        default=None, ge=0, description="USD per 1M cache-write tokens (defaults to input)."
    )
    reasoning: float | None = Field(
        default=None, ge=0, description="USD per 1M reasoning tokens (defaults to output)."
    )
    context_window: int | None = Field(
        default=None,
        ge=1,
        description="Largest prompt the model accepts, in tokens: the input reserved for a "
        "call that refers to stored context or files (previous_response_id, file_id, image "
        "URLs...). Unknown: such calls are refused (unknown_context_window).",
    )


class Pricing(Spec):
    models: dict[str, ModelPrice] = Field(
        default_factory=dict,
        description="Overrides of the shipped price table, keyed by model name or glob.",
    )
    unknown_model: Literal["deny", "default"] = Field(
        default="deny",
        description="What to do with a model missing from the table: deny the call, or price "
        "it with 'default'.",
    )
    default: ModelPrice | None = Field(
        default=None, description="Price for unknown models when unknownModel is 'default'."
    )


class Engine(Spec):
    type: Literal["builtin", "emocore"] = Field(
        default="builtin", description="Budget engine: haltgate's builtin or emocore."
    )
    profile: str | None = Field(default=None, description="emocore profile name.")
