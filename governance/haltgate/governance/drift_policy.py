"""``spec.drift`` of a GovernancePolicy: which behaviour dimensions to watch and what a
sustained drift does (warn, or halt the run).

The model is wire-compatible with the other spec models (camelCase, unknown fields
rejected). :func:`drift_problems` holds the rules the schema cannot express and
:func:`parse_drift` turns any bad input into :class:`DriftPolicyError` naming each field;
:func:`drift_settings` maps a valid model to the tracker's :class:`DriftSettings`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Literal

from pydantic import Field, ValidationError

from haltgate.governance.drift import DIMENSIONS, DriftSettings
from haltgate.governance.policy_base import Spec

__all__ = [
    "BEHAVIOUR_DRIFT",
    "Drift",
    "DriftDimension",
    "DriftDimensionName",
    "DriftPolicyError",
    "drift_problems",
    "drift_settings",
    "parse_drift",
]

BEHAVIOUR_DRIFT = "behaviour_drift"
"""Reason code of a halt for sustained drift (OVERRISK) and of its audit record/metric."""


class DriftDimensionName(StrEnum):
    """A behaviour dimension (the same name is the ``dimension`` label of the metrics)."""

    COST_PER_CALL = "cost_per_call"
    TOKENS_PER_CALL = "tokens_per_call"
    TOOL_MIX = "tool_mix"
    REFUSAL_RATE = "refusal_rate"
    ERROR_RATE = "error_rate"
    LATENCY = "latency"


class DriftDimension(Spec):
    name: DriftDimensionName = Field(
        description="cost_per_call, tokens_per_call (LLM calls with known usage), tool_mix "
        "(which tool each call uses), refusal_rate, error_rate (upstream failures) or "
        "latency (upstream)."
    )
    threshold: float | None = Field(
        default=None,
        gt=0,
        le=10,
        description="Score at or above which a window of this dimension is drifted "
        "(defaults to spec.drift.threshold).",
    )


class Drift(Spec):
    """Behaviour drift detection for the governed agent (docs/drift.md)."""

    action: Literal["warn", "halt"] = Field(
        default="warn",
        description="What a sustained drift does: 'warn' exports it (metrics, alert, audit); "
        "'halt' also halts the run (OVERRISK, code behaviour_drift) until an operator reset.",
    )
    threshold: float = Field(
        default=0.5,
        gt=0,
        le=10,
        description="Score at or above which a window is drifted. Scores are the shift of "
        "a window from the baseline in per-call standard deviations, sampling noise taken "
        "out (0.2 small, 0.5 medium, 0.8 large).",
    )
    sustain: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Drifted windows in a row that make a sustained drift.",
    )
    window_calls: int = Field(
        default=100,
        ge=10,
        le=10000,
        description="Calls per window of one dimension (counted, not timed).",
    )
    baseline_windows: int = Field(
        default=20,
        ge=2,
        le=1000,
        description="How many windows the baseline remembers (EWMA horizon).",
    )
    min_samples: int = Field(
        default=500,
        ge=10,
        le=1_000_000,
        description="Calls a dimension's baseline must have seen before it is scored "
        "(warm-up); at least windowCalls.",
    )
    dimensions: list[DriftDimension] | None = Field(
        default=None,
        min_length=1,
        description="Dimensions watched, each optionally with its own threshold. Unset: "
        "all six at spec.drift.threshold.",
    )


def drift_problems(drift: Drift | None, path: str = "spec.drift") -> list[tuple[str, str]]:
    """``(field path, message)`` of every problem of a ``spec.drift`` the schema cannot
    see (paths use the wire names)."""
    if drift is None:
        return []
    out: list[tuple[str, str]] = []
    if drift.min_samples < drift.window_calls:
        out.append(
            (
                f"{path}.minSamples",
                f"must be >= windowCalls ({drift.window_calls}): the baseline needs one "
                "full window",
            )
        )
    seen: set[str] = set()
    for i, dim in enumerate(drift.dimensions or ()):
        if dim.name in seen:
            out.append((f"{path}.dimensions[{i}].name", f"duplicate dimension {dim.name.value!r}"))
        seen.add(dim.name)
    return out


class DriftPolicyError(ValueError):
    """A ``spec.drift`` is invalid; ``problems`` are ``(field path, message)`` pairs."""

    code = "invalid_policy"

    def __init__(self, problems: Iterable[tuple[str, str]]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{p}: {m}" for p, m in self.problems))


def _wire_path(prefix: str, loc: Iterable[int | str]) -> str:
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def parse_drift(doc: Any, path: str = "spec.drift") -> Drift:
    """A valid :class:`Drift` from a wire document, or :class:`DriftPolicyError` with
    every problem by field path (``spec.drift.sustain: ...``)."""
    try:
        drift = Drift.model_validate(doc)
    except ValidationError as e:
        raise DriftPolicyError(
            (_wire_path(path, err["loc"]), str(err["msg"]).removeprefix("Value error, "))
            for err in e.errors()
        ) from None
    problems = drift_problems(drift, path)
    if problems:
        raise DriftPolicyError(problems)
    return drift


def drift_settings(drift: Drift) -> DriftSettings:
    """The tracker's settings for a valid ``spec.drift``."""
    if drift.dimensions is None:
        thresholds: Mapping[str, float] = dict.fromkeys(DIMENSIONS, drift.threshold)
    else:
        thresholds = {
            d.name.value: (d.threshold if d.threshold is not None else drift.threshold)
            for d in drift.dimensions
        }
    return DriftSettings(
        window_calls=drift.window_calls,
        baseline_windows=drift.baseline_windows,
        min_samples=drift.min_samples,
        sustain=drift.sustain,
        thresholds=MappingProxyType(dict(thresholds)),
    )
