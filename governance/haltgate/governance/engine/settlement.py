"""Settlement of a call: actual spend replaces its reservation (Settle, Release, Abandon).

Charges the meters (rolling buckets included), counts consecutive failures, tracks
stagnation (progress is something new coming back or a new try not failing the same way)
and halts the run when a run budget is spent.
"""

from __future__ import annotations

from operator import add, ge, sub
from types import MappingProxyType
from typing import Any

from haltgate.governance.engine import codes
from haltgate.governance.engine.config import ROLLING_BUCKETS, fmt_amount, new_record
from haltgate.governance.engine.decision import Decision
from haltgate.governance.engine.events import Abandon, Release, Settle, Usage
from haltgate.governance.engine.reporting import DecisionReporting
from haltgate.governance.engine.state import (
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
    Reservation,
)
from haltgate.governance.policy_base import FailureType


def _remember(recent: tuple[str, ...], item: str, keep: int) -> tuple[str, ...]:
    """``recent`` plus ``item``, the oldest dropped beyond ``keep``."""
    if len(recent) < keep:
        return (*recent, item)
    return (*recent[1 - keep :], item) if keep > 1 else (item,)


class Settlement(DecisionReporting):
    """The Settle, Release and Abandon handlers (see :class:`~.config.EngineConfig`)."""

    __slots__ = ()

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
            f"{dim.name} budget exhausted: used {fmt_amount(spec, used[i])} of "
            f"{fmt_amount(spec, spec.limit)} (run)",
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
        state = new_record(
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
