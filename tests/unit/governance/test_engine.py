"""Example-based tests of every budget dimension, its code, failure type and halt rule."""

from __future__ import annotations

from typing import Any

import pytest

from haltgate.governance.engine import (
    Abandon,
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
    event_from_dict,
)
from haltgate.governance.policy_base import FailureType
from tests.unit.governance.conftest import T0, make_engine, make_spec


class Run:
    """Drives an engine like the sidecar does and keeps the last decision."""

    def __init__(self, engine: Engine, state: EngineState | None = None) -> None:
        self.engine = engine
        self.state = engine.initial_state() if state is None else state
        self.n = 0

    def step(self, event: Any) -> Decision:
        self.state, decision = self.engine.step(self.state, event)
        return decision

    def reserve(self, ts: float = T0, **kw: Any) -> tuple[str, Decision]:
        self.n += 1
        call_id = kw.pop("call_id", f"c{self.n}")
        fields: dict[str, Any] = {
            "kind": "mcp",
            "host": "tools.svc",
            "tool": None,
            "model": None,
            "max_input_tokens": 0,
            "max_output_tokens": 0,
            "fingerprint": f"fp{self.n}",
        }
        fields.update(kw)
        return call_id, self.step(Reserve(call_id=call_id, ts=ts, **fields))

    def call(
        self,
        ts: float = T0,
        usage: Usage | None = None,
        ok: bool = True,
        result: str | None = None,
        error: str | None = None,
        **kw: Any,
    ) -> Decision:
        call_id, d = self.reserve(ts, **kw)
        if not d.allowed:
            return d
        return self.step(Settle(call_id, ts, usage, ok, error, result))


# ---------------------------------------------------------------- calls


def test_calls_run_budget_halts_when_used_up() -> None:
    run = Run(make_engine({"calls": {"limit": 3}}))
    for i in range(2):
        assert run.call(T0 + i).allowed
    d = run.call(T0 + 2)  # the third call is allowed; its settle uses the budget up
    assert (d.allowed, d.halted, d.failure_type, d.code) == (
        False,
        True,
        FailureType.EXHAUSTION,
        "calls_exhausted",
    )
    _, d = run.reserve(T0 + 3)
    assert not d.allowed and d.halted and d.code == "calls_exhausted"
    assert d.budget["calls"] == {"used": 3.0, "reserved": 0.0, "limit": 3.0}


def test_in_flight_calls_count_against_the_limit() -> None:
    run = Run(make_engine({"calls": {"limit": 2}}))
    assert run.reserve()[1].allowed
    assert run.reserve()[1].allowed
    _, d = run.reserve()
    assert not d.allowed and not d.halted and d.code == "calls_exhausted"
    assert d.failure_type is FailureType.EXHAUSTION
    run.step(Release("c1", T0))
    assert run.reserve()[1].allowed


def test_calendar_hour_refuses_until_the_boundary_then_resets_exactly() -> None:
    run = Run(make_engine({"calls": {"limit": 1, "period": "hour"}}))
    start = T0 + 10
    assert run.call(start).allowed
    _, d = run.reserve(T0 + 3599.999)
    assert not d.allowed and not d.halted and d.code == "calls_exhausted"
    assert d.retry_after == pytest.approx(0.001, abs=1e-6)
    # exactly at xx:00 a new period starts
    assert run.reserve(T0 + 3600)[1].allowed


def test_day_period_is_the_utc_calendar_day() -> None:
    run = Run(make_engine({"costUSD": {"limit": 1.0, "period": "day"}}))
    midnight = 1_800_057_600.0  # 2027-01-16T00:00:00Z
    assert midnight % 86400 == 0
    assert run.call(
        midnight - 1, model="gpt-4o", usage=Usage(400_000, 0), max_input_tokens=400_000
    ).allowed  # $1.00 exactly
    _, d = run.reserve(midnight - 0.5, model="gpt-4o", max_input_tokens=1)
    assert d.code == "cost_exhausted" and not d.halted
    assert run.reserve(midnight, model="gpt-4o", max_input_tokens=1)[1].allowed


