"""The budget engine: ``step(state, event) -> (state, decision)``.

Pure: no clock, no I/O, no randomness; the same events give the same decisions. All
amounts are integers (``engine.units``). ``docs/budgets.md`` is the user-facing reference of
every rule implemented here; keep the two in step.

Hot-path notes (``bench/engine.py`` measures them): a step builds one new ``EngineState``
tuple and shares every part it did not change; meters are stored column-wise so a step
rebuilds one or two tuples of ints; period bookkeeping runs only when the event's time
passes ``state.roll_at`` (the next period boundary or bucket expiry); the budget report of
a decision is built only when read (``LazyBudget``); the meter loops unpack plain tuples
rather than reading attributes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from operator import add, ge, gt, itemgetter, sub
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

MAX_MESSAGE_CHARS = 512
"""Halt messages from outside are cut to this size (they end up in every refusal)."""
MAX_CODE_CHARS = 64

_ALLOWED = "allowed"
_INF = math.inf
_new = tuple.__new__
"""Builds a named tuple from a tuple without the generated ``__new__`` (a Python function
taking one argument per field): ~2x cheaper, and states/decisions are built every step."""


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
    key: str
    """The meter's name in the state: ``<dimension>/<mode>`` (e.g. ``calls/hour-rolling``).
    A policy that changes a meter's period or window changes its key, so a state made
    under the old policy is adapted by ``restore`` (the bookkeeping differs)."""


def _fmt(spec: MeterSpec, amount: int) -> str:
    if spec.scale == PICO_PER_USD:
        return f"${amount / PICO_PER_USD:.6f}"
    if spec.scale == 1:
        return str(amount)
    return f"{amount / spec.scale:g}"


def _picker(sources: tuple[int, ...]) -> Callable[[Amounts], tuple[int, ...]]:
    """A function picking the meters' amounts out of an amount vector, as a tuple."""
    if not sources:
        return lambda amounts: ()
    if len(sources) == 1:
        only = sources[0]
        return lambda amounts: (amounts[only],)
    return itemgetter(*sources)


def _remember(recent: tuple[str, ...], item: str, keep: int) -> tuple[str, ...]:
    """``recent`` plus ``item``, the oldest dropped beyond ``keep``."""
    if len(recent) < keep:
        return (*recent, item)
    return (*recent[1 - keep :], item) if keep > 1 else (item,)


def _count(used: int, limit: int) -> dict[str, float]:
    return {"used": float(used), "reserved": 0.0, "limit": float(limit)}


