"""The Governor: the sidecar's stateful handle on the budget engine.

It holds the current :class:`EngineState`, applies events with ``Engine.step`` and writes
the state to a local file after every change, so a restarted sidecar resumes exactly where
it stopped. Methods are synchronous and never await: inside one asyncio loop each call is
atomic, which is what makes reserve-then-settle safe for concurrent requests.

Persistence (:class:`StateFile`): two slot files, ``<path>.0`` and ``<path>.1``, written
alternately with ``pwrite`` on file descriptors kept open; each write carries a sequence
number, its length and a CRC-32, and loading takes the newest valid slot. A torn write
(power loss mid-write) can only damage the slot being written; the other one still holds
the previous state. Why not temp file + rename: on ext4 (the usual node disk behind an
emptyDir) renaming over an existing file triggers ``auto_da_alloc``, an implicit flush that
costs milliseconds per write (measured ~1.6 ms here, against ~5 us for a slot write; see
``bench/engine.py``), on the request path of every call.

By default the slots are *not* fsync'd: a killed or crashed container (the common case)
loses nothing, because written pages live in the kernel's page cache; only a node crash can
lose the last writes, and then an emptyDir is gone anyway, while the audit spool (fsync'd
before any call is forwarded) is the durable record. ``fsync=True`` adds an ``fdatasync``
per write for a state directory on a persistent volume.

Carried by the audit spool (:meth:`Governor.persist_with`, what the sidecar does): a change
only marks the state due, and the spool's writer thread writes the newest state once per
group commit, before that commit's records are confirmed. A reservation is made before its
intent record is queued, so it is on disk before the call is forwarded (as before); a write
that fails refuses the calls of that commit (``state_persist_failed``). Settlements are
written with the next commit, at most the spool's linger (20 ms) later: a sidecar killed in
that window restarts with those calls still in flight and charges them their worst case,
never less than they cost. This takes the serialisation and the ``pwrite`` off the event
loop and writes once per batch instead of twice per call.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import orjson

from haltgate.governance.engine import codes
from haltgate.governance.engine.core import Engine
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
    Usage,
)
from haltgate.governance.engine.pricing import PriceTable
from haltgate.governance.engine.state import EngineState
from haltgate.governance.policy import GovernancePolicySpec
from haltgate.governance.policy_base import FailureType

log = logging.getLogger(__name__)

__all__ = ["Governor", "StateFile", "StepEngine", "make_engine"]


class StepEngine(Protocol):
    """What a Governor drives: the builtin Engine or the emocore adapter."""

    @property
    def prices(self) -> PriceTable: ...

    def initial_state(self) -> Any: ...

    def step(self, state: Any, event: Event) -> tuple[Any, Decision]: ...

    def restore(self, state: Any) -> Any: ...

    def budget_report(
        self, state: Any, now: float | None = None
    ) -> dict[str, dict[str, float]]: ...

    def engine_state(self, state: Any) -> EngineState: ...

    def state_to_json(self, state: Any) -> bytes: ...

    def state_from_json(self, data: bytes) -> Any: ...


class _BuiltinEngine(Engine):
    """The builtin engine with the small serialisation hooks the Governor needs."""

    __slots__ = ()

    def engine_state(self, state: EngineState) -> EngineState:
        return state

    def restore(self, state: Any) -> EngineState:
        # A state of the emocore engine (policy switched engine type): keep its budgets.
        if not isinstance(state, EngineState):
            state = state.builtin
        return super().restore(state)

    def state_to_json(self, state: EngineState) -> bytes:
        return state.to_json_bytes()

    def state_from_json(self, data: bytes) -> EngineState:
        doc = orjson.loads(data)
        if isinstance(doc, dict) and "builtin" in doc:  # written by the emocore engine
            return EngineState.from_json(orjson.dumps(doc["builtin"]))
        return EngineState.from_json(data)


def make_engine(spec: GovernancePolicySpec, prices: PriceTable | None = None) -> StepEngine:
    """The engine a policy asks for (``spec.engine.type``): builtin or emocore."""
    if prices is None:
        prices = PriceTable.for_policy(spec.pricing)
    if spec.engine.type == "emocore":
        # Imported lazily: emocore is an optional extra (haltgate[emocore]).
        from haltgate.governance.emocore_adapter import EmoCoreEngine

        return EmoCoreEngine(spec, prices)
    return _BuiltinEngine(spec, prices)


MAX_STATE_BYTES = 16 * 1024 * 1024
"""A state slot is read up to this size (a state is a few KiB; never read unbounded)."""


class StateFile:
    """A small record kept in two alternating slot files (see the module docstring).

    Slot layout: a 20-byte header ``b"HGS1"``, sequence number (u64), payload length (u32),
    CRC-32 of the first 16 header bytes and the payload (u32), all big-endian, then the
    payload. Bytes after the payload (left by a longer earlier record) are ignored.
    """

    _HEADER = struct.Struct(">4sQII")
    _MAGIC = b"HGS1"

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = Path(path)
        self._fsync = fsync
        self._fds: list[int] = []
        self._seq = 0

    def _slot(self, i: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{i}")

    def _open(self) -> list[int]:
        if not self._fds:
            self._fds = [
                os.open(self._slot(i), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600) for i in (0, 1)
            ]
        return self._fds

    def read(self) -> bytes | None:
        """The newest valid record; None when no slot exists; ValueError when slots exist
        but none is valid."""
        found: list[tuple[int, bytes]] = []
        nonempty = False
        for i in (0, 1):
            try:
                with open(self._slot(i), "rb") as f:
                    raw = f.read(MAX_STATE_BYTES)
            except FileNotFoundError:
                continue
            nonempty = nonempty or bool(raw.strip(b"\0"))
            if len(raw) < self._HEADER.size:
                continue
            magic, seq, length, crc = self._HEADER.unpack_from(raw)
            payload = raw[self._HEADER.size : self._HEADER.size + length]
            if (
                magic == self._MAGIC
                and len(payload) == length
                and zlib.crc32(payload, zlib.crc32(raw[:16])) == crc
            ):
                found.append((seq, payload))
        if not found:
            if nonempty:
                raise ValueError("no valid state slot (torn or corrupt)")
            return None
        seq, payload = max(found)
        self._seq = seq
        return payload

    def write(self, payload: bytes) -> None:
        """Write a record into the older slot (fdatasync'd when ``fsync``)."""
        fds = self._open()
        seq = self._seq + 1
        fd = fds[seq & 1]
        head = self._HEADER.pack(self._MAGIC, seq, len(payload), 0)[:16]
        # The CRC covers the header too: a torn header (new sequence number, old length)
        # must not pass for a valid record.
        record = head + struct.pack(">I", zlib.crc32(payload, zlib.crc32(head))) + payload
        written = os.pwrite(fd, record, 0)
        if written != len(record):
            raise OSError(f"short write of budget state ({written} of {len(record)} bytes)")
        if self._fsync:
            os.fdatasync(fd)
        self._seq = seq

    def close(self) -> None:
        """Close the slot files."""
        for fd in self._fds:
            os.close(fd)
        self._fds = []


class Governor:
    """Holds, steps and persists one agent run's budget state.

    ``path=None`` keeps the state in memory only (tests, or no local store configured).
    On start the state is reloaded from ``path``; calls that were in flight when the
    previous process died are charged their worst case (``Abandon``), since they may have
    been billed. An unreadable state file is moved aside and the run starts halted
    (EXTERNAL, ``state_unreadable``) until an operator resets it: fail closed.
    """

    def __init__(
        self,
        engine: StepEngine,
        path: str | os.PathLike[str] | None = None,
        *,
        fsync: bool = False,
        now: float | None = None,
    ) -> None:
        """``now`` (epoch seconds) timestamps the events of recovery at start."""
        self._engine = engine
        self._file = None if path is None else StateFile(path, fsync=fsync)
        self._due: Callable[[], bool] | None = None
        """Set by persist_with: tells the carrier a state is due (writes are deferred);
        False when the carrier no longer commits."""
        self._pending: tuple[StepEngine, Any] | None = None
        self._pending_lock = threading.Lock()
        self._write_lock = threading.Lock()
        """One writer of the slot files at a time (carrier thread, or this one after it)."""
        self.writes = 0
        """State writes so far (for metrics)."""
        self.write_errors = 0
        """Failed state writes so far (for metrics; a failed reserve write refuses the call)."""
        self.monitor = False
        """``spec.enforcement: monitor``: a halt the engine derives from the budgets is
        reported in the decision but not kept in the state (:meth:`_unhalted`), so later
        calls are judged, metered and forwarded as before. Halts from outside (``Halt``
        events: admin API, pool, cascade) are always kept."""
        self.would_halts = 0
        """Engine halts dropped in monitor mode so far."""
        self._state = self._load(now)

    @classmethod
    def for_policy(
        cls,
        spec: GovernancePolicySpec,
        path: str | os.PathLike[str] | None = None,
        *,
        prices: PriceTable | None = None,
        fsync: bool = False,
        now: float | None = None,
    ) -> Governor:
        """A Governor with the engine ``spec.engine`` asks for."""
        return cls(make_engine(spec, prices), path, fsync=fsync, now=now)

    # ------------------------------------------------------------------ properties

    @property
    def engine(self) -> StepEngine:
        """The engine in use."""
        return self._engine

    @property
    def state(self) -> Any:
        """The current state (immutable)."""
        return self._state

    @property
    def halted(self) -> bool:
        """True while every call is refused."""
        return self._engine.engine_state(self._state).halt is not None

    # ------------------------------------------------------------------ events

    def apply(self, event: Event) -> Decision:
        """Step the engine with one event and persist the new state if it changed."""
        old = self._state
        new, decision = self._engine.step(old, event)
        if self.monitor:
            new = self._unhalted(old, new, (event,))
        return self._commit(old, new, decision, reserves=isinstance(event, Reserve))

    def reserve_event(self, event: Reserve) -> tuple[Decision, StepEngine, Any]:
        """:meth:`apply` of a ``Reserve``, with the engine that stepped it and the state
        before it (what the call's audit record keeps to re-derive the decision): one call
        on every governed request's path instead of three."""
        engine, old = self._engine, self._state
        new, decision = engine.step(old, event)
        if self.monitor:
            new = self._unhalted(old, new, (event,))
        return self._commit(old, new, decision, reserves=True), engine, old

    def apply_all(self, events: Sequence[Event], *, all_or_nothing: bool = False) -> Decision:
        """Step several events at once, with one state write; the last decision.

        ``all_or_nothing`` (a list of ``Reserve``: the messages of one MCP batch): at the
        first refusal nothing of the batch is kept (no reservation, no tool counted for
        ``distinctTools``) and the refusal is returned. What the refused event would do on
        its own (a halt, a retry counted) is kept: it is stepped again on the state before
        the batch. Synchronous like :meth:`apply`: concurrent batches cannot interleave. A
        state write that fails refuses the reservations (``state_persist_failed``) and keeps
        the old state."""
        if not events:
            raise ValueError("apply_all needs at least one event")
        old = state = self._state
        decision: Decision | None = None
        for event in events:
            state, decision = self._engine.step(state, event)
            if all_or_nothing and not decision.allowed:
                alone, alone_decision = self._engine.step(old, event)
                # Refused on its own too: keep its effects; else it only failed for the
                # rest of its batch, and nothing changes.
                state = old if alone_decision.allowed else alone
                break
        assert decision is not None
        if self.monitor:
            state = self._unhalted(old, state, events)
        return self._commit(old, state, decision, reserves=all_or_nothing)

    def _commit(self, old: Any, new: Any, decision: Decision, *, reserves: bool) -> Decision:
        """Keep ``new`` (written first when it differs from ``old``) and return ``decision``.

        When the write fails and ``decision`` allowed a reservation (``reserves``), the old
        state stays and the call is refused (``state_persist_failed``): a reservation that
        is not on disk could be forgotten by a restart and the call's spend with it (fail
        closed). Any other change is kept in memory whatever the disk says."""
        if new is not old:
            try:
                self._persist(new)
            except OSError as e:
                self.write_errors += 1
                if reserves and decision.allowed:
                    log.error("cannot persist budget state, refusing the call: %s", e)
                    return Decision(
                        False,
                        FailureType.EXTERNAL,
                        codes.STATE_PERSIST_FAILED,
                        f"budget state could not be saved: {e.strerror or e}"[:512],
                        decision.warnings,
                        decision.budget,
                    )
                log.error("cannot persist budget state: %s", e)
            self._state = new
        return decision

    def _unhalted(self, old: Any, new: Any, events: Sequence[Event]) -> Any:
        """``new`` without a halt the engine just derived itself (monitor mode)."""
        halt = self._engine.engine_state(new).halt
        if (
            halt is None
            or self._engine.engine_state(old).halt is not None
            or any(isinstance(e, Halt) for e in events)
            or halt.failure_type is FailureType.EXTERNAL
        ):
            return new
        self.would_halts += 1
        log.debug("monitor mode: %s halt %s not applied", halt.failure_type.value, halt.code)
        if isinstance(new, EngineState):
            return new._replace(halt=None)
        # The emocore adapter's state: the halt lives in its builtin part.
        return new._replace(builtin=new.builtin._replace(halt=None))

    def reserve(
        self,
        call_id: str,
        ts: float,
        *,
        kind: str,
        host: str,
        tool: str | None = None,
        model: str | None = None,
        max_input_tokens: int = 0,
        max_output_tokens: int = 0,
        fingerprint: str = "",
        risk: float = 0.0,
    ) -> Decision:
        """Reserve a call's worst case before forwarding it (see ``Reserve``)."""
        return self.apply(
            Reserve(
                call_id,
                ts,
                kind,
                host,
                tool,
                model,
                max_input_tokens,
                max_output_tokens,
                fingerprint,
                risk,
            )
        )

    def settle(
        self,
        call_id: str,
        ts: float,
        usage: Usage | None,
        ok: bool,
        *,
        error_fingerprint: str | None = None,
        result_fingerprint: str | None = None,
    ) -> Decision:
        """Replace a call's reservation by its actual usage (see ``Settle``)."""
        return self.apply(Settle(call_id, ts, usage, ok, error_fingerprint, result_fingerprint))

    def release(self, call_id: str, ts: float) -> Decision:
        """Give a reservation back: the call never reached upstream."""
        return self.apply(Release(call_id, ts))

    def add_risk(self, ts: float, risk: float, code: str) -> Decision:
        """Add risk found outside a reservation (e.g. a guardrail finding in a response)."""
        return self.apply(AddRisk(ts, risk, code))

    def halt(self, ts: float, failure_type: FailureType, code: str, message: str) -> Decision:
        """Halt the run from outside (admin API, pool, cascade)."""
        return self.apply(Halt(ts, failure_type, code, message))

    def reset(self, ts: float, actor: str) -> Decision:
        """Operator reset: clear the halt and start a new run."""
        return self.apply(Reset(ts, actor))

    def lift(self, ts: float, actor: str, code: str | None = None) -> Decision:
        """Lift an EXTERNAL halt (optionally only one with ``code``)."""
        return self.apply(Lift(ts, actor, code))

    def persist_with(self, carrier: Any) -> None:
        """Let ``carrier`` (a :class:`SpoolAuditSink`: ``carry_state``) write the state in
        its group commit instead of writing it on every change (see the module docstring).
        Closing the carrier writes the last state; after that (or once the carrier failed)
        every change is written here again, synchronously."""
        if self._file is not None:
            self._due = carrier.carry_state(self.write_due)

    def write_due(self) -> None:
        """Write the newest state not written yet (the carrier's thread calls this).
        Raises ``OSError``; the state stays due, so the next commit tries again."""
        try:
            self._write_pending()
        except OSError:
            self.write_errors += 1
            raise

    def _write_pending(self) -> None:
        assert self._file is not None
        with self._write_lock:
            with self._pending_lock:
                pending, self._pending = self._pending, None
            if pending is None:
                return
            engine, state = pending
            try:
                self._file.write(engine.state_to_json(state))
            except OSError:
                with self._pending_lock:
                    if self._pending is None:
                        self._pending = pending
                raise
            self.writes += 1

    def close(self) -> None:
        """Close the state file descriptors."""
        if self._file is not None:
            self._file.close()

    def update_engine(self, engine: StepEngine) -> None:
        """Switch to a new engine (policy reload); the state is adapted, not reset."""
        self._engine = engine
        self._state = engine.restore(self._state)
        try:
            self._persist(self._state)
        except OSError as e:
            self.write_errors += 1
            log.error("cannot persist budget state: %s", e)

    # ------------------------------------------------------------------ reports

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """The run's budget state for the admin API (JSON-able)."""
        st = self._engine.engine_state(self._state)
        halt = st.halt
        return {
            "run": st.run,
            "halted": halt is not None,
            "halt": None if halt is None else halt.to_dict(),
            "run_started": st.run_started,
            "clock": st.clock,
            "budget": self._engine.budget_report(self._state, now),
            "in_flight": [
                {
                    "call_id": call_id,
                    "kind": r.kind,
                    "host": r.host,
                    "tool": r.tool,
                    "model": r.model,
                    "ts": r.ts,
                }
                for call_id, r in st.reservations.items()
            ],
            "price_table": {
                "version": self._engine.prices.version,
                "effective": self._engine.prices.effective,
            },
            "engine": type(self._engine).__name__,
            "state_file": None if self._file is None else str(self._file.path),
            "writes": self.writes,
            "write_errors": self.write_errors,
        }

    # ------------------------------------------------------------------ persistence

    def _persist(self, state: Any) -> None:
        if self._file is None:
            return
        if self._due is not None:
            # The state is immutable: keeping a reference is a snapshot.
            with self._pending_lock:
                self._pending = (self._engine, state)
            if not self._due():
                self._write_pending()  # the carrier is closed or failed: write it here
            return
        self._file.write(self._engine.state_to_json(state))
        self.writes += 1

    def _load(self, now: float | None) -> Any:
        engine = self._engine
        file = self._file
        if file is None:
            return engine.initial_state()
        try:
            data = file.read()
            if data is None:
                return engine.initial_state()
            state = engine.restore(engine.state_from_json(data))
        except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
            log.error("budget state %s unreadable (%s); run halted until reset", file.path, e)
            state, _ = engine.step(
                engine.initial_state(),
                Halt(
                    now or 0.0,
                    FailureType.EXTERNAL,
                    codes.STATE_UNREADABLE,
                    "the persisted budget state could not be read; an operator must reset",
                ),
            )
            self._persist_quietly(state)
            return state
        ts = now if now is not None else engine.engine_state(state).clock
        in_flight: Mapping[str, Any] = engine.engine_state(state).reservations
        for call_id in tuple(in_flight):
            state, _ = engine.step(state, Abandon(call_id, ts))
        self._persist_quietly(state)
        return state

    def _persist_quietly(self, state: Any) -> None:
        try:
            self._persist(state)
        except OSError as e:
            self.write_errors += 1
            log.error("cannot persist budget state: %s", e)
