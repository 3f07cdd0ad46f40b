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

**Baseline.** An exponentially weighted summary of past windows with weight
``alpha = max(1 / windows_folded, 1 / baseline_windows)``: a plain running average during
warm-up (no bias towards the first window), then an EWMA that forgets with a horizon of
``baseline_windows`` windows. Numeric dimensions keep the weighted mean and variance of
``log(value + floor)`` (calls' costs and latencies are heavy-tailed: a log scale makes a
doubling count the same at every size); categorical ones (rates, tool mix) keep the
weighted share of each category. Memory is fixed: a few numbers per numeric dimension, at
most ``max_tools`` + 1 shares for the tool mix, at most ``max_agents`` agents.

**Score.** Every dimension's score is on one scale: the estimated shift of the window from
the baseline in *per-call standard deviations*, with the window's own sampling noise taken
out, so a steady workload scores about 0 and one threshold means the same for all:

- numeric: ``d = (window mean - baseline mean) / baseline sd`` on the log scale (Glass's
  delta; the sd has a floor of :data:`LOG_SD_FLOOR` so a constant baseline does not make
  every small change infinite);
- categorical: ``d = 2 * ||sqrt(q) - sqrt(p)||`` over the category shares ``q`` (window)
  and ``p`` (baseline). The square root stabilises the variance of a share, so each call
  adds unit variance per category; for two categories (a rate) this is Cohen's *h*, for
  many (the tool mix) it is 2*sqrt(2) times the Hellinger distance. Unlike KL divergence it
  stays finite when a tool appears that the baseline never saw.

``score = sqrt(max(0, d**2 - noise))`` where ``noise`` is the expected ``d**2`` of a window
drawn from the baseline itself (``1 / n`` for a mean; for shares, a Poisson correction
that is exact for rare categories, see :func:`_share_noise`). A window scored at or over
its threshold is *drifted*; ``sustain`` drifted windows in a row are a *sustained* drift.

The tracker is deterministic and synchronous (one asyncio loop calls it); its state
serialises to JSON (:meth:`DriftTracker.to_json`) and restores, so a restarted sidecar
keeps its baselines.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import orjson