class Engine:
    """The builtin budget engine for one policy.

    Build once per policy (``Engine(spec, PriceTable.for_policy(spec.pricing))``), then
    call :meth:`step` for every event. The engine holds configuration only; the state is
    passed in and returned.
    """

    __slots__ = (
        "_counter_warns",
        "_cw",
        "_dim_names",
        "_dispatch",
        "_fail_warn",
        "_host_warn",
        "_ident_warn",
        "_limits",
        "_max_failures",
        "_max_hosts",
        "_max_identical",
        "_max_tools",
        "_meters",
        "_names",
        "_pick",
        "_prices",
        "_recent",
        "_report_meta",
        "_risk_index",
        "_rolling",
        "_run_limits",
        "_stag_warn",
        "_stagnation",
        "_tool_warn",
        "_track_tools",
        "_wall",
        "_wall_warn",
        "_warns",
        "_zeros",
        "spec",
    )

    def __init__(self, spec: GovernancePolicySpec, prices: PriceTable) -> None:
        self.spec = spec
        self._prices = prices
        b = spec.budgets
        warn_at = b.warn_at
        meters: list[MeterSpec] = []

        def add(
            dim: Dimension,
            source: int,
            limit: int,
            period: Period,
            window: Window,
            scale: int = 1,
        ) -> None:
            seconds = PERIOD_SECONDS[period]
            rolling = bool(seconds) and window is Window.ROLLING
            meters.append(
                MeterSpec(
                    dim=dim,
                    source=source,
                    limit=limit,
                    period=seconds,
                    rolling=rolling,
                    bucket=seconds // ROLLING_BUCKETS if rolling else 0,
                    warn=warn_at * limit,
                    scale=scale,
                    period_name=f"{window.value} {period.value}" if seconds else "run",
                    key=f"{dim.name}/{period.value}-{window.value}"
                    if seconds
                    else f"{dim.name}/run",
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
        self._rolling = tuple(i for i, m in enumerate(meters) if m.rolling)
        # Column vectors for the C-level map() arithmetic of the hot paths.
        self._pick = _picker(tuple(m.source for m in meters))
        self._limits = tuple(m.limit for m in meters)
        self._run_limits = tuple(_INF if m.period else m.limit for m in meters)
        self._warns = tuple(m.warn for m in meters)
        self._names = tuple(m.key for m in meters)
        self._dim_names = tuple(m.dim.name for m in meters)
        self._report_meta = tuple((m.dim.name, m.scale, m.limit / m.scale) for m in meters)
        self._zeros = (0,) * len(meters)
        self._risk_index = (
            self._dim_names.index("risk_score") if "risk_score" in self._dim_names else -1
        )

        self._wall = None if b.wall_time is None else b.wall_time.limit_seconds
        self._wall_warn = None if self._wall is None else warn_at * self._wall
        self._max_failures = (
            None if b.consecutive_failures is None else b.consecutive_failures.limit
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
        self._cw = tuple(
            _INF if w is None else w
            for w in (
                self._fail_warn,
                self._ident_warn,
                self._stag_warn,
                self._tool_warn,
                self._host_warn,
                self._wall_warn,
            )
        )
        self._counter_warns = any(
            w is not None
            for w in (
                self._wall_warn,
                self._fail_warn,
                self._ident_warn,
                self._tool_warn,
                self._host_warn,
                self._stag_warn,
            )
        )
        self._recent = (
            0
            if self._stagnation is None
            else min(RECENT_MAX, max(RECENT_MIN, 2 * self._stagnation))
        )
        self._track_tools = self._max_tools is not None or self._stagnation is not None
        self._dispatch: dict[type, Callable[[EngineState, Any], tuple[EngineState, Decision]]] = {
            Reserve: self._reserve,
            Settle: self._settle,
            Release: self._close,
            Abandon: self._close,
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
        n = len(self._meters)
        calendar = any(m.period and not m.rolling for m in self._meters)
        return EngineState(
            run=0,
            halt=None,
            run_started=None,
            clock=0.0,
            # Calendar meters start with period key 0: the first step must roll them.
            roll_at=0.0 if calendar else _INF,
            meter_names=self._names,
            used=self._zeros,
            reserved=self._zeros,
            keys=self._zeros,
            buckets=((),) * n,
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

        Meters are matched by key (dimension and period mode). A dimension whose period or
        window changed keeps its spend, all of it in the current period or bucket (counted
        rather than forgotten: fail closed); new dimensions start empty. Every meter's
        ``reserved`` is recomputed from the calls in flight, so it is exact whatever the
        old policy was. Halt, counters and reservations are kept.
        """
        old = dict(zip(state.meter_names, state.meters, strict=True))
        by_dim = {name.split("/", 1)[0]: m for name, m in old.items()}
        in_flight = tuple(state.reservations.values())
        clock = state.clock
        rows = []
        for spec in self._meters:
            reserved = sum(r.amounts[spec.source] for r in in_flight)
            m = old.get(spec.key)
            if m is None:
                carried = by_dim.get(spec.dim.name)
                used = 0 if carried is None else carried.used
                if spec.rolling:
                    m = MeterState(used, 0, int(clock // spec.bucket), ())
                elif spec.period:
                    m = MeterState(used, 0, int(clock // spec.period), ())
                else:
                    m = MeterState(used, 0, 0, ())
            rows.append(m._replace(reserved=reserved))
        state = state._replace(
            meter_names=self._names,
            used=tuple(r.used for r in rows),
            reserved=tuple(r.reserved for r in rows),
            keys=tuple(r.key for r in rows),
            buckets=tuple(r.buckets for r in rows),
            roll_at=0.0,
        )
        return self._roll_all(state, clock)

    def budget_report(
        self, state: EngineState, now: float | None = None
    ) -> dict[str, dict[str, float]]:
        """Per dimension ``{"used", "reserved", "limit"}`` as of ``now`` (default: the
        state's clock), in reported units (USD, risk, tokens, seconds, counts)."""
        if state.meter_names != self._names:
            state = self.restore(state)
        return self._report(state, state.clock if now is None else max(now, state.clock))

    # ------------------------------------------------------------------ periods

    def _roll_all(self, state: EngineState, now: float) -> EngineState:
        """Move every periodic meter to ``now``'s period and recompute ``roll_at``."""
        used = list(state.used)
        keys = list(state.keys)
        buckets = list(state.buckets)
        roll_at = _INF
        for i, spec in enumerate(self._meters):
            if not spec.period:
                continue
            if spec.rolling:
                # keys[i] is the open bucket (its amount: used minus the closed ones),
                # buckets[i] the closed buckets, oldest first.
                width = spec.bucket
                floor = int(now // width) - ROLLING_BUCKETS
                closed = buckets[i]
                if keys[i] < floor:  # even the newest bucket is out of the window
                    used[i] = 0
                    buckets[i] = closed = ()
                elif closed and closed[0][0] < floor:
                    used[i] -= sum(a for idx, a in closed if idx < floor)
                    buckets[i] = closed = tuple(x for x in closed if x[0] >= floor)
                if closed:
                    roll_at = min(roll_at, float((closed[0][0] + ROLLING_BUCKETS + 1) * width))
                elif used[i]:
                    roll_at = min(roll_at, float((keys[i] + ROLLING_BUCKETS + 1) * width))
            else:
                k = int(now // spec.period)
                if k != keys[i]:
                    keys[i] = k
                    used[i] = 0
                roll_at = min(roll_at, float((k + 1) * spec.period))
        return state._replace(
            used=tuple(used), keys=tuple(keys), buckets=tuple(buckets), roll_at=roll_at
        )

    def _retry_after(self, state: EngineState, i: int, now: float) -> float | None:
        """Seconds until a periodic meter frees budget (a hint for Retry-After)."""
        spec = self._meters[i]
        if not spec.period:
            return None
        if not spec.rolling:
            return float((state.keys[i] + 1) * spec.period - now)
        closed = state.buckets[i]
        oldest = closed[0][0] if closed else state.keys[i]
        return float((oldest + ROLLING_BUCKETS + 1) * spec.bucket - now)

    # ------------------------------------------------------------------ reports

    def _report(self, state: EngineState, now: float) -> dict[str, dict[str, float]]:
        if now >= state.roll_at:
            state = self._roll_all(state, now)
        out: dict[str, dict[str, float]] = {
            name: {"used": used / scale, "reserved": reserved / scale, "limit": limit}
            for (name, scale, limit), used, reserved in zip(
                self._report_meta, state.used, state.reserved, strict=True
            )
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

    def _names_at(self, totals: tuple[int, ...]) -> list[str]:
        """Names of the meters whose used + reserved (``totals``) reached warnAt."""
        return [
            name for name, t, w in zip(self._dim_names, totals, self._warns, strict=True) if t >= w
        ]

    def _meter_warnings(self, state: EngineState, out: list[str]) -> None:
        totals = tuple(map(add, state.used, state.reserved))
        if any(map(ge, totals, self._warns)):
            out.extend(self._names_at(totals))

    def _counter_warnings(self, state: EngineState, now: float, out: list[str]) -> None:
        """Append the non-meter dimensions at or past warnAt."""
        # One combined test for the common case (nothing near a limit); inf = not budgeted.
        fw, iw, sw, tw, hw, ww = self._cw
        started = state.run_started
        elapsed = 0.0 if started is None else now - started
        if (
            state.consecutive_failures < fw
            and state.identical < iw
            and state.no_progress < sw
            and len(state.tools) < tw
            and len(state.hosts) < hw
            and elapsed < ww
        ):
            return
        if started is not None and elapsed >= ww:
            out.append("wall_time")
        if state.consecutive_failures >= fw:
            out.append("consecutive_failures")
        if state.identical >= iw:
            out.append("identical_retries")
        if len(state.tools) >= tw:
            out.append("distinct_tools")
        if len(state.hosts) >= hw:
            out.append("distinct_hosts")
        if state.no_progress >= sw:
            out.append("stagnation")

    def _status(
        self,
        state: EngineState,
        now: float,
        code: str | None = None,
        message: str = _ALLOWED,
        warnings: list[str] | None = None,
    ) -> Decision:
        """Decision for a non-Reserve event: allowed unless halted.

        ``warnings``: meter warnings already computed by the caller (state rolled to now).
        """
        if warnings is None:
            if now >= state.roll_at:
                state_now = self._roll_all(state, now)
            else:
                state_now = state
            warnings = []
            self._meter_warnings(state_now, warnings)
        if self._counter_warns:
            fw, iw, sw, tw, hw, ww = self._cw
            started = state.run_started
            if not (
                state.consecutive_failures < fw
                and state.identical < iw
                and state.no_progress < sw
                and len(state.tools) < tw
                and len(state.hosts) < hw
                and (started is None or now - started < ww)
            ):
                self._counter_warnings(state, now, warnings)
        halt = state.halt
        if halt is not None:
            return self._decision(
                state, now, warnings, False, halt.failure_type, halt.code, halt.message, True
            )
        return self._decision(state, now, warnings, True, None, code, message)

    def _decision(
        self,
        state: EngineState,
        now: float,
        warnings: list[str],
        allowed: bool,
        failure: FailureType | None,
        code: str | None,
        message: str,
        halted: bool = False,
        retry_after: float | None = None,
    ) -> Decision:
        """A decision whose budget report (of ``state`` at ``now``) is built only when read."""
        return _new(
            Decision,
            (
                allowed,
                failure,
                code,
                message,
                tuple(warnings) if warnings else (),
                _new(LazyBudget, (self._report, state, now)),
                halted,
                retry_after,
            ),
        )

    def _refuse(
        self,
        state: EngineState,
        now: float,
        failure: FailureType,
        code: str,
        message: str,
        retry_after: float | None = None,
    ) -> Decision:
        """Decision refusing one call without halting (``state`` rolled to ``now``)."""
        warnings: list[str] = []
        self._meter_warnings(state, warnings)
        if self._counter_warns:
            self._counter_warnings(state, now, warnings)
        return self._decision(
            state, now, warnings, False, failure, code, message, False, retry_after
        )

    def _halted(
        self, state: EngineState, now: float, failure: FailureType, code: str, message: str
    ) -> tuple[EngineState, Decision]:
        """Halt the run (if not already) and report it."""
        if state.halt is None:
            state = state._replace(halt=HaltInfo(failure, code, message, now))
        return state, self._status(state, now)

    # ------------------------------------------------------------------ reserve

    def _reserve(self, state: EngineState, ev: Reserve) -> tuple[EngineState, Decision]:
        clock = state.clock
        if state.halt is not None:
            # Absorbing: nothing changes, the same failure every time.
            return state, self._status(state, clock)
        ts = ev.ts
        max_in = ev.max_input_tokens
        max_out = ev.max_output_tokens
        risk = ev.risk
        # x - x == 0.0 is false for NaN and for +-inf
        if not (ts - ts == 0.0 and risk - risk == 0.0) or max_in < 0 or max_out < 0 or risk < 0:
            return state, self._refuse(
                state,
                clock,
                FailureType.SAFETY,
                codes.INVALID_EVENT,
                "invalid reserve event: non-finite time or risk, or negative amounts",
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
        if now >= state.roll_at:
            state = self._roll_all(state, now)
        started = state.run_started
        if started is None:
            started = now
        # Identical retries are counted on every attempt, allowed or not: an agent looping
        # on a refused call is stagnating as much as one looping on an allowed one.
        fp = ev.fingerprint
        identical = state.identical + 1 if fp == state.last_fingerprint else 0

        wall = self._wall
        if wall is not None and now - started >= wall:
            return self._halted(
                self._attempt(state, started, now, fp, identical),
                now,
                FailureType.EXHAUSTION,
                codes.WALL_TIME.code,
                f"wall time budget exhausted: run started {now - started:.3f}s ago, "
                f"limit {wall:g}s",
            )
        max_identical = self._max_identical
        if max_identical is not None and identical >= max_identical:
            return self._halted(
                self._attempt(state, started, now, fp, identical),
                now,
                FailureType.STAGNATION,
                codes.REPEATED_TOOL_CALLS if ev.tool is not None else codes.IDENTICAL_RETRIES.code,
                f"the same call was repeated {identical} times in a row (limit {max_identical})",
            )

        model = ev.model
        cost = 0
        if model is None and ev.kind == "llm":
            # An LLM call whose model is unknown cannot be priced: it is an unknown model
            # (the policy default prices it, or it is refused). "" never matches a table entry.
            model = ""
        if model is not None:
            price = self._prices.lookup(model)
            if price is None:
                return self._refused_attempt(
                    state, started, now, fp, identical, FailureType.SAFETY,
                    codes.UNKNOWN_MODEL_PRICE,
                    f"model {model[:128]!r} has no price and the policy denies unknown models"
                    if model
                    else "LLM call without a model: it cannot be priced and the policy "
                    "denies unknown models",
                )  # fmt: skip
            # = price.worst_case_pico(max_in, max_out), inlined (both are >= 0 here)
            cost = max_in * price.worst_input + max_out * price.worst_output

        tool = ev.tool
        tools = state.tools
        new_tool = False
        if tool is not None and self._track_tools and tool not in tools:
            max_tools = self._max_tools
            if max_tools is not None and len(tools) >= max_tools:
                return self._refused_attempt(
                    state, started, now, fp, identical, FailureType.EXHAUSTION,
                    codes.DISTINCT_TOOLS.code,
                    f"distinct tools budget exhausted: {len(tools)} tools used, limit "
                    f"{max_tools}; tool {tool[:128]!r} refused",
                )  # fmt: skip
            new_tool = True
            if max_tools is not None or len(tools) < UNTRACKED_SET_CAP:
                tools = tools | {tool}
        hosts = state.hosts
        max_hosts = self._max_hosts
        if max_hosts is not None and ev.host not in hosts:
            if len(hosts) >= max_hosts:
                return self._refused_attempt(
                    state, started, now, fp, identical, FailureType.EXHAUSTION,
                    codes.DISTINCT_HOSTS.code,
                    f"distinct hosts budget exhausted: {len(hosts)} hosts used, limit "
                    f"{max_hosts}; host {ev.host[:128]!r} refused",
                )  # fmt: skip
            hosts = hosts | {ev.host}

        amounts: Amounts = (
            1,
            max_in + max_out,
            max_in,
            max_out,
            cost,
            round(risk * MICRO_PER_RISK) if risk else 0,
        )
        used = state.used
        need = self._pick(amounts)
        new_reserved = tuple(map(add, state.reserved, need))
        totals = tuple(map(add, used, new_reserved))
        if any(map(gt, totals, self._limits)):
            i = next(
                i for i, (t, lim) in enumerate(zip(totals, self._limits, strict=True)) if t > lim
            )
            return self._over_limit(state, started, now, fp, identical, i, need[i])
        warnings = self._names_at(totals) if any(map(ge, totals, self._warns)) else []

        reservations = state.reservations.copy()
        reservations[call_id] = _new(
            Reservation, (ev.kind, ev.host, tool, model, fp, now, amounts, new_tool)
        )
        state = _new(
            EngineState,
            (
                state.run,
                None,
                started,
                now,
                state.roll_at,
                state.meter_names,
                used,
                new_reserved,
                state.keys,
                state.buckets,
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
            ),
        )
        if self._counter_warns:
            fw, iw, sw, tw, hw, ww = self._cw
            if not (
                state.consecutive_failures < fw
                and identical < iw
                and state.no_progress < sw
                and len(tools) < tw
                and len(hosts) < hw
                and now - started < ww
            ):
                self._counter_warnings(state, now, warnings)
        return state, self._decision(state, now, warnings, True, None, None, _ALLOWED)

    def _attempt(
        self, state: EngineState, started: float, now: float, fp: str, identical: int
    ) -> EngineState:
        """The state after a refused Reserve: the clock, run start and retry count move."""
        return state._replace(
            run_started=started, clock=now, last_fingerprint=fp, identical=identical
        )

    def _refused_attempt(
        self,
        state: EngineState,
        started: float,
        now: float,
        fp: str,
        identical: int,
        failure: FailureType,
        code: str,
        message: str,
        retry_after: float | None = None,
    ) -> tuple[EngineState, Decision]:
        state = self._attempt(state, started, now, fp, identical)
        return state, self._refuse(state, now, failure, code, message, retry_after)

    def _over_limit(
        self,
        state: EngineState,
        started: float,
        now: float,
        fp: str,
        identical: int,
        i: int,
        need: int,
    ) -> tuple[EngineState, Decision]:
        """Meter ``i`` cannot take a call needing ``need``: halt or refuse, with the reason."""
        spec = self._meters[i]
        dim = spec.dim
        used = state.used[i]
        reserved = state.reserved[i]
        limit = spec.limit
        if used >= limit and not spec.period:
            return self._halted(
                self._attempt(state, started, now, fp, identical),
                now,
                dim.failure_type,
                dim.code,
                f"{dim.name} budget exhausted: used {_fmt(spec, used)} of "
                f"{_fmt(spec, limit)} (run)",
            )
        if used >= limit:
            message = (
                f"{dim.name} budget exhausted for this period: used {_fmt(spec, used)} "
                f"of {_fmt(spec, limit)} ({spec.period_name})"
            )
        else:
            message = (
                f"{dim.name} budget cannot cover this call's worst case: used "
                f"{_fmt(spec, used)} + in flight {_fmt(spec, reserved)} + this call "
                f"{_fmt(spec, need)} > limit {_fmt(spec, limit)} ({spec.period_name})"
            )
        return self._refused_attempt(
            state,
            started,
            now,
            fp,
            identical,
            dim.failure_type,
            dim.code,
            message,
            self._retry_after(state, i, now),
        )

    # ------------------------------------------------------------------ settle & co

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
        in_t = usage.input_tokens
        if in_t < 0:
            in_t = 0
        out_t = usage.output_tokens
        if out_t < 0:
            out_t = 0
        name = usage.model or model
        if name is None:
            cost = 0
        else:
            lookup = self._prices.lookup
            price = lookup(name)
            if price is None and model is not None and name != model:
                price = lookup(model)
            cost = fallback_cost if price is None else price.cost_pico(usage)
        return (1, in_t + out_t, in_t, out_t, cost, risk)

    def _charge(
        self,
        state: EngineState,
        now: float,
        held: Amounts,
        actual: Amounts,
        warnings: list[str],
    ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], Any, float, int]:
        """Replace a reservation (``held``) by actual spend in every meter.

        ``state`` is rolled to ``now``. Returns the new ``used``, ``reserved``, ``keys``,
        ``buckets`` and ``roll_at`` columns and the index of a run meter whose spend reached
        its limit (-1: none). Appends meter warnings.
        """
        pick = self._pick
        new_used = tuple(map(add, state.used, pick(actual)))
        # Never negative: ``reserved`` is always the sum of the reservations' amounts (restore
        # recomputes it from them; a property test checks it after every step).
        new_reserved = tuple(map(sub, state.reserved, pick(held)))
        totals = tuple(map(add, new_used, new_reserved))
        if any(map(ge, totals, self._warns)):
            warnings.extend(self._names_at(totals))
        exhausted = -1
        if any(map(ge, new_used, self._run_limits)):
            limits = self._run_limits
            exhausted = next(i for i, u in enumerate(new_used) if u >= limits[i])
        keys = state.keys
        buckets = state.buckets
        roll_at = state.roll_at
        if self._rolling:
            # Usage goes to the open bucket, which is only ``used``: nothing else changes
            # until the first settle in a newer bucket closes it (once per bucket width).
            for i in self._rolling:
                spec = self._meters[i]
                if not actual[spec.source]:
                    continue
                idx = int(now // spec.bucket)
                before = state.used[i]
                if idx != keys[i]:
                    closed = buckets[i]
                    open_amount = before - sum(a for _, a in closed)
                    kl = list(keys)
                    kl[i] = idx
                    keys = tuple(kl)
                    if open_amount > 0:
                        bl = list(buckets)
                        bl[i] = (*closed, (state.keys[i], open_amount))
                        buckets = tuple(bl)
                if not before:
                    roll_at = min(roll_at, float((idx + ROLLING_BUCKETS + 1) * spec.bucket))
        return new_used, new_reserved, keys, buckets, roll_at, exhausted

    def _charged(
        self,
        state: EngineState,
        now: float,
        call_id: str,
        res: Reservation,
        actual: Amounts,
    ) -> tuple[EngineState, Decision]:
        """State and decision after a reservation is charged ``actual`` (Abandon, Release)."""
        warnings: list[str] = []
        used, reserved, keys, buckets, roll_at, exhausted = self._charge(
            state, now, res.amounts, actual, warnings
        )
        halt = state.halt
        if halt is None and exhausted >= 0:
            halt = self._exhausted_halt(used, exhausted, now)
        state = state._replace(
            halt=halt,
            clock=now,
            used=used,
            reserved=reserved,
            keys=keys,
            buckets=buckets,
            roll_at=roll_at,
            reservations=self._without(state, call_id),
        )
        return state, self._status(state, now, warnings=warnings)

    def _exhausted_halt(self, used: tuple[int, ...], i: int, now: float) -> HaltInfo:
        spec = self._meters[i]
        dim = spec.dim
        return HaltInfo(
            dim.failure_type,
            dim.code,
            f"{dim.name} budget exhausted: used {_fmt(spec, used[i])} of "
            f"{_fmt(spec, spec.limit)} (run)",
            now,
        )

    def _wall_halt(self, state: EngineState, now: float) -> HaltInfo | None:
        started = state.run_started
        wall = self._wall
        if wall is not None and started is not None and now - started >= wall:
            return HaltInfo(
                FailureType.EXHAUSTION,
                codes.WALL_TIME.code,
                f"wall time budget exhausted: run started {now - started:.3f}s ago, "
                f"limit {wall:g}s",
                now,
            )
        return None

    @staticmethod
    def _without(state: EngineState, call_id: str) -> MappingProxyType[str, Reservation]:
        remaining = state.reservations.copy()
        del remaining[call_id]
        return MappingProxyType(remaining) if remaining else EMPTY_RESERVATIONS

    def _settle(self, state: EngineState, ev: Settle) -> tuple[EngineState, Decision]:
        ts = ev.ts
        clock = state.clock
        now = ts if ts > clock and ts - ts == 0.0 else clock
        if now >= state.roll_at:
            state = self._roll_all(state, now)
        call_id = ev.call_id
        res = state.reservations.get(call_id)
        warnings: list[str] = []
        used, reserved, keys, buckets, roll_at, exhausted = self._charge(
            state,
            now,
            ZERO_AMOUNTS if res is None else res.amounts,
            self._actual(res, ev.usage),
            warnings,
        )
        reservations = state.reservations
        if res is not None:
            remaining = reservations.copy()
            del remaining[call_id]
            reservations = MappingProxyType(remaining) if remaining else EMPTY_RESERVATIONS

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
            new_tool = res is not None and res.new_tool
            novel = res is not None and (new_tool or fp not in recent_calls)
            if ok:
                result = ev.result_fingerprint
                if result is not None:
                    fresh = result not in recent_results
                    progress = fresh or new_tool
                    if fresh:
                        recent_results = _remember(recent_results, result, keep)
                else:
                    progress = novel
            else:
                error = ev.error_fingerprint
                fresh = error is None or error not in recent_errors
                progress = novel and fresh
                if error is not None and fresh:
                    recent_errors = _remember(recent_errors, error, keep)
            if fp is not None and fp not in recent_calls:
                recent_calls = _remember(recent_calls, fp, keep)
            no_progress = 0 if progress else no_progress + 1

        halt = state.halt
        if halt is None:
            if exhausted >= 0:
                halt = self._exhausted_halt(used, exhausted, now)
            elif self._max_failures is not None and failures >= self._max_failures:
                halt = HaltInfo(
                    FailureType.EXHAUSTION,
                    codes.CONSECUTIVE_FAILURES.code,
                    f"{failures} calls failed in a row (limit {self._max_failures})",
                    now,
                )
            elif self._stagnation is not None and no_progress >= self._stagnation:
                halt = HaltInfo(
                    FailureType.STAGNATION,
                    codes.STAGNATION.code,
                    f"{no_progress} steps in a row without progress (window {self._stagnation})",
                    now,
                )
            elif (
                self._wall is not None
                and state.run_started is not None
                and now - state.run_started >= self._wall
            ):
                halt = self._wall_halt(state, now)
        state = _new(
            EngineState,
            (
                state.run,
                halt,
                state.run_started,
                now,
                roll_at,
                state.meter_names,
                used,
                reserved,
                keys,
                buckets,
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
            ),
        )
        return state, self._status(state, now, warnings=warnings)

    def _close(self, state: EngineState, ev: Release | Abandon) -> tuple[EngineState, Decision]:
        """End a reservation without usage: a released call costs nothing, an abandoned
        one its whole reserved worst case (it may have been billed)."""
        ts = ev.ts
        clock = state.clock
        now = ts if ts > clock and ts - ts == 0.0 else clock
        res = state.reservations.get(ev.call_id)
        if res is None:
            return state, self._status(state, now)
        if now >= state.roll_at:
            state = self._roll_all(state, now)
        spent = res.amounts if ev.__class__ is Abandon else ZERO_AMOUNTS
        return self._charged(state, now, ev.call_id, res, spent)

    def _add_risk(self, state: EngineState, ev: AddRisk) -> tuple[EngineState, Decision]:
        ts = ev.ts
        clock = state.clock
        now = ts if ts > clock and ts - ts == 0.0 else clock
        risk = ev.risk
        if not (risk >= 0.0 and risk - risk == 0.0):
            # Negative risk would buy budget back: ignore it (fail closed).
            return state, self._status(state, now, codes.INVALID_EVENT, "risk ignored")
        micro = risk_to_micro(risk)
        i = self._risk_index
        if not micro or i < 0:
            return state, self._status(state, now)
        if now >= state.roll_at:
            state = self._roll_all(state, now)
        used = list(state.used)
        used[i] += micro
        state = state._replace(clock=now, used=tuple(used))
        spec = self._meters[i]
        if state.halt is None and used[i] >= spec.limit:
            dim = spec.dim
            state = state._replace(
                halt=HaltInfo(
                    dim.failure_type,
                    dim.code,
                    f"risk budget exhausted: {_fmt(spec, used[i])} of "
                    f"{_fmt(spec, spec.limit)} after {ev.code[:64]}",
                    now,
                )
            )
        return state, self._status(state, now)

    def _halt_event(self, state: EngineState, ev: Halt) -> tuple[EngineState, Decision]:
        ts = ev.ts
        clock = state.clock
        now = ts if ts > clock and ts - ts == 0.0 else clock
        if state.halt is not None:
            return state, self._status(state, now)
        state = state._replace(
            clock=now,
            halt=HaltInfo(
                FailureType(ev.failure_type),
                (ev.code or codes.EXTERNAL_HALT)[:MAX_CODE_CHARS],
                ev.message[:MAX_MESSAGE_CHARS],
                now,
            ),
        )
        return state, self._status(state, now)

    def _reset(self, state: EngineState, ev: Reset) -> tuple[EngineState, Decision]:
        ts = ev.ts
        clock = state.clock
        now = ts if ts > clock and ts - ts == 0.0 else clock
        # A new run: every counter back to zero; calls in flight keep their reservations
        # (they are real and will settle into the new run).
        n = len(self._meters)
        state = EngineState(
            state.run + 1,
            None,
            None,
            now,
            0.0,
            state.meter_names,
            self._zeros,
            state.reserved,
            self._zeros,
            ((),) * n,
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
        state = self._roll_all(state, now)
        return state, self._status(state, now, codes.RESET, f"reset by {ev.actor[:128]}")

    def _lift(self, state: EngineState, ev: Lift) -> tuple[EngineState, Decision]:
        ts = ev.ts
        clock = state.clock
        now = ts if ts > clock and ts - ts == 0.0 else clock
        halt = state.halt
        if (
            halt is not None
            and halt.failure_type is FailureType.EXTERNAL
            and (ev.code is None or ev.code == halt.code)
        ):
            state = state._replace(clock=now, halt=None)
            return state, self._status(
                state, now, codes.LIFTED, f"external halt lifted by {ev.actor[:128]}"
            )
        return state, self._status(state, now)
