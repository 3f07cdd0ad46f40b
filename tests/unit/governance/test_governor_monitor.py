"""The Governor in monitor mode: a halt the engine derives is reported, not kept; usage past
the limit is still metered; a halt from outside is kept."""

from __future__ import annotations

from haltgate.governance.engine import Usage
from haltgate.governance.governor import Governor
from haltgate.governance.policy_base import FailureType
from tests.unit.governance.conftest import T0, make_spec


def governor(monitor: bool, budgets: dict | None = None) -> Governor:
    g = Governor.for_policy(make_spec(budgets or {"calls": {"limit": 2}}), None)
    g.monitor = monitor
    return g


def call(g: Governor, n: int) -> bool:
    call_id = f"c{n}"
    allowed = g.reserve(call_id, T0 + n, kind="http", host="h", fingerprint=call_id).allowed
    g.settle(call_id, T0 + n + 0.5, None, True)  # settled whether reserved or not
    return allowed


def test_enforce_halts_and_stops_metering() -> None:
    g = governor(False)
    assert [call(g, n) for n in range(4)] == [True, True, False, False]
    assert g.halted
    assert g.would_halts == 0


def test_monitor_reports_the_halt_keeps_metering_and_never_halts() -> None:
    g = governor(True)
    assert [call(g, n) for n in range(4)] == [True, True, False, False]
    assert not g.halted
    assert g.snapshot()["budget"]["calls"]["used"] == 4.0
    assert g.would_halts >= 1


def test_monitor_drops_settlement_halts_too() -> None:
    g = governor(True, {"consecutiveFailures": {"limit": 2}})
    for n in range(3):
        assert g.reserve(f"c{n}", T0 + n, kind="http", host="h", fingerprint=f"c{n}").allowed
        d = g.settle(f"c{n}", T0 + n + 0.5, Usage(0, 0), False)
    assert not d.allowed and d.failure_type is FailureType.EXHAUSTION  # reported
    assert not g.halted  # not kept


def test_monitor_keeps_a_halt_from_outside() -> None:
    g = governor(True)
    g.halt(T0, FailureType.EXTERNAL, "admin_halt", "stopped by alice")
    assert g.halted
    d = g.reserve("x", T0 + 1, kind="http", host="h")
    assert not d.allowed and d.code == "admin_halt"
    g.halt(T0, FailureType.SAFETY, "other", "x")  # still halted by the first
    assert g.halted


def test_monitor_keeps_any_halt_event() -> None:
    """A pool or cascade halt (a Halt event) is applied whatever its failure type."""
    g = governor(True)
    g.halt(T0, FailureType.OVERRISK, "pool_halted", "the pool halted")
    assert g.halted


def test_reserve_event_is_apply_with_its_inputs() -> None:
    """``reserve_event`` (the sidecar's path) decides and keeps what ``apply`` does, in both
    modes, and hands back the engine and the state the decision was made on."""
    from haltgate.governance.engine.events import Reserve

    for monitor in (False, True):
        a, b = governor(monitor), governor(monitor)
        for n in range(4):
            event = Reserve(f"c{n}", T0 + n, "http", "h", None, None, 0, 0, f"c{n}", 0.0)
            before = b.state
            want = a.apply(event)
            got, engine, state = b.reserve_event(event)
            assert (got.allowed, got.code, got.message, got.failure_type, got.halted) == (
                want.allowed,
                want.code,
                want.message,
                want.failure_type,
                want.halted,
            )
            assert dict(got.budget) == dict(want.budget)
            assert engine is b.engine and state is before
            assert b.state == a.state and b.halted == a.halted