__all__ = [
    "CATEGORICAL_DIMENSIONS",
    "DIMENSIONS",
    "NUMERIC_DIMENSIONS",
    "OTHER_TOOL",
    "CallObservation",
    "DriftSettings",
    "DriftStateError",
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

LOG_SD_FLOOR = 0.1
"""Smallest baseline standard deviation on the log scale (about a 10% change per sd)."""

OTHER_TOOL = "_other"
"""Tool-mix category of tools beyond ``max_tools`` (a new tool still shows as a shift)."""

MAX_TOOL_CHARS = 128
"""Tool keys are cut to this length (they come from what the agent calls)."""

STATE_VERSION = 1
_EVENT = "1"
_NO_EVENT = "0"
_PRUNE_SHARE = 1e-6
"""Baseline shares below this are dropped at fold time, freeing a tool slot."""


class DriftStateError(ValueError):
    """A persisted drift state cannot be read; the message names the field."""


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


@dataclass(frozen=True, slots=True)
class CallObservation:
    """What one governed call tells the tracker. ``None``: the call says nothing there."""

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


# --------------------------------------------------------------------------- noise floor


def _poisson_sqrt_mean(lam: float) -> float:
    """E[sqrt(X)] for X ~ Poisson(lam), summed to where the tail is negligible."""
    if lam <= 0:
        return 0.0
    term = math.exp(-lam)  # P(X = 0)
    total = 0.0
    k = 0
    top = int(lam + 12 * math.sqrt(lam) + 30)
    while k < top:
        k += 1
        term *= lam / k
        total += term * math.sqrt(k)
    return total


def _noise_factor(lam: float) -> float:
    """``n * E[4 (sqrt(q) - sqrt(p))**2]`` for a share ``p = lam / n`` (Poisson regime).

    Tends to 1 for large ``lam`` (the delta method) and to ``8 lam`` for rare categories,
    where the delta method would overstate the noise."""
    return 4.0 * (2.0 * lam - 2.0 * math.sqrt(lam) * _poisson_sqrt_mean(lam))


_GRID = tuple(10 ** (e / 16) for e in range(-64, 33))  # 1e-4 .. 100
_GRID_NOISE = tuple(_noise_factor(x) for x in _GRID)


def _share_noise(p: float, n: int) -> float:
    """Expected ``4 (sqrt(q) - sqrt(p))**2`` of one category's share ``q`` in a window of
    ``n`` calls drawn with share ``p`` (interpolated from a table made at import)."""
    if p <= 0.0:
        return 0.0
    lam = p * n
    if lam >= _GRID[-1]:
        f = 1.0
    elif lam <= _GRID[0]:
        f = 8.0 * lam
    else:
        i = bisect_left(_GRID, lam)
        x0, x1 = _GRID[i - 1], _GRID[i]
        y0, y1 = _GRID_NOISE[i - 1], _GRID_NOISE[i]
        f = y0 + (y1 - y0) * (lam - x0) / (x1 - x0)
    # The Poisson regime ignores that a share cannot pass 1: the binomial variance has (1-p).
    return f * (1.0 - p) / n


# --------------------------------------------------------------------------- dimensions


class _Numeric:
    """Baseline and open window of one numeric dimension (log scale)."""

    __slots__ = ("floor", "mean", "n", "run", "score", "var", "windows", "wn", "wsq", "wsum")

    def __init__(self, floor: float) -> None:
        self.floor = floor
        self.n = 0  # observations folded into the baseline
        self.windows = 0  # windows folded
        self.mean = 0.0
        self.var = 0.0
        self.wn = 0
        self.wsum = 0.0
        self.wsq = 0.0
        self.run = 0
        self.score: float | None = None

    def add(self, value: float) -> None:
        """Add one observation to the open window."""
        x = math.log(max(value, 0.0) + self.floor)
        self.wn += 1
        self.wsum += x
        self.wsq += x * x

    def judge(self, min_samples: int) -> tuple[float | None, int]:
        """Score of the open window (None during warm-up) and its direction."""
        if self.n < min_samples or self.wn == 0:
            return None, 0
        wmean = self.wsum / self.wn
        sd = max(math.sqrt(self.var), LOG_SD_FLOOR)
        d = (wmean - self.mean) / sd
        score = math.sqrt(max(0.0, d * d - 1.0 / self.wn))
        return score, (1 if d > 0 else -1 if d < 0 else 0)

    def fold(self, baseline_windows: int) -> None:
        """Fold the open window into the baseline and open a new one."""
        wn = self.wn
        if wn == 0:
            return
        wmean = self.wsum / wn
        wvar = max(0.0, self.wsq / wn - wmean * wmean)
        self.windows += 1
        alpha = max(1.0 / self.windows, 1.0 / baseline_windows)
        delta = wmean - self.mean
        # Weighted mixture of the old baseline and the window (mean and spread of both).
        self.var = (1.0 - alpha) * (self.var + alpha * delta * delta) + alpha * wvar
        self.mean += alpha * delta
        self.n += wn
        self.wn, self.wsum, self.wsq = 0, 0.0, 0.0

    def discard(self) -> None:
        """Drop the open window without learning from it."""
        self.wn, self.wsum, self.wsq = 0, 0.0, 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "windows": self.windows,
            "mean": self.mean,
            "var": self.var,
            "wn": self.wn,
            "wsum": self.wsum,
            "wsq": self.wsq,
            "run": self.run,
            "score": self.score,
        }

    def load(self, doc: Mapping[str, Any], path: str) -> None:
        self.n = _int(doc, "n", path)
        self.windows = _int(doc, "windows", path)
        self.mean = _float(doc, "mean", path)
        self.var = _float(doc, "var", path, minimum=0.0)
        self.wn = _int(doc, "wn", path)
        self.wsum = _float(doc, "wsum", path)
        self.wsq = _float(doc, "wsq", path, minimum=0.0)
        self.run = _int(doc, "run", path)
        self.score = _opt_float(doc, "score", path)


