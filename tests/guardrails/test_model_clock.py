"""The per-call model time budget (``promptInjection.modelBudgetMs``): checked before each
forward pass, charged after it, and only for the call whose clock is current."""

from __future__ import annotations

import time

import pytest

from haltgate.governance.guardrails.model_clock import (
    ModelBudgetExceeded,
    ModelClock,
    metered,
    run_with,
)


def slow_scorer(text: str) -> float:
    time.sleep(0.002)
    return 0.1


def test_without_a_clock_nothing_is_bounded() -> None:
    assert [metered(slow_scorer, "x") for _ in range(3)] == [0.1] * 3


def test_a_spent_clock_refuses_the_next_pass() -> None:
    clock = ModelClock(budget=0.001)
    assert run_with(clock, metered, slow_scorer, "first") == 0.1  # started within budget
    assert clock.spent >= 0.002
    with pytest.raises(ModelBudgetExceeded):
        run_with(clock, metered, slow_scorer, "second")
    other = ModelClock(budget=1.0)
    assert run_with(other, metered, slow_scorer, "another call") == 0.1  # its own clock
    assert metered(slow_scorer, "outside any call") == 0.1
