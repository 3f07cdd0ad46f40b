"""Window statistics of the drift tracker: baselines, scores and their stored form.

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
that is exact for rare categories, see :func:`share_noise`).

Both kinds of statistic keep a fixed number of values (the tool mix at most its capped
number of categories) and serialise to plain JSON objects; :class:`DriftStateError` names
the first field of a stored state that is not valid.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping
from typing import Any

__all__ = [
    "LOG_SD_FLOOR",
    "MAX_TOOL_CHARS",
    "CategoricalStat",
    "DriftStateError",
    "NumericStat",
    "read_int",
    "share_noise",
]

LOG_SD_FLOOR = 0.1
"""Smallest baseline standard deviation on the log scale (about a 10% change per sd)."""

MAX_TOOL_CHARS = 128
"""Category keys are at most this long (tool keys come from what the agent calls)."""

_PRUNE_SHARE = 1e-6
"""Baseline shares below this are dropped at fold time, freeing a tool slot."""


class DriftStateError(ValueError):
    """A persisted drift state cannot be read; the message names the field."""


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


def share_noise(p: float, n: int) -> float:
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


class NumericStat:
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
        self.n = read_int(doc, "n", path)
        self.windows = read_int(doc, "windows", path)
        self.mean = _float(doc, "mean", path)
        self.var = _float(doc, "var", path, minimum=0.0)
        self.wn = read_int(doc, "wn", path)
        self.wsum = _float(doc, "wsum", path)
        self.wsq = _float(doc, "wsq", path, minimum=0.0)
        self.run = read_int(doc, "run", path)
        self.score = _opt_float(doc, "score", path)


class CategoricalStat:
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
            noise += share_noise(p, n)
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
        self.n = read_int(doc, "n", path)
        self.windows = read_int(doc, "windows", path)
        self.wn = read_int(doc, "wn", path)
        self.run = read_int(doc, "run", path)
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
        self.counts = {
            _key(k, f"{path}.counts"): read_int(counts, k, f"{path}.counts") for k in counts
        }
        if sum(self.counts.values()) != self.wn:
            raise DriftStateError(f"{path}.wn: does not match the sum of counts")


def _key(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_TOOL_CHARS:
        raise DriftStateError(f"{path}: keys must be strings of 1..{MAX_TOOL_CHARS} characters")
    return value


def read_int(doc: Mapping[str, Any], key: str, path: str) -> int:
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
