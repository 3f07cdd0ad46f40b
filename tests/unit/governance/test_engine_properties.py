"""Property tests of the budget engine (hypothesis).

Programs of operations (reserve, settle, release, add risk, halt, reset, lift) are drawn at
random and interpreted against the engine: calls in flight are picked among the state's
reservations, so any interleaving of concurrent calls is reachable.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from haltgate.governance.engine import (
    AddRisk,
    Decision,
    Engine,
    EngineState,
    Halt,
    Lift,
    Release,
    Reserve,
    Reset,
    Settle,
    Usage,
)
from haltgate.governance.policy_base import FailureType
from tests.unit.governance.conftest import T0, make_engine

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ALL_DIMENSIONS = {
    "calls": {"limit": 12, "period": "hour"},
    "tokens": {"limit": 20_000, "input": 15_000, "output": 8_000, "period": "day",
               "window": "rolling"},
    "costUSD": {"limit": 0.05},
    "riskScore": {"limit": 3},
    "consecutiveFailures": {"limit": 4},
    "identicalRetries": {"limit": 3},
    "distinctTools": {"limit": 3},
    "distinctHosts": {"limit": 3},
    "stagnation": {"window": 5},
    "wallTime": {"limitSeconds": 20_000},
    "warnAt": 0.5,
}  # fmt: skip
RUN_ONLY = {
    "calls": {"limit": 15},
    "tokens": {"limit": 30_000, "output": 10_000},
    "costUSD": {"limit": 0.08},
    "riskScore": {"limit": 5},
}
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "o3")
DTS = st.sampled_from([0.0, 0.25, 1.0, 59.0, 61.0, 600.0, 1799.5, 3600.0])

reserve_op = st.tuples(
    st.just("reserve"),
    st.sampled_from(["llm", "mcp"]),
    st.integers(0, 4),  # tool / model / host index
    st.integers(0, 3),  # fingerprint index
    st.integers(0, 3000),  # max input tokens
    st.integers(0, 2000),  # max output tokens
    st.sampled_from([0.0, 0.1, 0.5, 1.0]),  # risk
    DTS,
)
settle_op = st.tuples(
    st.just("settle"),
    st.integers(0, 7),  # which call in flight
    st.floats(0, 1),  # fraction of max input used
    st.floats(0, 1),  # fraction of max output used
    st.booleans(),  # ok
    st.integers(0, 2),  # result / error fingerprint index
    st.booleans(),  # usage unknown
    DTS,
)
release_op = st.tuples(st.just("release"), st.integers(0, 7), DTS)
risk_op = st.tuples(st.just("add_risk"), st.sampled_from([0.1, 0.7, 1.5]), DTS)
halt_op = st.tuples(st.just("halt"), DTS)
reset_op = st.tuples(st.just("reset"), DTS)
lift_op = st.tuples(st.just("lift"), DTS)

CALL_OPS = st.one_of(reserve_op, reserve_op, settle_op, settle_op, release_op)
ANY_OPS = st.one_of(reserve_op, reserve_op, settle_op, settle_op, release_op, risk_op,
                    halt_op, reset_op, lift_op)  # fmt: skip


def interpret(
    engine: Engine, ops: list[tuple[Any, ...]], state: EngineState | None = None
) -> Iterator[tuple[Any, EngineState, EngineState, Decision]]:
    """Run a program; yield (event, state before, state after, decision) per step."""
    state = engine.initial_state() if state is None else state
    ts = T0
    n = 0
    for op in ops:
        ts += op[-1]
        kind = op[0]
        event: Any
        if kind == "reserve":
            _, call_kind, idx, fp, max_in, max_out, risk, _ = op
            n += 1
            llm = call_kind == "llm"
            event = Reserve(
                f"c{n}", ts, call_kind, f"host{idx % 4}",
                None if llm else f"tool{idx}", MODELS[idx % 4] if llm else None,
                max_in if llm else 0, max_out if llm else 0, f"fp{fp}", risk,
            )  # fmt: skip
        elif kind == "settle":
            _, which, fin, fout, ok, fp, unknown, _ = op
            in_flight = list(state.reservations)
            if not in_flight:
                continue
            call_id = in_flight[which % len(in_flight)]
            res = state.reservations[call_id]
            used_in = math.floor(res.amounts[2] * fin)
            used_out = math.floor(res.amounts[3] * fout)
            usage = (
                None
                if unknown
                else Usage(used_in, used_out, cached_input_tokens=used_in // 3,
                           reasoning_tokens=used_out // 2)
            )  # fmt: skip
            event = Settle(
                call_id, ts, usage, ok, None if ok else f"err{fp}", f"res{fp}" if ok else None
            )
        elif kind == "release":
            in_flight = list(state.reservations)
            if not in_flight:
                continue
            event = Release(in_flight[op[1] % len(in_flight)], ts)
        elif kind == "add_risk":
            event = AddRisk(ts, op[1], "finding")
        elif kind == "halt":
            event = Halt(ts, FailureType.EXTERNAL, "admin_halt", "stop")
        elif kind == "reset":
            event = Reset(ts, "operator")
        else:
            event = Lift(ts, "operator")
        before = state
        state, decision = engine.step(state, event)
        yield event, before, state, decision


@SETTINGS
@given(st.lists(ANY_OPS, max_size=40))
def test_same_events_same_decisions(ops: list[tuple[Any, ...]]) -> None:
    first = [(e, s, d.to_dict()) for e, _, s, d in interpret(make_engine(ALL_DIMENSIONS), ops)]
    second = [(e, s, d.to_dict()) for e, _, s, d in interpret(make_engine(ALL_DIMENSIONS), ops)]
    assert first == second


@SETTINGS
@given(st.lists(ANY_OPS, max_size=40))
def test_json_round_trip_and_resume(ops: list[tuple[Any, ...]]) -> None:
    engine = make_engine(ALL_DIMENSIONS)
    for event, before, after, decision in interpret(engine, ops):
        assert EngineState.from_json(after.to_json()) == after
        assert EngineState.from_dict(after.to_dict()) == after
        assert Decision.from_json(decision.to_json()) == decision
        # a restarted sidecar resumes exactly: stepping the reloaded state is the same
        resumed, again = engine.step(EngineState.from_json(before.to_json()), event)
        assert resumed == after
        assert again.to_dict() == decision.to_dict()


@SETTINGS
@given(st.lists(st.one_of(CALL_OPS, risk_op, halt_op), max_size=50))
def test_spend_is_monotonic_without_reset(ops: list[tuple[Any, ...]]) -> None:
    engine = make_engine(RUN_ONLY)
    for _, before, after, _ in interpret(engine, ops):
        assert all(a >= b for a, b in zip(after.used, before.used, strict=True))


@SETTINGS
@given(st.lists(st.one_of(CALL_OPS, risk_op, halt_op), max_size=50))
def test_halt_is_absorbing(ops: list[tuple[Any, ...]]) -> None:
    engine = make_engine(ALL_DIMENSIONS)
    halt = None
    for event, _, after, decision in interpret(engine, ops):
        if halt is not None:
            assert after.halt == halt
            assert decision.halted and not decision.allowed
            assert (decision.failure_type, decision.code) == (halt.failure_type, halt.code)
        halt = after.halt
        if isinstance(event, Reserve) and decision.halted:
            assert not decision.allowed


@SETTINGS
@given(st.lists(st.one_of(CALL_OPS, halt_op, reset_op), max_size=60))
def test_reservations_never_overspend(ops: list[tuple[Any, ...]]) -> None:
    """Whatever the interleaving of concurrent calls, settled + in flight <= limit, as long
    as every call spends at most its reserved worst case."""
    for budgets in (ALL_DIMENSIONS, RUN_ONLY):
        engine = make_engine(budgets)
        for event, _, after, decision in interpret(engine, ops):
            for spec, used, reserved in zip(
                engine.meter_specs, after.used, after.reserved, strict=True
            ):
                assert used + reserved <= spec.limit, (spec.dim.name, event)
            assert after.reserved == tuple(
                sum(r.amounts[spec.source] for r in after.reservations.values())
                for spec in engine.meter_specs
            )
            if isinstance(event, Reserve) and not decision.allowed:
                assert event.call_id not in after.reservations


@SETTINGS
@given(
    hour=st.integers(0, 10_000),
    offset=st.floats(0, 3599.999, exclude_max=False),
    amount=st.integers(1, 5),
    period=st.sampled_from(["hour", "day"]),
)
def test_calendar_periods_reset_exactly_at_the_boundary(
    hour: int, offset: float, amount: int, period: str
) -> None:
    seconds = 3600 if period == "hour" else 86400
    engine = make_engine({"tokens": {"limit": 100, "period": period}})
    start = float(hour * seconds)
    ts = start + offset * seconds / 3600
    state, d = engine.step(
        engine.initial_state(),
        Reserve("a", ts, "llm", "h", None, "gpt-4o", amount, 0, "f"),
    )
    state, _ = engine.step(state, Settle("a", ts, Usage(amount, 0), True))
    boundary = start + seconds
    just_before = math.nextafter(boundary, -math.inf)
    assert engine.budget_report(state, just_before)["tokens"]["used"] == amount
    assert engine.budget_report(state, boundary)["tokens"]["used"] == 0
    # and the same through a real event at the boundary
    _, d = engine.step(state, Reserve("b", boundary, "llm", "h", None, "gpt-4o", 100, 0, "g"))
    assert d.allowed


@SETTINGS
@given(
    settle_at=st.floats(0, 86_400 * 3),
    amount=st.integers(1, 5),
    period=st.sampled_from(["hour", "day"]),
    later=st.floats(0, 1.2),
)
def test_rolling_windows_count_usage_for_at_least_one_period(
    settle_at: float, amount: int, period: str, later: float
) -> None:
    seconds = 3600 if period == "hour" else 86400
    engine = make_engine({"calls": {"limit": 100, "period": period, "window": "rolling"}})
    ts = T0 + settle_at
    state, _ = engine.step(engine.initial_state(), Settle("x", ts, None, True))
    now = ts + later * seconds
    used = engine.budget_report(state, now)["calls"]["used"]
    if now - ts <= seconds:
        assert used == 1  # never forgotten early (fail closed)
    elif now - ts > seconds + seconds / 60:
        assert used == 0  # forgotten at most one bucket late


@SETTINGS
@given(
    gaps=st.lists(
        st.tuples(
            st.sampled_from([0.0, 0.5, 30.0, 59.9, 60.0, 61.0, 900.0, 3599.0, 3660.0]),
            st.integers(0, 3),
        ),
        max_size=60,
    ),
    probe=st.floats(0, 7200),
)
def test_rolling_window_counts_exactly_its_buckets(
    gaps: list[tuple[float, int]], probe: float
) -> None:
    """used == the amounts whose one-minute bucket is among the last 61, at every step."""
    rolling = {"limit": 10**6, "period": "hour", "window": "rolling"}
    engine = make_engine({"calls": rolling, "tokens": rolling})
    state = engine.initial_state()
    ts = T0 + 17.0
    settled: list[tuple[float, int]] = []
    for n, (gap, tokens) in enumerate(gaps):
        ts += gap
        state, _ = engine.step(
            state, Reserve(f"c{n}", ts, "llm", "h", None, "gpt-4o", tokens, 0, f"f{n}")
        )
        state, _ = engine.step(state, Settle(f"c{n}", ts, Usage(tokens, 0), True))
        settled.append((ts, tokens))
        for now in (ts, ts + probe):
            floor = int(now // 60) - 60
            report = engine.budget_report(state, now)
            assert report["calls"]["used"] == sum(1 for t, _ in settled if int(t // 60) >= floor)
            assert report["tokens"]["used"] == sum(a for t, a in settled if int(t // 60) >= floor)
