"""The engine's state: immutable values, JSON round-trip exact.

Named tuples (not dataclasses) because the engine builds one new state per step and a
tuple is the cheapest immutable record CPython can build; unchanged parts (meters,
reservations, fingerprint windows) are shared between successive states, never copied.
All amounts are integers (see ``engine.units``); timestamps are floats, written by JSON as
their shortest round-trip repr, so ``from_json(to_json(s)) == s`` exactly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import orjson

from haltgate.governance.policy_base import FailureType

STATE_FORMAT = 1
"""Version of the JSON layout; bump on incompatible change (from_json refuses others)."""

# Indices into an amount vector (Reservation.amounts, settled usage).
A_CALLS, A_TOKENS, A_INPUT, A_OUTPUT, A_COST, A_RISK = range(6)
AMOUNT_KEYS = ("calls", "tokens", "input_tokens", "output_tokens", "cost_pusd", "risk_micro")
Amounts = tuple[int, int, int, int, int, int]
ZERO_AMOUNTS: Amounts = (0, 0, 0, 0, 0, 0)


class HaltInfo(NamedTuple):
    """Why and when the run halted."""

    failure_type: FailureType
    code: str
    message: str
    ts: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return {
            "failure_type": self.failure_type.value,
            "code": self.code,
            "message": self.message,
            "ts": self.ts,
        }


class MeterState(NamedTuple):
    """Spend of one amount dimension (calls, tokens, cost, risk) in its current period.

    ``used``: settled spend in the period (rolling: in the window). ``reserved``: worst
    cases of calls in flight (not tied to a period). ``key``: calendar meters, the period
    index (``floor(ts / period)``); rolling meters, the index of the open bucket, whose
    amount is ``used`` minus the closed buckets. ``buckets``: rolling meters, the closed
    buckets ``(bucket index, amount)`` oldest first.
    """

    used: int
    reserved: int
    key: int
    buckets: tuple[tuple[int, int], ...]


EMPTY_RESERVATIONS: MappingProxyType[str, Reservation] = MappingProxyType({})


class Reservation(NamedTuple):
    """A call in flight and the worst case it holds."""

    kind: str
    host: str
    tool: str | None
    model: str | None
    fingerprint: str
    ts: float
    amounts: Amounts
    new_tool: bool
    """The call used a tool for the first time in the run (progress for stagnation)."""


class EngineState(NamedTuple):
    """Everything the engine remembers about one agent run. Never mutated.

    Meters are stored column-wise (``used[i]``, ``reserved[i]``, ... for the dimension
    ``meter_names[i]``): a step that only moves reservations rebuilds one small tuple of
    ints instead of one record per dimension. ``meter(name)`` gives a row view.
    """

    run: int
    """Run number; a Reset starts the next run."""
    halt: HaltInfo | None
    """Set when halted: absorbing until Reset (or Lift of an EXTERNAL halt)."""
    run_started: float | None
    """ts of the run's first Reserve (wall-time budget origin)."""
    clock: float
    """Highest ts seen: time never goes backwards inside the engine."""
    roll_at: float
    """Earliest time at which a periodic meter must roll (new calendar period, expired
    rolling bucket); ``inf`` when none. Steps before it skip period bookkeeping."""
    meter_names: tuple[str, ...]
    """Meter keys ``<dimension>/<period mode>``, e.g. ``calls/hour-rolling``."""
    used: tuple[int, ...]
    """Settled spend per meter in its current period."""
    reserved: tuple[int, ...]
    """Worst cases of the calls in flight per meter (not tied to a period)."""
    keys: tuple[int, ...]
    """Per meter: calendar period index, or open rolling bucket index (0 for run meters)."""
    buckets: tuple[tuple[tuple[int, int], ...], ...]
    """Rolling meters: closed ``(bucket index, amount)`` oldest first (empty for others)."""
    reservations: MappingProxyType[str, Reservation]
    """Calls in flight by call_id (a read-only mapping, replaced on change)."""
    consecutive_failures: int
    last_fingerprint: str | None
    identical: int
    """How many times in a row the last fingerprint was repeated (0 = not a retry)."""
    no_progress: int
    """Settled steps in a row without progress."""
    recent_calls: tuple[str, ...]
    recent_results: tuple[str, ...]
    recent_errors: tuple[str, ...]
    tools: frozenset[str]
    hosts: frozenset[str]

    @property
    def meters(self) -> tuple[MeterState, ...]:
        """Row view of every meter, in ``meter_names`` order."""
        return tuple(
            MeterState(*row)
            for row in zip(self.used, self.reserved, self.keys, self.buckets, strict=True)
        )

    @property
    def halted(self) -> bool:
        """True when calls are refused until a reset."""
        return self.halt is not None

    def meter(self, name: str) -> MeterState | None:
        """The meter of a dimension (e.g. ``"calls"``), or None when not budgeted."""
        i = next(
            (i for i, key in enumerate(self.meter_names) if key.split("/", 1)[0] == name), None
        )
        if i is None:
            return None
        return MeterState(self.used[i], self.reserved[i], self.keys[i], self.buckets[i])

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        halt = self.halt
        return {
            "format": STATE_FORMAT,
            "run": self.run,
            "halt": None if halt is None else halt.to_dict(),
            "run_started": self.run_started,
            "clock": self.clock,
            "roll_at": None if self.roll_at == math.inf else self.roll_at,
            "meters": {
                name: {
                    "used": m.used,
                    "reserved": m.reserved,
                    "key": m.key,
                    "buckets": [list(b) for b in m.buckets],
                }
                for name, m in zip(self.meter_names, self.meters, strict=True)
            },
            "reservations": {
                call_id: {
                    "kind": r.kind,
                    "host": r.host,
                    "tool": r.tool,
                    "model": r.model,
                    "fingerprint": r.fingerprint,
                    "ts": r.ts,
                    "amounts": dict(zip(AMOUNT_KEYS, r.amounts, strict=True)),
                    "new_tool": r.new_tool,
                }
                for call_id, r in self.reservations.items()
            },
            "consecutive_failures": self.consecutive_failures,
            "last_fingerprint": self.last_fingerprint,
            "identical": self.identical,
            "no_progress": self.no_progress,
            "recent_calls": list(self.recent_calls),
            "recent_results": list(self.recent_results),
            "recent_errors": list(self.recent_errors),
            "tools": sorted(self.tools),
            "hosts": sorted(self.hosts),
        }

    def to_json(self) -> str:
        """Compact JSON text; ``EngineState.from_json(s.to_json()) == s``."""
        return self.to_json_bytes().decode()

    def to_json_bytes(self) -> bytes:
        """Compact JSON as UTF-8 bytes (what the Governor writes on every change).

        A positional array ``["haltgate-engine-state", format, [fields...]]`` serialised by
        orjson straight from the tuples: ~10x cheaper than :meth:`to_dict`, which is the
        readable form (both are accepted by :meth:`from_json`).
        """
        # roll_at is inf when no meter is periodic: JSON has no inf, write null.
        fields = self if self.roll_at != math.inf else (*self[:4], None, *self[5:])
        doc = (COMPACT_TAG, STATE_FORMAT, fields)
        try:
            return orjson.dumps(doc, default=_compact_default)
        except TypeError:
            # orjson stops at 64-bit integers; a policy limit above ~9.2 million USD in
            # picodollars needs Python's arbitrary-precision ints: take the slow path.
            return json.dumps(
                doc, default=_compact_default, separators=(",", ":"), allow_nan=False
            ).encode()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EngineState:
        """Inverse of :meth:`to_dict`; raises ValueError on an unknown format."""
        if data.get("format") != STATE_FORMAT:
            raise ValueError(f"unsupported engine state format {data.get('format')!r}")
        halt = data["halt"]
        meters = data["meters"]
        rows = [
            MeterState(
                int(m["used"]),
                int(m["reserved"]),
                int(m["key"]),
                tuple((int(i), int(a)) for i, a in m["buckets"]),
            )
            for m in meters.values()
        ]
        roll_at = data["roll_at"]
        return cls(
            run=int(data["run"]),
            halt=None
            if halt is None
            else HaltInfo(
                FailureType(halt["failure_type"]), halt["code"], halt["message"], halt["ts"]
            ),
            run_started=data["run_started"],
            clock=data["clock"],
            roll_at=math.inf if roll_at is None else roll_at,
            meter_names=tuple(meters),
            used=tuple(m.used for m in rows),
            reserved=tuple(m.reserved for m in rows),
            keys=tuple(m.key for m in rows),
            buckets=tuple(m.buckets for m in rows),
            reservations=MappingProxyType(
                {
                    call_id: Reservation(
                        r["kind"],
                        r["host"],
                        r["tool"],
                        r["model"],
                        r["fingerprint"],
                        r["ts"],
                        tuple(int(r["amounts"][k]) for k in AMOUNT_KEYS),  # type: ignore[arg-type]
                        bool(r["new_tool"]),
                    )
                    for call_id, r in data["reservations"].items()
                }
            ),
            consecutive_failures=int(data["consecutive_failures"]),
            last_fingerprint=data["last_fingerprint"],
            identical=int(data["identical"]),
            no_progress=int(data["no_progress"]),
            recent_calls=tuple(data["recent_calls"]),
            recent_results=tuple(data["recent_results"]),
            recent_errors=tuple(data["recent_errors"]),
            tools=frozenset(data["tools"]),
            hosts=frozenset(data["hosts"]),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> EngineState:
        """Inverse of :meth:`to_json` (also accepts the :meth:`to_dict` form)."""
        data = orjson.loads(text)
        if isinstance(data, dict):
            return cls.from_dict(data)
        if not (isinstance(data, list) and len(data) == 3 and data[0] == COMPACT_TAG):
            raise ValueError("not an engine state")
        if data[1] != STATE_FORMAT:
            raise ValueError(f"unsupported engine state format {data[1]!r}")
        return cls._from_fields(data[2])

    @classmethod
    def _from_fields(cls, f: list[Any]) -> EngineState:
        (run, halt, run_started, clock, roll_at, names, used, reserved, keys, buckets,
         reservations, failures, last_fp, identical, no_progress, recent_calls,
         recent_results, recent_errors, tools, hosts) = f  # fmt: skip
        return cls(
            int(run),
            None if halt is None else HaltInfo(FailureType(halt[0]), halt[1], halt[2], halt[3]),
            run_started,
            clock,
            math.inf if roll_at is None else roll_at,
            tuple(names),
            tuple(int(x) for x in used),
            tuple(int(x) for x in reserved),
            tuple(int(x) for x in keys),
            tuple(tuple((int(i), int(a)) for i, a in b) for b in buckets),
            MappingProxyType(
                {
                    call_id: Reservation(
                        r[0],
                        r[1],
                        r[2],
                        r[3],
                        r[4],
                        r[5],
                        tuple(int(x) for x in r[6]),  # type: ignore[arg-type]
                        bool(r[7]),
                    )
                    for call_id, r in reservations.items()
                }
            ),
            int(failures),
            last_fp,
            int(identical),
            int(no_progress),
            tuple(recent_calls),
            tuple(recent_results),
            tuple(recent_errors),
            frozenset(tools),
            frozenset(hosts),
        )


COMPACT_TAG = "haltgate-engine-state"


def _compact_default(obj: Any) -> Any:
    """orjson/json hook: named tuples as arrays, sets sorted, read-only maps as objects."""
    if isinstance(obj, tuple):
        return tuple(obj)
    if isinstance(obj, frozenset):
        return sorted(obj)
    if isinstance(obj, MappingProxyType):
        return dict(obj)
    raise TypeError(f"{type(obj).__name__} is not part of an engine state")