def test_rolling_hour_forgets_usage_between_one_hour_and_one_bucket_later() -> None:
    run = Run(make_engine({"calls": {"limit": 1, "period": "hour", "window": "rolling"}}))
    t = T0 + 30  # middle of the one-minute bucket [T0, T0 + 60)
    assert run.call(t).allowed
    assert not run.reserve(t + 3600)[1].allowed  # an hour later: still counted
    _, d = run.reserve(t + 3629.9)  # its bucket is not yet entirely an hour old
    assert not d.allowed and d.retry_after == pytest.approx(0.1)
    assert run.reserve(t + 3630)[1].allowed  # T0 + 3660: the whole bucket is old


def test_reservation_made_in_one_period_settles_into_the_next() -> None:
    run = Run(make_engine({"calls": {"limit": 1, "period": "hour"}}))
    call_id, d = run.reserve(T0 + 3599)
    assert d.allowed
    run.step(Settle(call_id, T0 + 3601, Usage(), True))
    assert run.state.meter("calls") is not None
    assert run.state.meter("calls").used == 1  # type: ignore[union-attr]
    assert not run.reserve(T0 + 3602)[1].allowed


# ---------------------------------------------------------------- tokens and cost


def test_worst_case_that_does_not_fit_is_refused_up_front_without_halt() -> None:
    run = Run(make_engine({"tokens": {"limit": 1000}}))
    _, d = run.reserve(model="gpt-4o", max_input_tokens=600, max_output_tokens=500)
    assert (d.allowed, d.halted, d.code) == (False, False, "tokens_exhausted")
    assert "worst case" in d.message
    assert run.reserve(model="gpt-4o", max_input_tokens=500, max_output_tokens=500)[1].allowed


@pytest.mark.parametrize(
    ("budget", "code"),
    [({"input": 100}, "input_tokens_exhausted"), ({"output": 100}, "output_tokens_exhausted")],
)
def test_input_and_output_token_limits(budget: dict[str, int], code: str) -> None:
    run = Run(make_engine({"tokens": budget}))
    _, d = run.reserve(model="gpt-4o", max_input_tokens=101, max_output_tokens=101)
    assert d.code == code and d.failure_type is FailureType.EXHAUSTION


def test_settle_replaces_the_reservation_by_actual_usage() -> None:
    run = Run(make_engine({"tokens": {"limit": 10_000}, "costUSD": {"limit": 1.0}}))
    call_id, d = run.reserve(model="gpt-4o", max_input_tokens=1000, max_output_tokens=1000)
    assert d.budget["tokens"] == {"used": 0.0, "reserved": 2000.0, "limit": 10000.0}
    assert d.budget["cost_usd"]["reserved"] == 0.0125
    d = run.step(Settle(call_id, T0, Usage(300, 100), True))
    assert d.budget["tokens"] == {"used": 400.0, "reserved": 0.0, "limit": 10000.0}
    assert d.budget["cost_usd"]["used"] == 0.00175


def test_cost_run_budget_halts_exactly_at_the_limit() -> None:
    run = Run(make_engine({"costUSD": {"limit": 0.01}}))
    # 4000 input tokens of gpt-4o at $2.50/1M = $0.01 exactly: halts on settle
    d = run.call(model="gpt-4o", max_input_tokens=4000, usage=Usage(4000, 0))
    assert d.halted and d.code == "cost_exhausted"
    assert d.budget["cost_usd"]["used"] == 0.01


def test_unknown_usage_of_an_llm_call_is_charged_its_worst_case() -> None:
    run = Run(make_engine({"costUSD": {"limit": 1.0}}))
    d = run.call(model="gpt-4o", max_input_tokens=1000, max_output_tokens=1000, usage=None)
    assert d.budget["cost_usd"]["used"] == 0.0125
    # a tool call with unknown usage costs nothing but a call
    d = run.call(usage=None)
    assert d.budget["cost_usd"]["used"] == 0.0125


