"""``engine: emocore``: EmoCore's pressure model on top of haltgate's hard budgets.

Install with the extra: ``pip install 'haltgate[emocore]'``. The policy selects it with
``spec.engine.type: emocore`` and ``spec.engine.profile`` (``balanced`` - the default -,
``conservative`` or ``aggressive``: EmoCore's canonical profiles).

How it composes: every event goes to the builtin engine first, so the policy's declared
budgets (calls, tokens, cost, ...) and reserve-then-settle apply unchanged. Every settled
call is then one EmoCore step, with signals derived from the call:

==============  ==========================================================================
signal          from
==============  ==========================================================================
``reward``      1.0 when the call made progress (ok and a new result, or ok and a new call
                when no result digest is given), else 0.0 (``haltgate.governance.signals``)
``novelty``     1.0 for a call fingerprint or tool not seen in the last 32 calls, else 0.0
``urgency``     the tightest budget's fraction used (max of (used + in flight) / limit)
``difficulty``  1.0 for a failed call (5xx, network error, tool error), else 0.0
``trust``       1 - accumulated risk / risk limit (1.0 without a risk budget)
==============  ==========================================================================

When EmoCore halts, the run halts with the mapped failure type and the code
``emocore_<reason>``: SAFETY ``emocore_exploration_exceeded``, OVERRISK
``emocore_risk_exceeded``, EXHAUSTION ``emocore_exhaustion``, STAGNATION
``emocore_stagnation``; EmoCore's step fuse (its EXTERNAL ``max_steps``) becomes EXHAUSTION
``emocore_max_steps``, because haltgate's EXTERNAL means "halted from outside" and can be
lifted, which a step budget must not be.

Determinism: ``emocore.engine.EmoEngine`` reads ``time.monotonic()`` in its constructor
and in every ``step`` (the elapsed time drives its time decay and recovery), which would
make the same events give different halts. The adapter replaces the ``time`` name inside
``emocore.engine`` with a shim whose ``monotonic()`` returns the current event's ``ts``
while the adapter steps (a context variable), and the real clock otherwise, so other users
of emocore in the process are unaffected. EmoCore's mutable engine is rebuilt from the
state's snapshot (all plain floats, JSON-exact), so the adapter is a pure
``step(state, event)`` like the builtin engine. EmoCore does not use randomness.
"""

from __future__ import annotations

import time as _time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, NamedTuple

import orjson

from haltgate.governance.engine.core import Engine
from haltgate.governance.engine.decision import Decision
from haltgate.governance.engine.events import Event, Halt, Reset, Settle
from haltgate.governance.engine.pricing import PriceTable
from haltgate.governance.engine.state import EngineState
from haltgate.governance.policy import GovernancePolicySpec
from haltgate.governance.policy_base import FailureType
from haltgate.governance.signals import progress_signals

try:
    import emocore.engine as _emo_engine
    from emocore.behavior import BehaviorBudget
    from emocore.failures import FailureType as EmoFailure
    from emocore.profiles import PROFILES, Profile, ProfileType
    from emocore.state import PressureState
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "engine 'emocore' needs the emocore package: pip install 'haltgate[emocore]'"
    ) from e

__all__ = ["EmoCoreEngine", "EmoCoreState", "EmoSnapshot", "profile_named"]

_FAILURES = {
    EmoFailure.SAFETY: FailureType.SAFETY,
    EmoFailure.OVERRISK: FailureType.OVERRISK,
    EmoFailure.EXHAUSTION: FailureType.EXHAUSTION,
    EmoFailure.STAGNATION: FailureType.STAGNATION,
    EmoFailure.EXTERNAL: FailureType.EXHAUSTION,  # the step fuse: a budget, not an outside halt
}


# ------------------------------------------------------------------ the clock shim


