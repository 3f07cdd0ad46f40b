"""What a ``Reserve`` step needs to be re-derived later, kept small and payload-free.

The audit record of a decision carries the engine's view of the run just before the call
was reserved (:func:`capture`) and the ``Reserve`` event itself. :func:`rebuild` turns that
view back into an :class:`EngineState` that the engine steps to the very same decision
(allowed or not, code, message, warnings, budget report): ``explain`` and ``replay`` re-run
the engine on it and compare (``docs/audit.md``).

Only what ``Engine._reserve`` reads is kept: the meter columns (integers), the counters,
the halt, the clock, and of the distinct tool and host sets their size and whether the
call's own tool or host was already in them. Fingerprints and names are the digests and
state keys the engine already holds (never a request body, never a secret), so the
snapshot needs no redaction.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from haltgate.governance.engine.core import Engine
from haltgate.governance.engine.events import Reserve
from haltgate.governance.engine.state import (
    EMPTY_RESERVATIONS,
    ZERO_AMOUNTS,
    EngineState,
    HaltInfo,
    Reservation,
)
from haltgate.governance.policy_base import FailureType

__all__ = [
    "SNAPSHOT_FORMAT",
    "SnapshotError",
    "capture",
    "decision_doc",
    "message_digest",
    "rebuild",
    "reserve_doc",
]

SNAPSHOT_FORMAT = 1
"""Version of the snapshot layout (``"f"``); :func:`rebuild` refuses others."""


class SnapshotError(ValueError):
    """A recorded snapshot that cannot be turned back into a state (names the field)."""


def message_digest(message: str) -> str:
    """How a decision's message is kept (it may quote names the agent chose)."""
    return hashlib.sha256(message.encode("utf-8", "surrogatepass")).hexdigest()


_ALLOWED_DIGEST = message_digest("allowed")
"""The digest of every plain allow's message (one per call's intent record: not hashed
again each time)."""


def decision_doc(decision: Any) -> dict[str, Any]:
    """A budget decision (an engine ``Decision`` or the sidecar's verdict of one) as the
    audit record keeps it; replay compares the engine's answer with it field by field."""
    failure = decision.failure_type
    return {
        "allowed": decision.allowed,
        "code": decision.code,
        "failure_type": None if failure is None else failure.value,
        "halted": decision.halted,
        "retry_after": decision.retry_after,
        "warnings": list(decision.warnings),
        # A verdict of a plain allow carries no message: the engine's is "allowed".
        "message_sha256": (
            message_digest(message)
            if (message := decision.message) and message != "allowed"
            else _ALLOWED_DIGEST
        ),
        "budget": {name: dict(values) for name, values in decision.budget.items()},
    }


def reserve_doc(ev: Reserve) -> dict[str, Any]:
    """``ev.to_dict()`` without ``dataclasses.asdict`` (a tenth of its cost: this runs for
    every call's audit record)."""
    return {
        "event": "reserve",
        "call_id": ev.call_id,
        "ts": ev.ts,
        "kind": ev.kind,
        "host": ev.host,
        "tool": ev.tool,
        "model": ev.model,
        "max_input_tokens": ev.max_input_tokens,
        "max_output_tokens": ev.max_output_tokens,
        "fingerprint": ev.fingerprint,
        "risk": ev.risk,
    }


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def capture(engine: Engine, state: EngineState, event: Reserve) -> dict[str, Any]:
    """The part of ``state`` a step of ``event`` reads, as JSON-ready values.

    A state made under another policy is adapted first (as ``step`` would), so the
    snapshot is in the engine's own meter layout."""
    names = engine.meter_keys
    if state.meter_names is not names and state.meter_names != names:
        state = engine.restore(state)
    halt = state.halt
    return {
        "f": SNAPSHOT_FORMAT,
        "run": state.run,
        "halt": None if halt is None else halt.to_dict(),
        "run_started": state.run_started,
        "clock": state.clock,
        "roll_at": _finite(state.roll_at),
        # Tuples as they are (JSON arrays to orjson): no copy on the hot path.
        "meters": state.meter_names,
        "used": state.used,
        "reserved": state.reserved,
        "keys": state.keys,
        "buckets": state.buckets,
        "in_flight": event.call_id in state.reservations,
        "consecutive_failures": state.consecutive_failures,
        "last_fingerprint": state.last_fingerprint,
        "identical": state.identical,
        "no_progress": state.no_progress,
        "tools": len(state.tools),
        "tool_seen": event.tool is not None and event.tool in state.tools,
        "hosts": len(state.hosts),
        "host_seen": event.host in state.hosts,
    }