def test_usage_above_the_reservation_is_charged_in_full_and_halts() -> None:
    run = Run(make_engine({"tokens": {"limit": 100}}))
    d = run.call(
        model="gpt-4o",
        max_input_tokens=10,
        max_output_tokens=10,
        usage=Usage(150, 0, estimated=True),
    )
    assert d.halted and d.code == "tokens_exhausted"
    assert d.budget["tokens"]["used"] == 150.0


def test_llm_call_without_a_model_is_an_unknown_model() -> None:
    _, d = Run(make_engine({})).reserve(kind="llm", model=None, max_input_tokens=10)
    assert (d.allowed, d.code) == (False, "unknown_model_price")
    pricing = {"unknownModel": "default", "default": {"input": 1.0, "output": 1.0}}
    run = Run(make_engine({"costUSD": {"limit": 1}}, pricing=pricing))
    d = run.call(kind="llm", model=None, max_input_tokens=1000, usage=None)
    assert d.budget["cost_usd"]["used"] == 0.001  # worst case at the default price


def test_unknown_model_is_refused_as_safety_when_the_policy_denies() -> None:
    run = Run(make_engine({}))
    _, d = run.reserve(model="llama-3-70b", max_input_tokens=1)
    assert (d.allowed, d.halted, d.failure_type, d.code) == (
        False,
        False,
        FailureType.SAFETY,
        "unknown_model_price",
    )
    run2 = Run(
        make_engine({}, pricing={"unknownModel": "default", "default": {"input": 0, "output": 0}})
    )
    assert run2.reserve(model="llama-3-70b", max_input_tokens=1)[1].allowed


# ---------------------------------------------------------------- time


def test_wall_time_counts_from_the_first_call_of_the_run() -> None:
    run = Run(make_engine({"wallTime": {"limitSeconds": 60}}))
    assert run.call(T0).allowed
    assert run.call(T0 + 59.9).allowed
    _, d = run.reserve(T0 + 60)
    assert (d.halted, d.code, d.failure_type) == (
        True,
        "wall_time_exhausted",
        FailureType.EXHAUSTION,
    )


def test_time_never_goes_backwards() -> None:
    run = Run(make_engine({"calls": {"limit": 1, "period": "hour"}}))
    assert run.call(T0 + 3600).allowed
    # an event stamped in the previous hour is evaluated at the engine's clock
    _, d = run.reserve(T0 + 10)
    assert not d.allowed and d.code == "calls_exhausted"
    assert run.state.clock == T0 + 3600


# ---------------------------------------------------------------- persistence of behaviour


def test_consecutive_failures_halt_and_success_resets_the_count() -> None:
    run = Run(make_engine({"consecutiveFailures": {"limit": 3}}))
    run.call(ok=False)
    run.call(ok=False)
    assert run.call(ok=True).allowed
    run.call(ok=False)
    run.call(ok=False)
    d = run.call(ok=False)
    assert (d.halted, d.code, d.failure_type) == (
        True,
        "consecutive_failures",
        FailureType.EXHAUSTION,
    )


def test_release_is_not_a_failure() -> None:
    run = Run(make_engine({"consecutiveFailures": {"limit": 1}}))
    call_id, _ = run.reserve()
    d = run.step(Release(call_id, T0))
    assert d.allowed and run.state.consecutive_failures == 0


@pytest.mark.parametrize(
    ("tool", "code"), [("delete_file", "repeated_tool_calls"), (None, "identical_retries")]
)
def test_identical_retries_halt_as_stagnation(tool: str | None, code: str) -> None:
    run = Run(make_engine({"identicalRetries": {"limit": 2}}))
    assert run.call(tool=tool, fingerprint="same").allowed
    assert run.call(tool=tool, fingerprint="same").allowed  # first retry
    _, d = run.reserve(tool=tool, fingerprint="same")  # second retry reaches the limit
    assert (d.allowed, d.halted, d.failure_type, d.code) == (
        False,
        True,
        FailureType.STAGNATION,
        code,
    )


def test_a_different_call_in_between_breaks_the_retry_chain() -> None:
    run = Run(make_engine({"identicalRetries": {"limit": 2}}))
    for fp in ("a", "a", "b", "a", "a", "b"):
        assert run.call(fingerprint=fp).allowed


