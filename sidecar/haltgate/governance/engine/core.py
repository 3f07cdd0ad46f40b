"""The budget engine: ``step(state, event) -> (state, decision)``.

Pure: no clock, no I/O, no randomness; the same events give the same decisions. All
amounts are integers (``engine.units``). ``docs/budgets.md`` is the user-facing reference of
every rule implemented here; keep the two in step.

Hot-path notes: a step builds one new ``EngineState`` tuple and shares every part it did not
change; meters are rolled (period boundaries) lazily, only when the event's time crosses
one; the budget report of a decision is built only when read (``LazyBudget``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from haltgate.governance.engine import codes
from haltgate.governance.engine.codes import Dimension
from haltgate.governance.engine.decision import Decision, LazyBudget
from haltgate.governance.engine.events import (
    Abandon,
    AddRisk,
    Event,
    Halt,
    Lift,
    Release,
    Reserve,
    Reset,
    Settle,
    Usage,
)
from haltgate.governance.engine.pricing import PriceTable
from haltgate.governance.engine.state import (
    A_CALLS,
    A_COST,
    A_INPUT,
    A_OUTPUT,
    A_RISK,
    A_TOKENS,
    EMPTY_METER,
    EMPTY_RESERVATIONS,
    ZERO_AMOUNTS,
    Amounts,
    EngineState,
    HaltInfo,
    MeterState,
    Reservation,
)
from haltgate.governance.engine.units import (
    MICRO_PER_RISK,
    PICO_PER_USD,
    risk_to_micro,
    usd_to_pico,
)
from haltgate.governance.policy import FailureType, GovernancePolicySpec, Period, Window

PERIOD_SECONDS = {Period.RUN: 0, Period.HOUR: 3600, Period.DAY: 86400}
ROLLING_BUCKETS = 60
"""A rolling window is tracked in this many buckets (1 min for an hour, 24 min for a day).

