"""Periods of the metered dimensions: calendar resets, rolling buckets, policy changes.

Moves every meter to the period (or rolling window) of a given time, tells how long until
a periodic meter frees budget, and adapts a state made under another policy.
"""

from __future__ import annotations

from haltgate.governance.engine.config import INF, ROLLING_BUCKETS, EngineConfig
from haltgate.governance.engine.state import EngineState, MeterState


class MeterPeriods(EngineConfig):
    """Period bookkeeping of the meters (see :class:`~.config.EngineConfig`)."""

    __slots__ = ()

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

    def _roll_all(self, state: EngineState, now: float) -> EngineState:
        """Move every periodic meter to ``now``'s period and recompute ``roll_at``."""
        used = list(state.used)
        keys = list(state.keys)
        buckets = list(state.buckets)
        roll_at = INF
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