def test_stagnation_window_counts_steps_without_progress() -> None:
    run = Run(make_engine({"stagnation": {"window": 3}}))
    assert run.call(tool="search", fingerprint="q1", result="r1").allowed  # new: progress
    assert run.call(tool="search", fingerprint="q2", result="r1").allowed  # same result: 1
    assert run.call(tool="search", fingerprint="q1", result="r2").allowed  # new result: 0
    assert run.call(tool="search", fingerprint="q1", result="r2").allowed  # 1
    assert run.call(tool="search", fingerprint="q1", ok=False, error="e").allowed  # 2
    d = run.call(tool="search", fingerprint="q1", ok=False, error="e")  # 3
    assert (d.halted, d.code, d.failure_type) == (True, "stagnation_window", FailureType.STAGNATION)


def test_a_new_tool_is_progress() -> None:
    run = Run(make_engine({"stagnation": {"window": 2}}))
    assert run.call(tool="a", fingerprint="x", result="r").allowed
    assert run.call(tool="a", fingerprint="x", result="r").allowed  # 1
    assert run.call(tool="b", fingerprint="y", result="r").allowed  # new tool: 0
    assert run.state.no_progress == 0


# ---------------------------------------------------------------- exploration and risk


def test_distinct_tools_allows_the_known_ones_and_refuses_a_new_one() -> None:
    run = Run(make_engine({"distinctTools": {"limit": 2}}))
    assert run.call(tool="a").allowed
    assert run.call(tool="b").allowed
    _, d = run.reserve(tool="c")
    assert (d.allowed, d.halted, d.code) == (False, False, "distinct_tools_exhausted")
    assert run.call(tool="a").allowed


def test_distinct_hosts() -> None:
    run = Run(make_engine({"distinctHosts": {"limit": 1}}))
    assert run.call(host="a.example").allowed
    _, d = run.reserve(host="b.example")
    assert d.code == "distinct_hosts_exhausted" and not d.halted


def test_refused_call_does_not_consume_a_distinct_tool_slot() -> None:
    run = Run(make_engine({"distinctTools": {"limit": 1}, "calls": {"limit": 1}}))
    assert run.reserve(tool="a")[1].allowed
    assert not run.reserve(tool="b")[1].allowed  # refused by calls
    assert run.state.tools == frozenset({"a"})


def test_risk_is_reserved_committed_and_halts_as_overrisk() -> None:
    run = Run(make_engine({"riskScore": {"limit": 1.0}}))
    call_id, d = run.reserve(risk=0.6)
    assert d.budget["risk_score"]["reserved"] == 0.6
    _, d = run.reserve(risk=0.6)  # would pass the limit: refused, not halted
    assert (d.allowed, d.failure_type, d.code, d.halted) == (
        False,
        FailureType.OVERRISK,
        "risk_exceeded",
        False,
    )
    run.step(Settle(call_id, T0, None, True))
    d = run.step(AddRisk(T0, 0.4, "pii_in_response"))
    assert (d.allowed, d.halted, d.failure_type, d.code) == (
        False,
        True,
        FailureType.OVERRISK,
        "risk_exceeded",
    )


def test_negative_risk_is_ignored() -> None:
    run = Run(make_engine({"riskScore": {"limit": 1.0}}))
    run.step(AddRisk(T0, 0.5, "x"))
    d = run.step(AddRisk(T0, -0.5, "x"))
    assert d.code == "invalid_event" and d.budget["risk_score"]["used"] == 0.5


# ---------------------------------------------------------------- halts, reset, lift


def test_halt_is_absorbing_and_reset_starts_a_new_run() -> None:
    run = Run(make_engine({"calls": {"limit": 1}}))
    run.call()
    halted_state = run.state
    for i in range(3):
        _, d = run.reserve(T0 + i, call_id=f"x{i}")
        assert d.halted and d.code == "calls_exhausted"
    assert run.state is halted_state
    d = run.step(Reset(T0 + 10, "alice"))
    assert d.allowed and d.code == "reset" and "alice" in d.message
    assert run.state.run == 1
    assert run.reserve(T0 + 11)[1].allowed


