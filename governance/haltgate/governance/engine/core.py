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

from collections.abc import Callable
from typing import Any

from haltgate.governance.engine import codes
from haltgate.governance.engine.admission import Admission
from haltgate.governance.engine.config import (
    MAX_CODE_CHARS,
    MAX_MESSAGE_CHARS,
    fmt_amount,
)
from haltgate.governance.engine.decision import Decision
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
)
from haltgate.governance.engine.pricing import PriceTable
from haltgate.governance.engine.settlement import Settlement
from haltgate.governance.engine.state import EngineState, HaltInfo
from haltgate.governance.engine.units import risk_to_micro
from haltgate.governance.policy import GovernancePolicySpec
from haltgate.governance.policy_base import FailureType


class Engine(Admission, Settlement):
    """The builtin budget engine for one policy.

    Build once per policy (``Engine(spec, PriceTable.for_policy(spec.pricing))``), then
    call :meth:`step` for every event. The engine holds configuration only; the state is
    passed in and returned.

    The layers: ``config`` (the policy compiled), ``periods``, ``reporting`` (decisions),
    ``admission`` (Reserve), ``settlement`` (Settle, Release, Abandon); this class adds
    the dispatch and the operator events (risk, halt, reset, lift).
    """

    __slots__ = ("_dispatch",)

    def __init__(self, spec: GovernancePolicySpec, prices: PriceTable) -> None:
        super().__init__(spec, prices)
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
                    f"risk budget exhausted: {fmt_amount(spec, used[i])} of "
                    f"{fmt_amount(spec, spec.limit)} after {ev.code[:64]}",
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
