"""Behaviour drift: per-agent baselines of what calls look like, and how far recent calls moved.

Six dimensions are watched per agent:

- ``cost_per_call`` (USD) and ``tokens_per_call``: LLM calls whose usage is known;
- ``latency``: seconds from forwarding a call to the upstream's answer;
- ``error_rate``: forwarded calls whose upstream failed (5xx, network error);
- ``refusal_rate``: governed calls haltgate refused;
- ``tool_mix``: which tool each governed call used (``llm``, ``mcp:server/tool``, ...).

**Windows.** Observations of one dimension are grouped into windows of ``window_calls``
observations (counted, not timed: an idle agent produces no window and the result does not
depend on a clock). When a window is full it is scored against the baseline, then folded
into it, unless it is drifted: drifted windows are held out of the baseline (a drift must
not teach the baseline that it is normal) until ``baseline_windows`` of them came in a row;
a change that lasts that long is then learnt as the new normal, and its score decays.
An operator who accepts a change earlier calls :meth:`DriftTracker.rebaseline`.

The baselines and the scores are :mod:`haltgate.governance.drift_stats`'s (what is
computed, and why those statistics). A window scored at or over its threshold is
*drifted*; ``sustain`` drifted windows in a row are a *sustained* drift.

The tracker is deterministic and synchronous (one asyncio loop calls it); its state
serialises to JSON (:meth:`DriftTracker.to_json`) and restores, so a restarted sidecar
keeps its baselines.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import orjson

from haltgate.governance.drift_stats import (
    MAX_TOOL_CHARS,
    CategoricalStat,
    DriftStateError,
    NumericStat,
    read_int,
)

__all__ = [
    "CATEGORICAL_DIMENSIONS",
    "DIMENSIONS",
    "NUMERIC_DIMENSIONS",
    "OTHER_TOOL",
    "CallObservation",
    "DriftSettings",
    "DriftTracker",
    "WindowScore",
]

NUMERIC_DIMENSIONS: tuple[str, ...] = ("cost_per_call", "tokens_per_call", "latency")
CATEGORICAL_DIMENSIONS: tuple[str, ...] = ("tool_mix", "refusal_rate", "error_rate")
DIMENSIONS: tuple[str, ...] = (
    "cost_per_call",
    "tokens_per_call",
    "tool_mix",
    "refusal_rate",
    "error_rate",
    "latency",
)
"""Every dimension, by the name used in policies, metric labels and halt messages."""

VALUE_FLOORS: Mapping[str, float] = MappingProxyType(
    {"cost_per_call": 1e-6, "tokens_per_call": 1.0, "latency": 1e-3}
)
"""Added before the log (USD, tokens, seconds): values far below these count as equal."""

OTHER_TOOL = "_other"
"""Tool-mix category of tools beyond ``max_tools`` (a new tool still shows as a shift)."""

STATE_VERSION = 1
_EVENT = "1"
_NO_EVENT = "0"


@dataclass(frozen=True, slots=True)
class DriftSettings:
    """How the tracker windows, remembers and judges (``spec.drift`` in a policy)."""

    window_calls: int = 100
    """Observations per window of one dimension."""
    baseline_windows: int = 20
    """EWMA horizon in windows: how long the baseline remembers."""
    min_samples: int = 500
    """Observations folded into a dimension's baseline before it is scored (warm-up)."""
    sustain: int = 3
    """Drifted windows in a row that make a sustained drift."""
    thresholds: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType(dict.fromkeys(DIMENSIONS, 0.5))
    )
    """Watched dimensions and the score (per-call standard deviations) at or above which
    a window of each is drifted; dimensions not listed are not tracked."""
    max_agents: int = 64
    """Agents tracked at most; calls of further agents are counted, not tracked."""
    max_tools: int = 32
    """Distinct tool-mix categories per agent; more tools count as :data:`OTHER_TOOL`."""

    def __post_init__(self) -> None:
        for name in ("window_calls", "baseline_windows", "sustain", "max_agents", "max_tools"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1")
        if self.min_samples < 0:
            raise ValueError("min_samples: must be >= 0")
        for dim, limit in self.thresholds.items():
            if dim not in DIMENSIONS:
                raise ValueError(f"thresholds.{dim}: unknown dimension")
            if not (limit > 0 and math.isfinite(limit)):
                raise ValueError(f"thresholds.{dim}: must be a finite number > 0")


@dataclass(slots=True)
class CallObservation:
    """What one governed call tells the tracker. ``None``: the call says nothing there.
    (Not frozen: one is made per call, and a frozen dataclass costs twice as much to make.)"""

    tool: str
    """Tool-mix key: ``llm``, ``mcp:<server>/<tool>``, ``http:<host>``..."""
    refused: bool
    """haltgate refused the call (not counting refusals of an already halted run)."""
    error: bool | None = None
    """Forwarded calls: whether the upstream failed."""
    latency_s: float | None = None
    """Forwarded calls: upstream latency in seconds."""
    cost_usd: float | None = None
    """LLM calls with known usage: cost in USD."""
    tokens: float | None = None
    """LLM calls with known usage: input + output tokens."""


@dataclass(frozen=True, slots=True)
class WindowScore:
    """One completed window of one dimension, scored against the baseline."""

    agent: str
    dimension: str
    score: float
    threshold: float
    consecutive: int
    """Drifted windows in a row, this one included (0 if this one is not drifted)."""
    sustained: bool
    """``consecutive >= sustain``."""
    onset: bool
    """This window made the drift sustained (reported once per episode)."""
    direction: int = 0
    """Numeric dimensions: +1 the window is higher than the baseline, -1 lower."""

    @property
    def drifted(self) -> bool:
        return self.score >= self.threshold


_Dim = NumericStat | CategoricalStat


def _new_dim(name: str) -> _Dim:
    if name in NUMERIC_DIMENSIONS:
        return NumericStat(VALUE_FLOORS[name])
    return CategoricalStat()


# --------------------------------------------------------------------------- tracker


class DriftTracker:
    """Per-agent behaviour baselines and drift scores (see the module docstring)."""

    def __init__(self, settings: DriftSettings | None = None) -> None:
        self.settings = settings if settings is not None else DriftSettings()
        self._agents: dict[str, dict[str, _Dim]] = {}
        self.untracked_calls = 0
        """Calls of agents beyond ``max_agents`` (observed, not tracked)."""

    # ------------------------------------------------------------------ settings

    def update_settings(self, settings: DriftSettings) -> None:
        """New settings (policy reload): baselines are kept; dimensions no longer watched
        are dropped, newly watched ones start their warm-up. The baseline is per call, so
        it stays valid when the window size changes."""
        self.settings = settings
        watched = settings.thresholds
        for dims in self._agents.values():
            for name in [n for n in dims if n not in watched]:
                del dims[name]
            for name in watched:
                if name not in dims:
                    dims[name] = _new_dim(name)

    # ------------------------------------------------------------------ observing

    def observe(self, agent: str, call: CallObservation) -> list[WindowScore]:
        """Record one call; the scores of the windows it completed (usually none)."""
        dims = self._agents.get(agent)
        if dims is None:
            if len(self._agents) >= self.settings.max_agents:
                self.untracked_calls += 1
                return []
            dims = self._agents[agent] = {n: _new_dim(n) for n in self.settings.thresholds}
        out: list[WindowScore] = []
        for name, dim in dims.items():
            if isinstance(dim, NumericStat):
                value = _numeric_value(name, call)
                if value is None or not math.isfinite(value):
                    continue
                dim.add(value)
            else:
                key = self._category(name, call, dim)
                if key is None:
                    continue
                dim.add(key)
            if dim.wn >= self.settings.window_calls:
                out.append(self._close_window(agent, name, dim))
        return out

    def admits_tool(self, agent: str, tool: str) -> bool:
        """Whether ``tool`` would count as itself in ``agent``'s tool mix (known, or a free
        slot), not as :data:`OTHER_TOOL`: callers skip costly work for a key that would
        be dropped anyway."""
        dim = self._agents.get(agent, {}).get("tool_mix")
        if not isinstance(dim, CategoricalStat):
            return True
        key = tool[:MAX_TOOL_CHARS] or OTHER_TOOL
        return dim.known(key) or dim.size() < self.settings.max_tools

    def _category(self, name: str, call: CallObservation, dim: CategoricalStat) -> str | None:
        if name == "refusal_rate":
            return _EVENT if call.refused else _NO_EVENT
        if name == "error_rate":
            if call.error is None:
                return None
            return _EVENT if call.error else _NO_EVENT
        key = call.tool[:MAX_TOOL_CHARS] or OTHER_TOOL
        if not dim.known(key) and dim.size() >= self.settings.max_tools:
            return OTHER_TOOL
        return key

    def _close_window(self, agent: str, name: str, dim: _Dim) -> WindowScore:
        s = self.settings
        threshold = s.thresholds[name]
        score, direction = dim.judge(s.min_samples)
        if score is not None and score >= threshold:
            dim.run += 1
        else:
            dim.run = 0
        if 0 < dim.run <= s.baseline_windows:
            dim.discard()  # held out: a drift must not teach the baseline it is normal
        else:
            dim.fold(s.baseline_windows)
        dim.score = score
        return WindowScore(
            agent,
            name,
            0.0 if score is None else score,
            threshold,
            dim.run,
            dim.run >= s.sustain,
            dim.run == s.sustain,
            direction,
        )

    # ------------------------------------------------------------------ reports

    def agents(self) -> list[str]:
        """Tracked agents, sorted."""
        return sorted(self._agents)

    def scores(self) -> list[tuple[str, str, float]]:
        """``(agent, dimension, score)`` of every scored dimension (last window's score;
        dimensions still warming up are left out)."""
        return [
            (agent, name, dim.score)
            for agent, dims in sorted(self._agents.items())
            for name, dim in sorted(dims.items())
            if dim.score is not None
        ]

    def baseline_samples(self) -> list[tuple[str, str, int]]:
        """``(agent, dimension, observations in the baseline)``: how far the warm-up is."""
        return [
            (agent, name, dim.n)
            for agent, dims in sorted(self._agents.items())
            for name, dim in sorted(dims.items())
        ]

    def sustained(self, agent: str) -> list[str]:
        """Dimensions of ``agent`` in sustained drift now."""
        dims = self._agents.get(agent, {})
        return sorted(n for n, d in dims.items() if d.run >= self.settings.sustain)

    def consecutive(self, agent: str) -> dict[str, int]:
        """Drifted windows in a row per dimension of ``agent``."""
        return {n: d.run for n, d in sorted(self._agents.get(agent, {}).items())}

    def rebaseline(self, agent: str | None = None) -> None:
        """Forget the baselines of ``agent`` (every agent when None): an operator accepted
        the new behaviour. Scoring resumes after the warm-up."""
        names = list(self._agents) if agent is None else [agent]
        for a in names:
            if a in self._agents:
                self._agents[a] = {n: _new_dim(n) for n in self.settings.thresholds}

    # ------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "untracked_calls": self.untracked_calls,
            "agents": {
                agent: {name: dim.to_dict() for name, dim in sorted(dims.items())}
                for agent, dims in sorted(self._agents.items())
            },
        }

    def to_json(self) -> bytes:
        """The state as JSON (non-finite numbers never occur: inputs are checked)."""
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_json(cls, data: bytes | str, settings: DriftSettings | None = None) -> DriftTracker:
        """Restore a tracker; :class:`DriftStateError` names the first bad field. Agents
        and dimensions the settings do not allow are dropped (a policy change)."""
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            raise DriftStateError(f"<document>: not JSON ({e})") from e
        return cls.from_dict(doc, settings)

    @classmethod
    def from_dict(cls, doc: Any, settings: DriftSettings | None = None) -> DriftTracker:
        tracker = cls(settings)
        s = tracker.settings
        if not isinstance(doc, dict):
            raise DriftStateError("<document>: must be an object")
        if doc.get("version") != STATE_VERSION:
            raise DriftStateError(f"version: must be {STATE_VERSION}")
        tracker.untracked_calls = read_int(doc, "untracked_calls", "")
        agents = doc.get("agents")
        if not isinstance(agents, dict):
            raise DriftStateError("agents: must be an object")
        for agent, dims_doc in _limited(agents.items(), s.max_agents):
            path = f"agents.{agent}"
            if not isinstance(dims_doc, dict):
                raise DriftStateError(f"{path}: must be an object")
            dims: dict[str, _Dim] = {}
            for name in s.thresholds:
                dim = _new_dim(name)
                sub = dims_doc.get(name)
                if sub is not None:
                    if not isinstance(sub, dict):
                        raise DriftStateError(f"{path}.{name}: must be an object")
                    if isinstance(dim, NumericStat):
                        dim.load(sub, f"{path}.{name}")
                    else:
                        dim.load(sub, f"{path}.{name}", s.max_tools + 1)
                dims[name] = dim
            tracker._agents[str(agent)] = dims
        return tracker


def _numeric_value(name: str, call: CallObservation) -> float | None:
    if name == "cost_per_call":
        return call.cost_usd
    if name == "tokens_per_call":
        return call.tokens
    return call.latency_s


def _limited(items: Iterable[Any], limit: int) -> Iterable[Any]:
    for i, item in enumerate(items):
        if i >= limit:
            return
        yield item