class _InjectedClock:
    """Stands in for the ``time`` module inside ``emocore.engine``."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.now: ContextVar[float | None] = ContextVar("haltgate_emocore_now", default=None)

    def monotonic(self) -> float:
        now = self.now.get()
        return self._real.monotonic() if now is None else now

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _install_clock() -> _InjectedClock:
    current = _emo_engine.time
    if isinstance(current, _InjectedClock):
        return current
    clock = _InjectedClock(_time)
    _emo_engine.time = clock
    return clock


_CLOCK = _install_clock()


@contextmanager
def _clock_at(ts: float) -> Iterator[None]:
    token = _CLOCK.now.set(ts)
    try:
        yield
    finally:
        _CLOCK.now.reset(token)


# ------------------------------------------------------------------ state


class EmoSnapshot(NamedTuple):
    """Every mutable field of ``emocore.engine.EmoEngine``, as plain values."""

    pressure: tuple[float, float, float, float, float]
    """confidence, frustration, curiosity, arousal, risk"""
    budget: tuple[float, float, float, float]
    """effort, risk, persistence, exploration"""
    previous_budget: tuple[float, float, float, float]
    stable_budget: tuple[float, float, float, float]
    previous_risk: float
    step_count: int
    no_progress_steps: int
    last_step_time: float
    halted: bool
    failure: str
    reason: str | None


class EmoCoreState(NamedTuple):
    """The adapter's state: the builtin engine's, EmoCore's, and the novelty window."""

    builtin: EngineState
    emo: EmoSnapshot | None
    """None until the first settled call of the run."""
    seen: tuple[str, ...]


def _budget_tuple(b: Any) -> tuple[float, float, float, float]:
    return (float(b.effort), float(b.risk), float(b.persistence), float(b.exploration))


def _budget(t: tuple[float, float, float, float] | list[float]) -> Any:
    return BehaviorBudget(effort=t[0], risk=t[1], persistence=t[2], exploration=t[3])


def profile_named(name: str | None) -> Profile:
    """EmoCore's canonical profile by (case-insensitive) name; ValueError if unknown."""
    key = (name or "balanced").upper()
    try:
        return PROFILES[ProfileType[key]]
    except KeyError:
        known = ", ".join(p.name.lower() for p in ProfileType)
        raise ValueError(f"unknown emocore profile {name!r} (known: {known})") from None


# ------------------------------------------------------------------ the engine


