"""A synthetic agent workload for drift tests: seeded, so every run sees the same calls."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from haltgate.governance.drift import CallObservation


@dataclass(frozen=True)
class Behaviour:
    """How an agent's calls look; every field is a distribution parameter."""

    tools: dict[str, float] = field(
        default_factory=lambda: {"llm": 0.6, "mcp:files/read": 0.25, "http:search.example": 0.15}
    )
    log_cost: float = -6.0
    """Mean of log(cost USD) of an LLM call (about 0.0025 USD)."""
    log_cost_sd: float = 0.6
    tokens_per_usd: float = 400_000.0
    log_latency: float = 0.0
    """Mean of log(latency seconds)."""
    log_latency_sd: float = 0.4
    error_rate: float = 0.02
    refusal_rate: float = 0.01

    def but(self, **changes: object) -> Behaviour:
        return replace(self, **changes)  # type: ignore[arg-type]


def calls(behaviour: Behaviour, n: int, rng: random.Random) -> Iterator[CallObservation]:
    """``n`` calls of an agent behaving so."""
    names = list(behaviour.tools)
    weights = [behaviour.tools[t] for t in names]
    for _ in range(n):
        tool = rng.choices(names, weights)[0]
        if rng.random() < behaviour.refusal_rate:
            yield CallObservation(tool, refused=True)
            continue
        latency = rng.lognormvariate(behaviour.log_latency, behaviour.log_latency_sd)
        error = rng.random() < behaviour.error_rate
        if tool == "llm" and not error:
            cost = rng.lognormvariate(behaviour.log_cost, behaviour.log_cost_sd)
            yield CallObservation(
                tool, False, False, latency, cost, round(cost * behaviour.tokens_per_usd)
            )
        else:
            yield CallObservation(tool, False, error, latency)