Usage leaves a rolling window when its whole bucket is older than the period: between
``period`` and ``period + period/60`` seconds after it was settled, never earlier (usage is
counted too long rather than too short: fail closed)."""
UNTRACKED_SET_CAP = 4096
"""Without a distinct-tools limit, the set of seen tools (for stagnation) stops growing here."""
RECENT_MIN, RECENT_MAX = 16, 64
"""Stagnation remembers the last max(16, 2 x window) fingerprints (at most 64)."""

_ALLOWED = "allowed"


@dataclass(frozen=True, slots=True)
class MeterSpec:
    """A metered dimension as configured by the policy, in integer units."""

    dim: Dimension
    source: int
    """Index into an amount vector (``state.A_*``)."""
    limit: int
    period: int
    """Seconds; 0 for the whole run."""
    rolling: bool
    bucket: int
    """Rolling bucket width in seconds."""
    warn: float
    """used + reserved at or above this reports a warning."""
    scale: int
    """Integer units per reported unit (10**12 for USD, 10**6 for risk, else 1)."""
    period_name: str


def _roll(spec: MeterSpec, m: MeterState, now: float) -> MeterState:
    """The meter as seen at ``now``: a new calendar period, or expired rolling buckets."""
    period = spec.period
    if not period:
        return m
    if not spec.rolling:
        key = int(now // period)
        if key == m.key:
            return m
        return MeterState(0, m.reserved, key, ())
    buckets = m.buckets
    if not buckets:
        return m
    floor = int(now // spec.bucket) - ROLLING_BUCKETS
    if buckets[0][0] >= floor:
        return m
    kept = tuple(b for b in buckets if b[0] >= floor)
    return MeterState(sum(a for _, a in kept), m.reserved, 0, kept)


def _add_used(spec: MeterSpec, m: MeterState, now: float, amount: int, release: int) -> MeterState:
    """Charge ``amount`` at ``now`` and give back ``release`` of the reservation."""
    reserved = m.reserved - release
    if reserved < 0:  # only after a restore with a changed policy; never go negative
        reserved = 0
    if not amount:
        return MeterState(m.used, reserved, m.key, m.buckets)
    buckets = m.buckets
    if spec.rolling:
        idx = int(now // spec.bucket)
        if buckets and buckets[-1][0] == idx:
            buckets = (*buckets[:-1], (idx, buckets[-1][1] + amount))
        else:
            buckets = (*buckets, (idx, amount))
    return MeterState(m.used + amount, reserved, m.key, buckets)


def _retry_after(spec: MeterSpec, m: MeterState, now: float) -> float | None:
    """Seconds until a periodic meter frees budget (a hint for Retry-After)."""
    if not spec.period:
        return None
    if not spec.rolling:
        return float((m.key + 1) * spec.period - now)
    if not m.buckets:
        return None
    return float((m.buckets[0][0] + ROLLING_BUCKETS + 1) * spec.bucket - now)


def _fmt(spec: MeterSpec, amount: int) -> str:
    if spec.scale == PICO_PER_USD:
        return f"${amount / PICO_PER_USD:.6f}"
    if spec.scale == 1:
        return str(amount)
    return f"{amount / spec.scale:g}"


def _finite(x: float) -> bool:
    # NaN - NaN and inf - inf are NaN, which compares unequal to 0.0.
    return x - x == 0.0


class Engine:
    """The builtin budget engine for one policy.

    Build once per policy (``Engine(spec, PriceTable.for_policy(spec.pricing))``), then
    call :meth:`step` for every event. The engine holds configuration only; the state is
    passed in and returned.
    """

    __slots__ = (
        "_dispatch",
        "_fail_warn",
        "_host_warn",
        "_ident_warn",
        "_max_failures",
        "_max_hosts",
        "_max_identical",
        "_max_tools",
        "_meters",
        "_names",
        "_prices",
        "_recent",
        "_stag_warn",
        "_stagnation",
        "_tool_warn",
        "_track_tools",
        "_wall",
        "_wall_warn",
        "_zero_meters",
        "spec",
    )

    def __init__(self, spec: GovernancePolicySpec, prices: PriceTable) -> None:
        self.spec = spec
        self._prices = prices
        b = spec.budgets
        warn_at = b.warn_at
        meters: list[MeterSpec] = []

        def add(
            dim: Dimension, source: int, limit: int, period: Period, window: Window, scale: int = 1
        ) -> None:
            seconds = PERIOD_SECONDS[period]
            meters.append(
                MeterSpec(
                    dim=dim,
                    source=source,
                    limit=limit,
                    period=seconds,
                    rolling=bool(seconds) and window is Window.ROLLING,
                    bucket=seconds // ROLLING_BUCKETS if seconds else 0,
                    warn=warn_at * limit,
                    scale=scale,
                    period_name=period.value if not seconds else f"{window.value} {period.value}",
                )
            )

        if b.calls is not None:
            add(codes.CALLS, A_CALLS, b.calls.limit, b.calls.period, b.calls.window)
        if b.tokens is not None:
            t = b.tokens
            if t.limit is not None:
                add(codes.TOKENS, A_TOKENS, t.limit, t.period, t.window)
            if t.input is not None:
                add(codes.INPUT_TOKENS, A_INPUT, t.input, t.period, t.window)
            if t.output is not None:
                add(codes.OUTPUT_TOKENS, A_OUTPUT, t.output, t.period, t.window)
        if b.cost_usd is not None:
            c = b.cost_usd
            add(codes.COST_USD, A_COST, usd_to_pico(c.limit), c.period, c.window, PICO_PER_USD)
        if b.risk_score is not None:
            add(
                codes.RISK_SCORE,
                A_RISK,
                risk_to_micro(b.risk_score.limit),
                Period.RUN,
                Window.CALENDAR,
                MICRO_PER_RISK,
            )
        self._meters = tuple(meters)
        self._names = tuple(m.dim.name for m in meters)
        self._zero_meters = (EMPTY_METER,) * len(meters)

        self._wall = None if b.wall_time is None else b.wall_time.limit_seconds
        self._wall_warn = None if self._wall is None else warn_at * self._wall
        self._max_failures = (
            None if b.consecutive_failures is None else (b.consecutive_failures.limit)
        )
        self._fail_warn = None if self._max_failures is None else warn_at * self._max_failures
        self._max_identical = None if b.identical_retries is None else b.identical_retries.limit
        self._ident_warn = None if self._max_identical is None else warn_at * self._max_identical
        self._max_tools = None if b.distinct_tools is None else b.distinct_tools.limit
        self._tool_warn = None if self._max_tools is None else warn_at * self._max_tools
        self._max_hosts = None if b.distinct_hosts is None else b.distinct_hosts.limit
        self._host_warn = None if self._max_hosts is None else warn_at * self._max_hosts
        self._stagnation = None if b.stagnation is None else b.stagnation.window
        self._stag_warn = None if self._stagnation is None else warn_at * self._stagnation
        self._recent = (
            0
            if self._stagnation is None
            else min(RECENT_MAX, max(RECENT_MIN, 2 * self._stagnation))
        )
        self._track_tools = self._max_tools is not None or self._stagnation is not None
        self._dispatch: dict[type, Callable[[EngineState, Any], tuple[EngineState, Decision]]] = {
            Reserve: self._reserve,
            Settle: self._settle,
            Release: self._release,
            Abandon: self._abandon,
            AddRisk: self._add_risk,
            Halt: self._halt_event,
            Reset: self._reset,
            Lift: self._lift,
        }

    # ------------------------------------------------------------------ public API

    @property
    def prices(self) -> PriceTable:
        """The price table the engine charges with."""
        return self._prices

    @property
    def meter_specs(self) -> tuple[MeterSpec, ...]:
        """The metered dimensions of the policy, in check order."""
        return self._meters

    def initial_state(self) -> EngineState:
        """The state of a fresh run: nothing spent, nothing in flight, not halted."""
        return EngineState(
            run=0,
            halt=None,
            run_started=None,
            clock=0.0,
            meter_names=self._names,
            meters=self._zero_meters,
            reservations=EMPTY_RESERVATIONS,
            consecutive_failures=0,
            last_fingerprint=None,
            identical=0,
            no_progress=0,
            recent_calls=(),
            recent_results=(),
            recent_errors=(),
            tools=frozenset(),
            hosts=frozenset(),
        )

    def step(self, state: EngineState, event: Event) -> tuple[EngineState, Decision]:
        """Apply one event; return the next state and the decision.

        A state made under another policy (other metered dimensions) is first adapted with
        :meth:`restore`. Raises TypeError for an object that is not an event.
        """
        handler = self._dispatch.get(type(event))
        if handler is None:
            raise TypeError(f"not an engine event: {type(event).__name__}")
        names = state.meter_names
        if names is not self._names and names != self._names:
            state = self.restore(state)
        return handler(state, event)

    def restore(self, state: EngineState) -> EngineState:
        """Adapt a state (e.g. reloaded after a policy change) to this engine's policy.

        Meters are matched by dimension name; new ones start empty; every meter's
        ``reserved`` is recomputed from the calls in flight, so it is exact whatever
        the old policy was. Halt, counters and reservations are kept.
        """
        old = dict(zip(state.meter_names, state.meters, strict=True))
        in_flight = tuple(state.reservations.values())
        meters = []
        for spec in self._meters:
            m = old.get(spec.dim.name, EMPTY_METER)
            reserved = sum(r.amounts[spec.source] for r in in_flight)
            buckets = m.buckets
            used = m.used
            if spec.rolling:
                if not buckets and used:
                    # Was calendar or run: keep the spend, as if settled now.
                    buckets = ((int(state.clock // spec.bucket), used),)
                used = sum(a for _, a in buckets)
            else:
                buckets = ()
            meters.append(MeterState(used, reserved, m.key, buckets))
        return state._replace(meter_names=self._names, meters=tuple(meters))

    def budget_report(
        self, state: EngineState, now: float | None = None
    ) -> dict[str, dict[str, float]]:
        """Per dimension ``{"used", "reserved", "limit"}`` as of ``now`` (default: the
        state's clock), in reported units (USD, risk, tokens, seconds, counts)."""
        return self._report(state, state.clock if now is None else max(now, state.clock))

    # ------------------------------------------------------------------ reports

    def _report(self, state: EngineState, now: float) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for spec, m in zip(self._meters, state.meters, strict=True):
            m = _roll(spec, m, now)
            scale = spec.scale
            out[spec.dim.name] = {
                "used": m.used / scale,
                "reserved": m.reserved / scale,
                "limit": spec.limit / scale,
            }
        if self._wall is not None:
            started = state.run_started
            out["wall_time"] = {
                "used": 0.0 if started is None else float(now - started),
                "reserved": 0.0,
                "limit": float(self._wall),
            }
        if self._max_failures is not None:
            out["consecutive_failures"] = _count(state.consecutive_failures, self._max_failures)
        if self._max_identical is not None:
            out["identical_retries"] = _count(state.identical, self._max_identical)
        if self._max_tools is not None:
            out["distinct_tools"] = _count(len(state.tools), self._max_tools)
        if self._max_hosts is not None:
            out["distinct_hosts"] = _count(len(state.hosts), self._max_hosts)
        if self._stagnation is not None:
            out["stagnation"] = _count(state.no_progress, self._stagnation)
        return out

    def _lazy(self, state: EngineState, now: float) -> LazyBudget:
        return LazyBudget(lambda: self._report(state, now))

    def _warnings(
        self, state: EngineState, meters: tuple[MeterState, ...], now: float
    ) -> tuple[str, ...]:
        """Dimensions at or past warnAt (``meters`` already rolled to ``now``)."""
        out: list[str] = []
        for spec, m in zip(self._meters, meters, strict=True):
            if m.used + m.reserved >= spec.warn:
                out.append(spec.dim.name)
        if (
            self._wall_warn is not None
            and state.run_started is not None
            and (now - state.run_started >= self._wall_warn)
        ):
            out.append("wall_time")
        if self._fail_warn is not None and state.consecutive_failures >= self._fail_warn:
            out.append("consecutive_failures")
        if self._ident_warn is not None and state.identical >= self._ident_warn:
            out.append("identical_retries")
        if self._tool_warn is not None and len(state.tools) >= self._tool_warn:
            out.append("distinct_tools")
        if self._host_warn is not None and len(state.hosts) >= self._host_warn:
            out.append("distinct_hosts")
        if self._stag_warn is not None and state.no_progress >= self._stag_warn:
            out.append("stagnation")
        return tuple(out)

    def _rolled(self, state: EngineState, now: float) -> tuple[MeterState, ...]:
        meters = state.meters
        rolled = tuple(_roll(s, m, now) for s, m in zip(self._meters, meters, strict=True))
        return meters if rolled == meters else rolled

    def _status(
        self, state: EngineState, now: float, code: str | None = None, message: str = _ALLOWED
    ) -> Decision:
        """Decision for a non-Reserve event: allowed unless halted."""
        halt = state.halt
        meters = self._rolled(state, now)
        warnings = self._warnings(state, meters, now)
        if halt is not None:
            return Decision(
                False,
                halt.failure_type,
                halt.code,
                halt.message,
                warnings,
                self._lazy(state, now),
                True,
            )
        return Decision(True, None, code, message, warnings, self._lazy(state, now))

    def _refuse(
        self,
        state: EngineState,
        now: float,
        failure: FailureType,
        code: str,
        message: str,
        retry_after: float | None = None,
    ) -> Decision:
        """Decision refusing one call without halting."""
        meters = self._rolled(state, now)
        return Decision(
            False,
            failure,
            code,
            message,
            self._warnings(state, meters, now),
            self._lazy(state, now),
            False,
            retry_after,
        )

    def _halted(
        self, state: EngineState, now: float, failure: FailureType, code: str, message: str
    ) -> tuple[EngineState, Decision]:
        """Halt the run (if not already) and report it."""
        if state.halt is None:
            state = state._replace(halt=HaltInfo(failure, code, message, now))
        return state, self._status(state, now)

    # ------------------------------------------------------------------ events

    def _reserve(self, state: EngineState, ev: Reserve) -> tuple[EngineState, Decision]:
        clock = state.clock
        halt = state.halt
        if halt is not None:
            # Absorbing: nothing changes, the same failure every time.
            return state, self._status(state, clock)
        ts = ev.ts
        max_in = ev.max_input_tokens
        max_out = ev.max_output_tokens
        risk = ev.risk
        if not _finite(ts) or max_in < 0 or max_out < 0 or not (risk >= 0.0 and _finite(risk)):
            return state, self._refuse(
                state,
                clock,
                FailureType.SAFETY,
                codes.INVALID_EVENT,
                "invalid reserve event: non-finite time or risk, or negative token counts",
            )
        call_id = ev.call_id
        if call_id in state.reservations:
            return state, self._refuse(
                state,
                clock,
                FailureType.SAFETY,
                codes.DUPLICATE_CALL_ID,
                f"call {call_id[:64]!r} is already in flight",
            )
        now = ts if ts > clock else clock
        started = state.run_started
        if started is None:
            started = now

        # Identical retries are counted on every attempt, allowed or not: an agent looping
        # on a refused call is stagnating as much as one looping on an allowed one.
        fp = ev.fingerprint
        identical = state.identical + 1 if fp == state.last_fingerprint else 0
        state = EngineState(
            state.run,
            None,
            started,
            now,
            state.meter_names,
            state.meters,
            state.reservations,
            state.consecutive_failures,
            fp,
            identical,
            state.no_progress,
            state.recent_calls,
            state.recent_results,
            state.recent_errors,
            state.tools,
            state.hosts,
        )

        wall = self._wall
        if wall is not None and now - started >= wall:
            return self._halted(
                state,
                now,
                FailureType.EXHAUSTION,
                codes.WALL_TIME.code,
                f"wall time budget exhausted: run started {now - started:.3f}s ago, "
                f"limit {wall:g}s",
            )
        max_identical = self._max_identical
        if max_identical is not None and identical >= max_identical:
            code = (
                codes.REPEATED_TOOL_CALLS if ev.tool is not None else codes.IDENTICAL_RETRIES.code
            )
            return self._halted(
                state,
                now,
                FailureType.STAGNATION,
                code,
                f"the same call was repeated {identical} times in a row (limit {max_identical})",
            )

        model = ev.model
        cost = 0
        if model is not None:
            price = self._prices.lookup(model)
            if price is None:
                return state, self._refuse(
                    state,
                    now,
                    FailureType.SAFETY,
                    codes.UNKNOWN_MODEL_PRICE,
                    f"model {model[:128]!r} has no price and the policy denies unknown models",
                )
            cost = price.worst_case_pico(max_in, max_out)

        tool = ev.tool
        tools = state.tools
        new_tool = False
        if tool is not None and self._track_tools and tool not in tools:
            max_tools = self._max_tools
            if max_tools is not None and len(tools) >= max_tools:
                return state, self._refuse(
                    state,
                    now,
                    FailureType.EXHAUSTION,
                    codes.DISTINCT_TOOLS.code,
                    f"distinct tools budget exhausted: {len(tools)} tools used, limit "
                    f"{max_tools}; tool {tool[:128]!r} refused",
                )
            new_tool = True
            if max_tools is not None or len(tools) < UNTRACKED_SET_CAP:
                tools = tools | {tool}
        hosts = state.hosts
        max_hosts = self._max_hosts
        if max_hosts is not None and ev.host not in hosts:
            if len(hosts) >= max_hosts:
                return state, self._refuse(
                    state,
                    now,
                    FailureType.EXHAUSTION,
                    codes.DISTINCT_HOSTS.code,
                    f"distinct hosts budget exhausted: {len(hosts)} hosts used, limit "
                    f"{max_hosts}; host {ev.host[:128]!r} refused",
                )
            hosts = hosts | {ev.host}

        amounts: Amounts = (
            1,
            max_in + max_out,
            max_in,
            max_out,
            cost,
            risk_to_micro(risk) if risk else 0,
        )
        meters = state.meters
        new_meters = []
        for spec, m in zip(self._meters, meters, strict=True):
            if spec.period:
                m = _roll(spec, m, now)
            need = amounts[spec.source]
            limit = spec.limit
            if m.used >= limit:
                dim = spec.dim
                if not spec.period:
                    return self._halted(
                        state,
                        now,
                        dim.failure_type,
                        dim.code,
                        f"{dim.name} budget exhausted: used {_fmt(spec, m.used)} of "
                        f"{_fmt(spec, limit)} ({spec.period_name})",
                    )
                return state, self._refuse(
                    state,
                    now,
                    dim.failure_type,
                    dim.code,
                    f"{dim.name} budget exhausted for this period: used {_fmt(spec, m.used)}"
                    f" of {_fmt(spec, limit)} ({spec.period_name})",
                    _retry_after(spec, m, now),
                )
            if m.used + m.reserved + need > limit:
                dim = spec.dim
                return state, self._refuse(
                    state,
                    now,
                    dim.failure_type,
                    dim.code,
                    f"{dim.name} budget cannot cover this call's worst case: used "
                    f"{_fmt(spec, m.used)} + in flight {_fmt(spec, m.reserved)} + this call "
                    f"{_fmt(spec, need)} > limit {_fmt(spec, limit)} ({spec.period_name})",
                    _retry_after(spec, m, now),
                )
            new_meters.append(
                MeterState(m.used, m.reserved + need, m.key, m.buckets) if need else m
            )

        reservations = dict(state.reservations)
        reservations[call_id] = Reservation(
            ev.kind, ev.host, tool, model, fp, now, amounts, new_tool
        )
        meters_t = tuple(new_meters)
        state = EngineState(
            state.run,
            None,
            started,
            now,
            state.meter_names,
            meters_t,
            MappingProxyType(reservations),
            state.consecutive_failures,
            fp,
            identical,
            state.no_progress,
            state.recent_calls,
            state.recent_results,
            state.recent_errors,
            tools,
            hosts,
        )
        return state, Decision(
            True, None, None, _ALLOWED, self._warnings(state, meters_t, now), self._lazy(state, now)
        )

    def _actual(self, res: Reservation | None, usage: Usage | None) -> Amounts:
        """What a settled call really spent, as an amount vector."""
        if res is None:
            if usage is None:
                return (1, 0, 0, 0, 0, 0)
            model = usage.model
            risk = 0
            fallback_cost = 0
        else:
            model = res.model
            risk = res.amounts[A_RISK]
            fallback_cost = res.amounts[A_COST]
            if usage is None:
                if model is None:
                    return (1, 0, 0, 0, 0, risk)
                # Unknown usage of an LLM call: charge the reserved worst case (fail closed).
                a = res.amounts
                return (1, a[A_TOKENS], a[A_INPUT], a[A_OUTPUT], a[A_COST], risk)
        in_t = usage.input_tokens if usage.input_tokens > 0 else 0
        out_t = usage.output_tokens if usage.output_tokens > 0 else 0
        cost = self._prices.cost_pico(usage, model)
        if cost is None:
            cost = fallback_cost
        return (1, in_t + out_t, in_t, out_t, cost, risk)

    def _budget_halt(
        self, state: EngineState, meters: tuple[MeterState, ...], now: float
    ) -> HaltInfo | None:
        """A run-period meter whose settled spend reached its limit halts the run."""
        for spec, m in zip(self._meters, meters, strict=True):
            if not spec.period and m.used >= spec.limit:
                dim = spec.dim
                return HaltInfo(
                    dim.failure_type,
                    dim.code,
                    f"{dim.name} budget exhausted: used {_fmt(spec, m.used)} of "
                    f"{_fmt(spec, spec.limit)} (run)",
                    now,
                )
        started = state.run_started
        if self._wall is not None and started is not None and now - started >= self._wall:
            return HaltInfo(
                FailureType.EXHAUSTION,
                codes.WALL_TIME.code,
                f"wall time budget exhausted: run started {now - started:.3f}s ago, "
                f"limit {self._wall:g}s",
                now,
            )
        return None

    def _charge(
        self, state: EngineState, now: float, call_id: str, res: Reservation | None, actual: Amounts
    ) -> tuple[tuple[MeterState, ...], Any]:
        """Meters and reservations after replacing a reservation by actual spend."""
        reserved = ZERO_AMOUNTS if res is None else res.amounts
        meters = tuple(
            _add_used(spec, _roll(spec, m, now), now, actual[spec.source], reserved[spec.source])
            for spec, m in zip(self._meters, state.meters, strict=True)
        )
        reservations = state.reservations
        if res is not None:
            remaining = dict(reservations)
            del remaining[call_id]
            reservations = MappingProxyType(remaining) if remaining else EMPTY_RESERVATIONS
        return meters, reservations

    def _settle(self, state: EngineState, ev: Settle) -> tuple[EngineState, Decision]:
        ts = ev.ts
        clock = state.clock
        now = ts if ts > clock and _finite(ts) else clock
        call_id = ev.call_id
        res = state.reservations.get(call_id)
        meters, reservations = self._charge(state, now, call_id, res, self._actual(res, ev.usage))

        ok = ev.ok
        failures = 0 if ok else state.consecutive_failures + 1
        no_progress = state.no_progress
        recent_calls = state.recent_calls
        recent_results = state.recent_results
        recent_errors = state.recent_errors
        if self._stagnation is not None:
            # Progress: something new came back (a result not seen recently), or the agent
            # tried something new (a call or tool it had not used) that did not fail with an
            # error it already got. The same call, the same error or the same result again
            # is no progress.
            keep = self._recent
            fp = None if res is None else res.fingerprint
            novel = res is not None and (res.new_tool or fp not in recent_calls)
            if ok:
                result = ev.result_fingerprint
                if result is not None:
                    progress = result not in recent_results or (res is not None and res.new_tool)
                    if result not in recent_results:
                        recent_results = (*recent_results, result)[-keep:]
                else:
                    progress = novel
            else:
                error = ev.error_fingerprint
                progress = novel and (error is None or error not in recent_errors)
                if error is not None and error not in recent_errors:
                    recent_errors = (*recent_errors, error)[-keep:]
            if fp is not None and fp not in recent_calls:
                recent_calls = (*recent_calls, fp)[-keep:]
            no_progress = 0 if progress else no_progress + 1

        state = EngineState(
            state.run,
            state.halt,
            state.run_started,
            now,
            state.meter_names,
            meters,
            reservations,
            failures,
            state.last_fingerprint,
            state.identical,
            no_progress,
            recent_calls,
            recent_results,
            recent_errors,
            state.tools,
            state.hosts,
        )
        if state.halt is None:
            halt = self._budget_halt(state, meters, now)
            if halt is None and self._max_failures is not None and failures >= self._max_failures:
                halt = HaltInfo(
                    FailureType.EXHAUSTION,
                    codes.CONSECUTIVE_FAILURES.code,
                    f"{failures} calls failed in a row (limit {self._max_failures})",
                    now,
                )
            if halt is None and self._stagnation is not None and no_progress >= self._stagnation:
                halt = HaltInfo(
                    FailureType.STAGNATION,
                    codes.STAGNATION.code,
                    f"{no_progress} steps in a row without progress (window {self._stagnation})",
                    now,
                )
            if halt is not None:
                state = state._replace(halt=halt)
        return state, self._status(state, now)

    def _abandon(self, state: EngineState, ev: Abandon) -> tuple[EngineState, Decision]:
        ts = ev.ts
        clock = state.clock
        now = ts if ts > clock and _finite(ts) else clock
        res = state.reservations.get(ev.call_id)
        if res is None:
            return state, self._status(state, now)
        meters, reservations = self._charge(state, now, ev.call_id, res, res.amounts)
        state = state._replace(clock=now, meters=meters, reservations=reservations)
        if state.halt is None:
            halt = self._budget_halt(state, meters, now)
            if halt is not None:
                state = state._replace(halt=halt)
        return state, self._status(state, now)

    def _release(self, state: EngineState, ev: Release) -> tuple[EngineState, Decision]:
        ts = ev.ts
        clock = state.clock
        now = ts if ts > clock and _finite(ts) else clock
        res = state.reservations.get(ev.call_id)
        if res is None:
            return state, self._status(state, now)
        meters, reservations = self._charge(state, now, ev.call_id, res, ZERO_AMOUNTS)
        state = state._replace(clock=now, meters=meters, reservations=reservations)
        return state, self._status(state, now)

    def _add_risk(self, state: EngineState, ev: AddRisk) -> tuple[EngineState, Decision]:
        ts = ev.ts
        clock = state.clock
        now = ts if ts > clock and _finite(ts) else clock
        risk = ev.risk
        if not (risk >= 0.0 and _finite(risk)):
            # Negative risk would buy budget back: ignore it (fail closed).
            return state, self._status(state, now, codes.INVALID_EVENT, "risk ignored")
        micro = risk_to_micro(risk)
        if not micro or "risk_score" not in self._names:
            return state, self._status(state, now)
        i = self._names.index("risk_score")
        spec = self._meters[i]
        meters = list(state.meters)
        meters[i] = _add_used(spec, meters[i], now, micro, 0)
        meters_t = tuple(meters)
        state = state._replace(clock=now, meters=meters_t)
        if state.halt is None and meters_t[i].used >= spec.limit:
            dim = spec.dim
            state = state._replace(
                halt=HaltInfo(
                    dim.failure_type,
                    dim.code,
                    f"risk budget exhausted: {_fmt(spec, meters_t[i].used)} of "
                    f"{_fmt(spec, spec.limit)} after {ev.code[:64]}",
                    now,
                )
            )
        return state, self._status(state, now)

    def _halt_event(self, state: EngineState, ev: Halt) -> tuple[EngineState, Decision]:
        ts = ev.ts
        clock = state.clock
        now = ts if ts > clock and _finite(ts) else clock
        if state.halt is not None:
            return state, self._status(state, now)
        state = state._replace(
            clock=now,
            halt=HaltInfo(ev.failure_type, ev.code or codes.EXTERNAL_HALT, ev.message, now),
        )
        return state, self._status(state, now)

    def _reset(self, state: EngineState, ev: Reset) -> tuple[EngineState, Decision]:
        ts = ev.ts
        clock = state.clock
        now = ts if ts > clock and _finite(ts) else clock
        # A new run: every counter back to zero; calls in flight keep their reservations
        # (they are real and will settle into the new run).
        meters = tuple(MeterState(0, m.reserved, 0, ()) for m in state.meters)
        state = EngineState(
            state.run + 1,
            None,
            None,
            now,
            state.meter_names,
            meters,
            state.reservations,
            0,
            None,
            0,
            0,
            (),
            (),
            (),
            frozenset(),
            frozenset(),
        )
        return state, self._status(state, now, "reset", f"reset by {ev.actor[:128]}")

    def _lift(self, state: EngineState, ev: Lift) -> tuple[EngineState, Decision]:
        ts = ev.ts
        clock = state.clock
        now = ts if ts > clock and _finite(ts) else clock
        halt = state.halt
        if (
            halt is not None
            and halt.failure_type is FailureType.EXTERNAL
            and (ev.code is None or ev.code == halt.code)
        ):
            state = state._replace(clock=now, halt=None)
            return state, self._status(
                state, now, "lifted", f"external halt lifted by {ev.actor[:128]}"
            )
        return state, self._status(state, now)


def _count(used: int, limit: int) -> dict[str, float]:
    return {"used": float(used), "reserved": 0.0, "limit": float(limit)}