def test_external_halt_is_lifted_by_lift_but_budget_halts_are_not() -> None:
    run = Run(make_engine({"calls": {"limit": 5}}))
    d = run.step(Halt(T0, FailureType.EXTERNAL, "pool_halted", "pool p1 is halted"))
    assert d.halted and d.code == "pool_halted"
    assert run.reserve()[1].code == "pool_halted"
    # a second halt does not replace the first (absorbing)
    run.step(Halt(T0, FailureType.SAFETY, "other", "x"))
    assert run.state.halt is not None and run.state.halt.code == "pool_halted"
    assert run.step(Lift(T0, "operator", code="other")).halted
    d = run.step(Lift(T0, "operator", code="pool_halted"))
    assert d.allowed and d.code == "lifted"
    run2 = Run(make_engine({"calls": {"limit": 1}}))
    run2.call()
    assert run2.step(Lift(T0, "operator")).halted


def test_settle_after_halt_still_charges_the_spend() -> None:
    run = Run(make_engine({"tokens": {"limit": 1000}}))
    call_id, _ = run.reserve(model="gpt-4o", max_input_tokens=100)
    run.step(Halt(T0, FailureType.EXTERNAL, "admin", "stop"))
    d = run.step(Settle(call_id, T0, Usage(80, 0), True))
    assert d.halted and d.code == "admin"
    assert d.budget["tokens"]["used"] == 80.0


def test_reset_keeps_calls_in_flight() -> None:
    run = Run(make_engine({"calls": {"limit": 1}}))
    call_id, _ = run.reserve()
    run.step(Reset(T0, "bob"))
    assert call_id in run.state.reservations
    assert not run.reserve()[1].allowed
    run.step(Settle(call_id, T0, Usage(), True))
    assert run.state.meter("calls") == (1, 0, 0, ())


# ---------------------------------------------------------------- robustness


def test_duplicate_call_id_is_refused() -> None:
    run = Run(make_engine({}))
    run.reserve(call_id="same")
    _, d = run.reserve(call_id="same")
    assert (d.allowed, d.failure_type, d.code) == (False, FailureType.SAFETY, "duplicate_call_id")


@pytest.mark.parametrize(
    "bad",
    [
        {"ts": float("nan")},
        {"ts": float("inf")},
        {"max_input_tokens": -1},
        {"risk": float("nan")},
        {"risk": -0.1},
    ],
)
def test_invalid_reserve_is_refused(bad: dict[str, Any]) -> None:
    run = Run(make_engine({}))
    _, d = run.reserve(**bad)
    assert (d.allowed, d.code) == (False, "invalid_event")


def test_settle_of_an_unknown_call_still_charges() -> None:
    run = Run(make_engine({"tokens": {"limit": 100}}))
    d = run.step(Settle("ghost", T0, Usage(10, 10, model="gpt-4o"), True))
    assert d.budget["tokens"]["used"] == 20.0


def test_release_of_an_unknown_call_changes_nothing() -> None:
    run = Run(make_engine({"calls": {"limit": 1}}))
    before = run.state
    run.step(Release("ghost", T0))
    assert run.state is before


def test_abandon_charges_the_worst_case_without_failure() -> None:
    run = Run(make_engine({"tokens": {"limit": 1000}, "consecutiveFailures": {"limit": 1}}))
    call_id, _ = run.reserve(model="gpt-4o", max_input_tokens=100, max_output_tokens=50)
    d = run.step(Abandon(call_id, T0))
    assert d.allowed and d.budget["tokens"]["used"] == 150.0


def test_non_events_are_rejected() -> None:
    engine = make_engine({})
    with pytest.raises(TypeError):
        engine.step(engine.initial_state(), object())  # type: ignore[arg-type]


# ---------------------------------------------------------------- warnings, restore


def test_warnings_at_warn_at() -> None:
    run = Run(make_engine({"calls": {"limit": 10}, "warnAt": 0.5}))
    for _ in range(4):
        assert run.call().warnings == ()
    assert run.call().warnings == ("calls",)


