"""Decision assembly: budget reports, warnAt warnings, allowed/refused/halted decisions.

Every event handler ends here: the decision carries the warnings of the dimensions at or
past warnAt and a budget report built only when read (``LazyBudget``).
"""

from __future__ import annotations

from operator import add, ge

from haltgate.governance.engine.config import ALLOWED, new_record
from haltgate.governance.engine.decision import Decision, LazyBudget
from haltgate.governance.engine.periods import MeterPeriods
from haltgate.governance.engine.state import EngineState, HaltInfo
from haltgate.governance.policy_base import FailureType


def _count(used: int, limit: int) -> dict[str, float]:
    return {"used": float(used), "reserved": 0.0, "limit": float(limit)}


class DecisionReporting(MeterPeriods):
    """Reports and decisions of the engine (see :class:`~.config.EngineConfig`)."""

    __slots__ = ()

    def budget_report(
        self, state: EngineState, now: float | None = None
    ) -> dict[str, dict[str, float]]:
        """Per dimension ``{"used", "reserved", "limit"}`` as of ``now`` (default: the
        state's clock), in reported units (USD, risk, tokens, seconds, counts)."""
        if state.meter_names != self._names:
            state = self.restore(state)
        return self._report(state, state.clock if now is None else max(now, state.clock))

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
        message: str = ALLOWED,
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
        return new_record(
            Decision,
            (
                allowed,
                failure,
                code,
                message,
                tuple(warnings) if warnings else (),
                new_record(LazyBudget, (self._report, state, now)),
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