class _Categorical:
    """Baseline shares and open window counts of one categorical dimension."""

    __slots__ = ("counts", "n", "run", "score", "shares", "windows", "wn")

    def __init__(self) -> None:
        self.n = 0
        self.windows = 0
        self.shares: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.wn = 0
        self.run = 0
        self.score: float | None = None

    def add(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1
        self.wn += 1

    def judge(self, min_samples: int) -> tuple[float | None, int]:
        if self.n < min_samples or self.wn == 0:
            return None, 0
        n = self.wn
        shares = self.shares
        counts = self.counts
        d2 = 0.0
        noise = 0.0
        for key in shares.keys() | counts.keys():
            p = shares.get(key, 0.0)
            q = counts.get(key, 0) / n
            diff = math.sqrt(q) - math.sqrt(p)
            d2 += 4.0 * diff * diff
            noise += _share_noise(p, n)
        return math.sqrt(max(0.0, d2 - noise)), 0

    def fold(self, baseline_windows: int) -> None:
        n = self.wn
        if n == 0:
            return
        self.windows += 1
        alpha = max(1.0 / self.windows, 1.0 / baseline_windows)
        shares = self.shares
        counts = self.counts
        merged: dict[str, float] = {}
        for key in shares.keys() | counts.keys():
            share = (1.0 - alpha) * shares.get(key, 0.0) + alpha * counts.get(key, 0) / n
            if share >= _PRUNE_SHARE:
                merged[key] = share
        self.shares = merged
        self.n += n
        self.counts = {}
        self.wn = 0

    def discard(self) -> None:
        """Drop the open window without learning from it."""
        self.counts = {}
        self.wn = 0

    def known(self, key: str) -> bool:
        return key in self.shares or key in self.counts

    def size(self) -> int:
        return len(self.shares.keys() | self.counts.keys())

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "windows": self.windows,
            "shares": dict(sorted(self.shares.items())),
            "counts": dict(sorted(self.counts.items())),
            "wn": self.wn,
            "run": self.run,
            "score": self.score,
        }

    def load(self, doc: Mapping[str, Any], path: str, max_keys: int) -> None:
        self.n = _int(doc, "n", path)
        self.windows = _int(doc, "windows", path)
        self.wn = _int(doc, "wn", path)
        self.run = _int(doc, "run", path)
        self.score = _opt_float(doc, "score", path)
        shares = doc.get("shares")
        counts = doc.get("counts")
        if not isinstance(shares, dict):
            raise DriftStateError(f"{path}.shares: must be an object")
        if not isinstance(counts, dict):
            raise DriftStateError(f"{path}.counts: must be an object")
        if len(shares.keys() | counts.keys()) > max_keys:
            raise DriftStateError(f"{path}: more than {max_keys} categories")
        self.shares = {
            _key(k, f"{path}.shares"): _float(shares, k, f"{path}.shares", minimum=0.0)
            for k in shares
        }
        self.counts = {_key(k, f"{path}.counts"): _int(counts, k, f"{path}.counts") for k in counts}
        if sum(self.counts.values()) != self.wn:
            raise DriftStateError(f"{path}.wn: does not match the sum of counts")


_Dim = _Numeric | _Categorical


def _new_dim(name: str) -> _Dim:
    if name in NUMERIC_DIMENSIONS:
        return _Numeric(VALUE_FLOORS[name])
    return _Categorical()


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
            if isinstance(dim, _Numeric):
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

    def _category(self, name: str, call: CallObservation, dim: _Categorical) -> str | None:
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
        tracker.untracked_calls = _int(doc, "untracked_calls", "")
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
                    if isinstance(dim, _Numeric):
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


def _key(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_TOOL_CHARS:
        raise DriftStateError(f"{path}: keys must be strings of 1..{MAX_TOOL_CHARS} characters")
    return value


def _int(doc: Mapping[str, Any], key: str, path: str) -> int:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DriftStateError(f"{path + '.' if path else ''}{key}: must be an integer >= 0")
    return value


def _float(doc: Mapping[str, Any], key: str, path: str, minimum: float | None = None) -> float:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DriftStateError(f"{path}.{key}: must be a number")
    value = float(value)
    if not math.isfinite(value):
        raise DriftStateError(f"{path}.{key}: must be a finite number")
    if minimum is not None and value < minimum:
        raise DriftStateError(f"{path}.{key}: must be >= {minimum:g}")
    return value


def _opt_float(doc: Mapping[str, Any], key: str, path: str) -> float | None:
    if doc.get(key) is None:
        return None
    return _float(doc, key, path, minimum=0.0)
