"""The ``engine: emocore`` adapter (runs only where the emocore extra is installed)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("emocore")

import emocore.engine

from haltgate.governance.emocore_adapter import EmoCoreEngine, profile_named
from haltgate.governance.engine import Decision, Lift, Reserve, Reset, Settle
from haltgate.governance.governor import Governor, make_engine
from haltgate.governance.policy_base import FailureType
from tests.unit.governance.conftest import T0, make_spec


def emo_engine(budgets: dict[str, Any] | None = None, profile: str | None = None) -> Any:
    engine = make_engine(make_spec(budgets, engine={"type": "emocore", "profile": profile}))
    assert isinstance(engine, EmoCoreEngine)
    return engine


def failing_loop(engine: Any, gap: float, n: int = 300) -> tuple[Any, list[Decision], int]:
    """The same tool call failing again and again, ``gap`` seconds apart."""
    state = engine.initial_state()
    decisions = []
    for i in range(n):
        ts = T0 + i * gap
        state, d = engine.step(state, Reserve(f"c{i}", ts, "mcp", "h", "t", None, 0, 0, "same"))
        decisions.append(d)
        if not d.allowed:
            return state, decisions, i
        state, d = engine.step(state, Settle(f"c{i}", ts, None, False, "err", None))
        decisions.append(d)
        if d.halted:
            return state, decisions, i
    return state, decisions, n


def test_time_comes_from_the_events_not_the_wall_clock() -> None:
    # Fast failures exhaust EmoCore's effort; slow ones let its time-based recovery
    # refill it. Which one happens depends only on the event timestamps.
    fast_state, fast, at = failing_loop(emo_engine(), gap=0.1)
    assert at < 50 and fast[-1].code == "emocore_exhaustion"
    assert fast[-1].failure_type is FailureType.EXHAUSTION
    _, slow, at_slow = failing_loop(emo_engine(), gap=1.0)
    assert at_slow > at and slow[-1].code != "emocore_exhaustion"
    time.sleep(0.05)  # a different wall clock: same events, same result, bit for bit
    again_state, again, _ = failing_loop(emo_engine(), gap=0.1)
    assert again_state == fast_state
    assert [d.to_dict() for d in again] == [d.to_dict() for d in fast]


def test_other_emocore_users_keep_the_real_clock() -> None:
    before = time.monotonic()
    seen = emocore.engine.time.monotonic()
    assert before <= seen <= time.monotonic()


def test_emocore_halt_is_terminal_and_not_liftable() -> None:
    engine = emo_engine()
    state, _, _ = failing_loop(engine, gap=0.1)
    state, d = engine.step(state, Lift(T0 + 1000, "operator"))
    assert d.halted and d.code == "emocore_exhaustion"
    state, d = engine.step(state, Reserve("x", T0 + 1001, "mcp", "h", "t", None, 0, 0, "z"))
    assert not d.allowed and d.code == "emocore_exhaustion"
    state, d = engine.step(state, Reset(T0 + 1002, "operator"))
    assert d.allowed and state.emo is None
    _, d = engine.step(state, Reserve("y", T0 + 1003, "mcp", "h", "t", None, 0, 0, "z"))
    assert d.allowed


def test_step_fuse_maps_to_exhaustion() -> None:
    _, decisions, at = failing_loop(emo_engine(profile="conservative"), gap=1.0)
    assert decisions[-1].code == "emocore_max_steps"
    assert decisions[-1].failure_type is FailureType.EXHAUSTION
    assert at + 1 == profile_named("conservative").max_steps


def test_exploration_runaway_is_safety() -> None:
    engine = emo_engine(profile="conservative")
    state = engine.initial_state()
    d = None
    for i in range(50):
        state, _ = engine.step(state, Reserve(f"c{i}", T0 + i, "mcp", "h", f"tool{i}", None,
                                              0, 0, f"f{i}"))  # fmt: skip
        state, d = engine.step(state, Settle(f"c{i}", T0 + i, None, True, None, f"r{i}"))
        if d.halted:
            break
    assert d is not None and d.halted
    assert (d.failure_type, d.code) == (FailureType.SAFETY, "emocore_exploration_exceeded")


def test_declared_budgets_still_apply() -> None:
    engine = emo_engine({"calls": {"limit": 2}, "riskScore": {"limit": 5}, "costUSD": {"limit": 1}})
    _, decisions, _ = failing_loop(engine, gap=1.0)
    assert decisions[-1].code == "calls_exhausted"
    report = engine.budget_report(engine.initial_state())
    assert {"calls", "emocore_effort", "emocore_risk", "emocore_steps"} <= set(report)


def test_state_survives_a_governor_restart(tmp_path: Path) -> None:
    spec = make_spec({"calls": {"limit": 100}}, engine={"type": "emocore"})
    g = Governor.for_policy(spec, tmp_path / "state")
    for i in range(5):
        g.reserve(f"c{i}", T0 + i, kind="mcp", host="h", tool="t", fingerprint=f"f{i}")
        g.settle(f"c{i}", T0 + i + 0.1, None, i % 2 == 0, result_fingerprint=f"r{i}")
    state = g.state
    g.close()
    g2 = Governor.for_policy(spec, tmp_path / "state")
    assert g2.state == state
    assert g2.snapshot()["engine"] == "EmoCoreEngine"


def test_unknown_profile_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="unknown emocore profile"):
        emo_engine(profile="reckless")


def test_switching_engine_type_keeps_the_budgets(tmp_path: Path) -> None:
    budgets = {"calls": {"limit": 100}}
    builtin = make_spec(budgets)
    emo = make_spec(budgets, engine={"type": "emocore"})
    g = Governor.for_policy(emo, tmp_path / "state")
    g.reserve("a", T0, kind="mcp", host="h", tool="t", fingerprint="f")
    g.settle("a", T0, None, True)
    g.close()
    # restart under a builtin policy: the state file of the emocore engine is read
    g2 = Governor.for_policy(builtin, tmp_path / "state")
    assert not g2.halted and g2.snapshot()["budget"]["calls"]["used"] == 1.0
    # hot reload back to emocore
    g2.update_engine(make_engine(emo))
    assert g2.snapshot()["budget"]["calls"]["used"] == 1.0
    assert g2.reserve("b", T0 + 1, kind="mcp", host="h", fingerprint="g").allowed
    g2.close()
    g3 = Governor.for_policy(emo, tmp_path / "state")
    assert g3.snapshot()["budget"]["calls"]["reserved"] == 0.0  # "b" abandoned on restart
    assert g3.snapshot()["budget"]["calls"]["used"] == 2.0
