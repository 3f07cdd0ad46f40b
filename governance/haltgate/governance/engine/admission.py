"""Admission of a call (the Reserve event): every limit checked before the call goes out.

In check order: halted run, invalid event, duplicate call id, wall time, identical retries,
unknown model price, distinct tools, distinct hosts, then the meters against the call's
worst case. An allowed call holds its worst case as a reservation until it settles.
"""

from __future__ import annotations

from operator import add, ge, gt
from types import MappingProxyType

from haltgate.governance.engine import codes
from haltgate.governance.engine.config import (
    ALLOWED,
    UNTRACKED_SET_CAP,
    fmt_amount,
    new_record,
)
from haltgate.governance.engine.decision import Decision
from haltgate.governance.engine.events import Reserve
from haltgate.governance.engine.reporting import DecisionReporting
from haltgate.governance.engine.state import Amounts, EngineState, Reservation
from haltgate.governance.engine.units import MICRO_PER_RISK
from haltgate.governance.policy_base import FailureType


class Admission(DecisionReporting):
    """The Reserve handler (see :class:`~.config.EngineConfig`)."""

    __slots__ = ()

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
        reservations[call_id] = new_record(
            Reservation, (ev.kind, ev.host, tool, model, fp, now, amounts, new_tool)
        )
        state = new_record(
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
        return state, self._decision(state, now, warnings, True, None, None, ALLOWED)

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
                f"{dim.name} budget exhausted: used {fmt_amount(spec, used)} of "
                f"{fmt_amount(spec, limit)} (run)",
            )
        if used >= limit:
            message = (
                f"{dim.name} budget exhausted for this period: used {fmt_amount(spec, used)} "
                f"of {fmt_amount(spec, limit)} ({spec.period_name})"
            )
        else:
            message = (
                f"{dim.name} budget cannot cover this call's worst case: used "
                f"{fmt_amount(spec, used)} + in flight {fmt_amount(spec, reserved)} + this call "
                f"{fmt_amount(spec, need)} > limit {fmt_amount(spec, limit)} ({spec.period_name})"
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