def test_restore_adapts_a_state_to_a_changed_policy() -> None:
    old = Run(make_engine({"calls": {"limit": 10}}))
    old.call()
    old.reserve(model="gpt-4o", max_input_tokens=100)
    new_engine = make_engine(
        {
            "calls": {"limit": 10},
            "tokens": {"limit": 1000},
            "costUSD": {"limit": 1, "period": "hour", "window": "rolling"},
        }
    )
    state = new_engine.restore(old.state)
    assert state.meter_names == ("calls/run", "tokens/run", "cost_usd/hour-rolling")
    assert state.meter("calls").used == 1  # type: ignore[union-attr]
    # reserved is recomputed from the calls in flight
    assert state.meter("tokens").reserved == 100  # type: ignore[union-attr]
    assert state.meter("cost_usd").reserved == 250_000_000  # type: ignore[union-attr]
    # step() restores on its own
    _, d = new_engine.step(old.state, Release("c2", T0))
    assert d.budget["tokens"]["reserved"] == 0.0


def test_a_changed_period_keeps_the_spend() -> None:
    run = Run(make_engine({"calls": {"limit": 3, "period": "hour"}}))
    run.call(T0 + 10)
    run.call(T0 + 20)
    rolling = make_engine({"calls": {"limit": 3, "period": "hour", "window": "rolling"}})
    run.engine = rolling  # the policy was reloaded: step() adapts the state itself
    assert run.call(T0 + 30).halted is False
    _, d = run.reserve(T0 + 40)
    assert not d.allowed and d.code == "calls_exhausted"
    assert run.state.meter_names == ("calls/hour-rolling",)
    # the carried spend leaves the rolling window about an hour later
    assert run.reserve(T0 + 30 + 3600 + 60)[1].allowed


def test_state_and_decision_json_round_trip() -> None:
    run = Run(
        make_engine(
            {
                "calls": {"limit": 10, "period": "hour", "window": "rolling"},
                "stagnation": {"window": 5},
                "distinctTools": {"limit": 5},
            }
        )
    )
    run.call(tool="t", result="r")
    _, d = run.reserve(T0 + 1, tool="u", model="gpt-4o", max_input_tokens=7)
    assert EngineState.from_json(run.state.to_json()) == run.state
    assert Decision.from_json(d.to_json()) == d


def test_unsupported_state_format_is_refused() -> None:
    with pytest.raises(ValueError, match="format"):
        EngineState.from_json('{"format": 99}')


def test_huge_limits_serialise() -> None:
    engine = Engine(make_spec({"costUSD": {"limit": 1e9}}), make_engine({}).prices)
    state = engine.initial_state()
    state, _ = engine.step(state, Reserve("a", T0, "llm", "h", None, "gpt-4o", 10**12, 0, "f"))
    assert EngineState.from_json(state.to_json()) == state


def test_a_decision_has_no_truth_value() -> None:
    _, d = Run(make_engine({})).reserve()
    with pytest.raises(TypeError, match="allowed"):
        bool(d)


def test_events_round_trip_through_dicts() -> None:
    events = [
        Reserve("a", T0, "llm", "h", None, "gpt-4o", 1, 2, "f", 0.5),
        Settle("a", T0, Usage(1, 2, 3, 4, 5, True, "m"), False, "e", None),
        Settle("b", T0, None, True),
        Release("a", T0),
        Abandon("a", T0),
        AddRisk(T0, 0.2, "pii"),
        Halt(T0, FailureType.EXTERNAL, "pool_halted", "x"),
        Reset(T0, "alice"),
        Lift(T0, "bob", "pool_halted"),
    ]
    for event in events:
        assert event_from_dict(event.to_dict()) == event
    with pytest.raises(ValueError, match="unknown event"):
        event_from_dict({"event": "explode"})


def test_budget_report_is_lazy_and_exact() -> None:
    run = Run(make_engine({"costUSD": {"limit": 2.5}}))
    _, d = run.reserve(model="gpt-4o-mini", max_input_tokens=1000)
    assert d.budget == {"cost_usd": {"used": 0.0, "reserved": 0.00015, "limit": 2.5}}
    assert dict(d.budget) == d.budget and "cost_usd" in d.budget and len(d.budget) == 1