class EmoCoreEngine:
    """The builtin engine plus an EmoCore pressure model, as one pure ``step``."""

    def __init__(self, spec: GovernancePolicySpec, prices: PriceTable) -> None:
        self.spec = spec
        self.builtin = Engine(spec, prices)
        self.profile = profile_named(spec.engine.profile)
        self._risk = next(
            (
                (i, m.limit)
                for i, m in enumerate(self.builtin.meter_specs)
                if m.dim.name == "risk_score"
            ),
            None,
        )

    # StepEngine protocol -----------------------------------------------------------

    @property
    def prices(self) -> PriceTable:
        """The price table the builtin engine charges with."""
        return self.builtin.prices

    def initial_state(self) -> EmoCoreState:
        """A fresh run."""
        return EmoCoreState(self.builtin.initial_state(), None, ())

    def restore(self, state: EmoCoreState | EngineState) -> EmoCoreState:
        """Adapt a reloaded state to this policy (the builtin part; EmoCore's is kept).

        A builtin engine's state (the policy switched to emocore) keeps its budgets and
        starts EmoCore fresh.
        """
        if isinstance(state, EngineState):
            state = EmoCoreState(state, None, ())
        return state._replace(builtin=self.builtin.restore(state.builtin))

    def engine_state(self, state: EmoCoreState) -> EngineState:
        """The builtin engine's part of the state (halt, budgets, calls in flight)."""
        return state.builtin

    def budget_report(
        self, state: EmoCoreState, now: float | None = None
    ) -> dict[str, dict[str, float]]:
        """The builtin report plus EmoCore's budgets as used/limit pairs."""
        out = self.builtin.budget_report(state.builtin, now)
        p = self.profile
        emo = state.emo
        effort, risk, _persistence, exploration = (
            (1.0, 0.0, 1.0, 0.0) if emo is None else emo.budget
        )
        steps = 0 if emo is None else emo.step_count
        out["emocore_effort"] = {
            "used": 1.0 - effort,
            "reserved": 0.0,
            "limit": 1.0 - p.exhaustion_threshold,
        }
        out["emocore_risk"] = {"used": risk, "reserved": 0.0, "limit": p.max_risk}
        out["emocore_exploration"] = {
            "used": exploration,
            "reserved": 0.0,
            "limit": p.max_exploration,
        }
        out["emocore_steps"] = {"used": float(steps), "reserved": 0.0, "limit": float(p.max_steps)}
        return out

    def state_to_json(self, state: EmoCoreState) -> bytes:
        """JSON bytes: the builtin state's compact form plus EmoCore's snapshot."""
        return orjson.dumps(
            {
                "builtin": orjson.Fragment(state.builtin.to_json_bytes()),
                "emocore": None if state.emo is None else list(state.emo),
                "seen": list(state.seen),
                "profile": self.profile.name,
            }
        )

    def state_from_json(self, data: bytes | str) -> EmoCoreState:
        """Inverse of :meth:`state_to_json`."""
        doc = orjson.loads(data)
        if not (isinstance(doc, dict) and "builtin" in doc):  # written by the builtin engine
            return EmoCoreState(EngineState.from_json(data), None, ())
        builtin = EngineState.from_json(orjson.dumps(doc["builtin"]))
        raw = doc["emocore"]
        emo = None
        if raw is not None:
            emo = EmoSnapshot(
                tuple(raw[0]),
                tuple(raw[1]),
                tuple(raw[2]),
                tuple(raw[3]),
                raw[4],
                int(raw[5]),
                int(raw[6]),
                raw[7],
                bool(raw[8]),
                raw[9],
                raw[10],
            )
        return EmoCoreState(builtin, emo, tuple(doc["seen"]))

    def step(self, state: EmoCoreState, event: Event) -> tuple[EmoCoreState, Decision]:
        """Step the builtin engine, then EmoCore for a settled call."""
        before = state.builtin
        builtin, decision = self.builtin.step(before, event)
        if isinstance(event, Reset):
            return EmoCoreState(builtin, None, ()), decision
        if not isinstance(event, Settle) or builtin.halt is not None:
            return state._replace(builtin=builtin), decision
        res = before.reservations.get(event.call_id)
        signals = progress_signals(
            tuple(state.seen),
            None if res is None else res.fingerprint,
            None if res is None else res.tool,
            event.ok,
            event.result_fingerprint,
        )
        seen = signals.seen
        now = builtin.clock
        snapshot, halted = self._emo_step(
            state.emo,
            now,
            reward=signals.reward,
            novelty=signals.novelty,
            urgency=self._urgency(builtin),
            difficulty=signals.difficulty,
            trust=self._trust(builtin),
        )
        if halted is not None:
            failure, reason = halted
            builtin, decision = self.builtin.step(
                builtin,
                Halt(now, failure, f"emocore_{reason}",
                     f"emocore ({self.profile.name.lower()} profile) halted: {reason}"),
            )  # fmt: skip
        return EmoCoreState(builtin, snapshot, seen), decision

    # EmoCore -------------------------------------------------------------------------

    def _urgency(self, state: EngineState) -> float:
        worst = 0.0
        for spec, used, reserved in zip(
            self.builtin.meter_specs, state.used, state.reserved, strict=True
        ):
            if spec.limit:
                worst = max(worst, (used + reserved) / spec.limit)
        return min(worst, 1.0)

    def _trust(self, state: EngineState) -> float:
        if self._risk is None:
            return 1.0
        i, limit = self._risk
        return max(0.0, 1.0 - state.used[i] / limit)

    def _emo_step(
        self, snap: EmoSnapshot | None, ts: float, **signals: float
    ) -> tuple[EmoSnapshot, tuple[FailureType, str] | None]:
        with _clock_at(ts):
            engine = _emo_engine.EmoEngine(self.profile)  # reads the injected clock
            if snap is not None:
                engine.state = PressureState(*snap.pressure)
                engine.budget = _budget(snap.budget)
                engine._previous_budget = _budget(snap.previous_budget)
                engine._stable_budget = _budget(snap.stable_budget)
                engine._previous_risk = snap.previous_risk
                engine.step_count = snap.step_count
                engine.no_progress_steps = snap.no_progress_steps
                engine.last_step_time = snap.last_step_time
                engine._halted = snap.halted
                engine._failure = EmoFailure[snap.failure]
                engine._reason = snap.reason
            result = engine.step(**signals)
        p = engine.state
        new = EmoSnapshot(
            (float(p.confidence), float(p.frustration), float(p.curiosity), float(p.arousal),
             float(p.risk)),
            _budget_tuple(engine.budget),
            _budget_tuple(engine._previous_budget),
            _budget_tuple(engine._stable_budget),
            float(engine._previous_risk),
            int(engine.step_count),
            int(engine.no_progress_steps),
            float(engine.last_step_time),
            bool(engine._halted),
            engine._failure.name,
            engine._reason,
        )  # fmt: skip
        if result.halted:
            return new, (_FAILURES.get(result.failure, FailureType.EXHAUSTION),
                         str(result.reason or "halt"))  # fmt: skip
        return new, None
