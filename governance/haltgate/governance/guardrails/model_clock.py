"""A per-call time budget for the guardrails model stage.

The model stage (a transformer forward pass per text, milliseconds to tens of them) runs on
the sidecar's model thread for requests, whole answers and stream events. A call that
makes it score many texts (a long streamed answer, a body of many strings) would hold that
one thread for all of them, and every other call's scans queue behind it. With
``promptInjection.modelBudgetMs`` each call gets that much model time: once its scans have
spent it, the next text is not scored; the detector reports ``ModelBudgetExceeded`` and
``guardrails.failMode`` decides (closed: the call is refused or its stream cut; open: it
passes, counted and audited as fail-open).

The budget is checked before each forward pass (a pass in progress cannot be interrupted),
so a call spends at most its budget plus one pass. The clock travels with the call: the
sidecar runs each scan of the call under :func:`run_with`, which makes the call's clock the
current one for the model wrapper :func:`metered` (a context variable, so concurrent calls
on other threads never share one).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

__all__ = ["ModelBudgetExceeded", "ModelClock", "metered", "run_with"]

_P = ParamSpec("_P")
_T = TypeVar("_T")


class ModelBudgetExceeded(Exception):
    """The call's model time is spent: this text was not scored by the model."""


@dataclass(slots=True)
class ModelClock:
    """The model time one call may spend (seconds) and has spent."""

    budget: float
    spent: float = 0.0


_CURRENT: ContextVar[ModelClock | None] = ContextVar("haltgate_model_clock", default=None)


def metered(scorer: Callable[[str], float], text: str) -> float:
    """``scorer(text)``, charged to the current call's clock; refused once it is spent."""
    clock = _CURRENT.get()
    if clock is None:
        return scorer(text)
    if clock.spent >= clock.budget:
        raise ModelBudgetExceeded(f"the call's model time of {clock.budget * 1000:.0f} ms is spent")
    started = time.perf_counter()
    try:
        return scorer(text)
    finally:
        clock.spent += time.perf_counter() - started


def run_with(
    clock: ModelClock | None, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs
) -> _T:
    """``fn(*args, **kwargs)`` with ``clock`` as the current call's model clock."""
    token = _CURRENT.set(clock)
    try:
        return fn(*args, **kwargs)
    finally:
        _CURRENT.reset(token)