def _int_list(snap: Mapping[str, Any], name: str, n: int | None = None) -> tuple[int, ...]:
    value = snap.get(name)
    if not isinstance(value, (list, tuple)) or not all(type(x) is int for x in value):
        raise SnapshotError(f"snapshot.{name}: expected a list of integers")
    if n is not None and len(value) != n:
        raise SnapshotError(f"snapshot.{name}: expected {n} values, found {len(value)}")
    return tuple(value)


def _number(snap: Mapping[str, Any], name: str, *, optional: bool = False) -> Any:
    value = snap.get(name)
    if value is None and optional:
        return None
    if type(value) not in (int, float) or isinstance(value, bool):
        raise SnapshotError(f"snapshot.{name}: expected a number")
    return value


def _count(snap: Mapping[str, Any], name: str) -> int:
    value = snap.get(name)
    if type(value) is not int or value < 0:
        raise SnapshotError(f"snapshot.{name}: expected a non-negative integer")
    return value


def _names(count: int, own: str | None, seen: bool, tag: str) -> frozenset[str]:
    """A set with the recorded size that holds ``own`` exactly when it was seen: all the
    engine reads of the distinct tools and hosts (membership and size)."""
    if seen and own is not None and count:
        return frozenset({own, *(f"\x00{tag}{i}" for i in range(count - 1))})
    return frozenset(f"\x00{tag}{i}" for i in range(count))


def _halt(value: Any) -> HaltInfo | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise SnapshotError("snapshot.halt: expected an object or null")
    try:
        return HaltInfo(
            FailureType(value["failure_type"]),
            str(value["code"]),
            str(value["message"]),
            float(value["ts"]),
        )
    except (KeyError, ValueError, TypeError) as e:
        raise SnapshotError(f"snapshot.halt: {e}") from e


def rebuild(snap: Mapping[str, Any], event: Reserve) -> EngineState:
    """An engine state equivalent to the captured one for stepping ``event``.

    Raises :class:`SnapshotError` naming the field when the snapshot is malformed."""
    if not isinstance(snap, Mapping):
        raise SnapshotError("snapshot: expected an object")
    if snap.get("f") != SNAPSHOT_FORMAT:
        raise SnapshotError(f"snapshot.f: unsupported format {snap.get('f')!r}")
    meters = snap.get("meters")
    if not isinstance(meters, (list, tuple)) or not all(isinstance(m, str) for m in meters):
        raise SnapshotError("snapshot.meters: expected a list of meter names")
    n = len(meters)
    raw_buckets = snap.get("buckets")
    if not isinstance(raw_buckets, (list, tuple)) or len(raw_buckets) != n:
        raise SnapshotError(f"snapshot.buckets: expected {n} lists")
    try:
        buckets = tuple(tuple((int(i), int(a)) for i, a in row) for row in raw_buckets)
    except (TypeError, ValueError) as e:
        raise SnapshotError("snapshot.buckets: expected [index, amount] pairs") from e
    roll_at = _number(snap, "roll_at", optional=True)
    in_flight = snap.get("in_flight")
    if type(in_flight) is not bool:
        raise SnapshotError("snapshot.in_flight: expected a boolean")
    reservations = EMPTY_RESERVATIONS
    if in_flight:
        # Only membership is read (a duplicate call id is refused before anything else).
        reservations = MappingProxyType(
            {
                event.call_id: Reservation(
                    event.kind,
                    event.host,
                    event.tool,
                    event.model,
                    event.fingerprint,
                    0.0,
                    ZERO_AMOUNTS,
                    False,
                )
            }
        )
    last = snap.get("last_fingerprint")
    if last is not None and not isinstance(last, str):
        raise SnapshotError("snapshot.last_fingerprint: expected a string or null")
    return EngineState(
        run=_count(snap, "run"),
        halt=_halt(snap.get("halt")),
        run_started=_number(snap, "run_started", optional=True),
        clock=float(_number(snap, "clock")),
        roll_at=math.inf if roll_at is None else float(roll_at),
        meter_names=tuple(meters),
        used=_int_list(snap, "used", n),
        reserved=_int_list(snap, "reserved", n),
        keys=_int_list(snap, "keys", n),
        buckets=buckets,
        reservations=reservations,
        consecutive_failures=_count(snap, "consecutive_failures"),
        last_fingerprint=last,
        identical=_count(snap, "identical"),
        no_progress=_count(snap, "no_progress"),
        recent_calls=(),
        recent_results=(),
        recent_errors=(),
        tools=_names(_count(snap, "tools"), event.tool, snap.get("tool_seen") is True, "t"),
        hosts=_names(_count(snap, "hosts"), event.host, snap.get("host_seen") is True, "h"),
    )
