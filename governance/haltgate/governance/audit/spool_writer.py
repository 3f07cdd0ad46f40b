"""The audit spool writer: appends records to the active segment with group commit.

The writer thread takes every record queued while the previous commit was in flight, writes
them with one ``write`` and makes them durable with one ``fdatasync``: concurrent calls
share a commit, a lone call pays one. ``intent()`` returns only after its record is durable.
Records nobody waits for (``submit_nowait``: outcomes) do not wake the writer: they go with
the next awaited record's commit, or after ``linger_seconds`` (20 ms) at the latest, so a
call costs one write and one fdatasync, not two.
Records are sealed (chain, sequence number, hashes; ~15 us) by the caller when queued, so
sealing overlaps the commit in flight instead of lengthening the next one. After each commit
the durable position is published in ``durable``; the shipper reads no further.

A lone record needs no thread at all: :meth:`SpoolWriter.commit_now` commits on the calling
thread when no commit is in flight (the sidecar uses it for the intent of a call with no
other call in flight, when the event loop has nothing else to do while the disk syncs).
Handing that record to the writer thread and its answer back to the event loop costs two
cross-thread wake-ups (on a VM each one an inter-processor interrupt, tens of
microseconds) and makes the two threads contend for the GIL; committing in place costs the
``write`` and the ``fdatasync`` only. When commits turn slow (an average over
``inline_max_seconds``, a slow or failing volume), every record goes to the writer thread
again, so a slow disk never holds the event loop for long.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from haltgate.governance.audit.fit import fit_record
from haltgate.governance.audit.metrics import AuditMetrics
from haltgate.governance.audit.record import AuditRecord, Chainer, ChainHead
from haltgate.governance.audit.sink import (
    AuditError,
    AuditUnavailableError,
    InvalidRecordError,
    SpoolFullError,
    StatePersistError,
)
from haltgate.governance.audit.spool import (
    DURABLE_FILE,
    MAGIC,
    MAX_FRAME,
    SpoolPosition,
    checkpoint_frame,
    encode_durable,
    encode_frame,
    flocked,
    fsync_dir,
    list_segments,
    segment_path,
    spool_bytes,
    spool_id,
)
from haltgate.governance.audit.spool_recovery import settle
from haltgate.governance.audit.spool_settings import SpoolSettings

__all__ = ["SpoolWriter", "Waiter"]

log = logging.getLogger("haltgate.audit.spool")


@dataclass(slots=True)
class Waiter:
    """Who waits for a record: an event loop's future, or (``loop`` None) a thread's."""

    loop: asyncio.AbstractEventLoop | None
    future: asyncio.Future[None] | concurrent.futures.Future[None] | None
    """``None``: the committing thread itself waits (``commit_now``); nothing to complete."""


@dataclass(slots=True)
class _Batch:
    frames: list[bytes] = field(default_factory=list)
    waiters: list[Waiter] = field(default_factory=list)
    heads: list[tuple[str, ChainHead]] = field(default_factory=list)
    nbytes: int = 0
    urgent: bool = False
    """A waiter awaits durability: commit now (else only lingering records)."""
    first_at: float = 0.0
    """monotonic() when the first record was queued (the linger starts there)."""
    state: bool = False
    """The carried state (``carry_state``) changed: write it with this commit."""


class SpoolWriter:
    """Owns the active segment and the writer thread (group commit).

    Degraded, not dead: when a write or fsync fails (a full disk, an I/O error), or the
    spool cannot even be recovered at start (a full volume), the writer refuses records
    (:class:`AuditUnavailableError`) and its thread retries every ``retry_seconds``: it
    cuts the segment back to its last durable byte (what failed was never confirmed to
    anyone, and the chain heads roll back with it, so no gap), and resumes once the volume
    has ``min_free_bytes`` free again. :meth:`health` says why records are refused."""

    def __init__(self, settings: SpoolSettings, metrics: AuditMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else AuditMetrics()
        directory = settings.directory
        directory.mkdir(parents=True, exist_ok=True)
        self._writer_lock_cm = flocked(
            directory / "writer.lock", blocking=False, wait_seconds=settings.lock_wait_seconds
        )
        self._writer_lock_cm.__enter__()
        self.spool_id = ""
        self.chainer = Chainer()
        self._written: dict[str, ChainHead] = {}
        self._segment = 0
        self._fd = -1
        self._durable_fd = -1
        self._size = 0
        self._base_size = 0
        self._spooled = 0
        self._started = False
        self._failed: AuditUnavailableError | None = None
        try:
            self._start_up()
        except OSError as e:
            # A full (or failing) volume: start refusing, alive and visible, and let the
            # writer thread retry, instead of a crash loop on every restart.
            self._failed = AuditUnavailableError(f"audit spool cannot start: {e}"[:512])
            log.error(
                "audit spool %s: cannot start (%s); refusing records, retrying every %.1fs",
                directory,
                e,
                settings.retry_seconds,
            )
            self._close_fds()
        except BaseException:
            self._writer_lock_cm.__exit__(None, None, None)
            raise
        self._last_rescan = time.monotonic()
        self._in_flight = 0
        self._dropped_unlogged = 0
        self._last_drop_log = -1e9
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending = _Batch()
        self._committing = False
        """A commit is in flight (on the writer thread or a ``commit_now`` caller's)."""
        self._commit_average = 0.0
        """Moving average of commit durations (seconds): ``commit_now`` declines past
        ``settings.inline_max_seconds``."""
        self._state_flush: Callable[[], None] | None = None
        self._last_state_log = -1e9
        self._closing = False
        self.metrics.spool_bytes.set(self._spooled)
        self._thread = threading.Thread(target=self._run, name="haltgate-audit-spool", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- start, heal

    def _start_up(self) -> None:
        """Recover the spool and open the newest segment (at start, and when a start that
        failed is retried)."""
        directory = self.settings.directory
        heads = settle(directory, self.metrics)
        self.spool_id = spool_id(directory)
        self._durable_fd = os.open(directory / DURABLE_FILE, os.O_WRONLY | os.O_CREAT, 0o600)
        self._written = dict(heads)
        segments = list_segments(directory)
        self._segment = segments[-1] if segments else 0
        if self._segment:
            self._open_segment(self._segment, create=False)
        else:
            self._roll()
        self._spooled = spool_bytes(directory)
        self.chainer = Chainer(heads)
        self._started = True

    def _close_fds(self) -> None:
        for fd in (self._fd, self._durable_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._durable_fd = -1

    def free_bytes(self) -> int:
        """Bytes free for this spool on its volume (for an unprivileged writer)."""
        st = os.statvfs(self.settings.directory)
        return st.f_bavail * st.f_frsize

    def _heal(self) -> bool:
        """Try to leave the failed state; True when records are accepted again."""
        try:
            if not self._started:
                self._start_up()
            else:
                # Bytes past the last durable commit belong to the batch that failed: its
                # waiters were refused, so they go (a torn tail, never a hole).
                os.ftruncate(self._fd, self._size)
                os.fsync(self._fd)
                for number in list_segments(self.settings.directory):
                    if number > self._segment:  # a roll that failed half-way: no records
                        os.unlink(segment_path(self.settings.directory, number))
                os.pwrite(
                    self._durable_fd, encode_durable(SpoolPosition(self._segment, self._size)), 0
                )
            if self.free_bytes() < self.settings.min_free_bytes:
                return False
        except OSError as e:
            log.debug("audit spool still failing: %s", e)
            return False
        with self._lock:
            self._failed = None
        log.warning("audit spool %s: writable again; accepting records", self.settings.directory)
        return True

    def health(self) -> str | None:
        """``None`` when records are accepted, else why not: ``audit_unavailable`` (a
        failed write, a volume that cannot be written), ``audit_spool_full`` (the size
        limit, with ``onSpoolFull: block``) or ``disk_full`` (under ``min_free_bytes``
        free: the next commit would fail)."""
        if self._failed is not None:
            return AuditUnavailableError.code
        if self.settings.on_full == "block":
            with self._lock:
                full = not self._capacity_ok(4096)
            if full:
                return SpoolFullError.code
        try:
            if self.free_bytes() < self.settings.min_free_bytes:
                return "disk_full"
        except OSError:
            return AuditUnavailableError.code
        return None

    # ---------------------------------------------------------------- segment files

    def _open_segment(self, number: int, *, create: bool) -> None:
        path = segment_path(self.settings.directory, number)
        flags = os.O_WRONLY | os.O_APPEND | (os.O_CREAT | os.O_EXCL if create else 0)
        fd = os.open(path, flags, 0o600)
        if create:
            # _written holds the heads of every record written so far: exactly what
            # precedes this segment (the batch that made us roll is not written yet).
            try:
                os.write(fd, MAGIC + checkpoint_frame(self._written))
                os.fsync(fd)
                fsync_dir(self.settings.directory)
            except OSError:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(path)  # no record in it yet: nothing is lost
                raise
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        self._segment = number
        self._size = os.fstat(fd).st_size
        # Below this size the segment holds no record yet, so rolling it would be pointless.
        self._base_size = self._size if create else len(MAGIC)

    def _roll(self) -> None:
        self._open_segment(self._segment + 1, create=True)

    # ---------------------------------------------------------------- enqueue

    def _capacity_ok(self, nbytes: int) -> bool:
        limit = self.settings.max_bytes
        nbytes += self._pending.nbytes
        if self._spooled + nbytes <= limit:
            return True
        # The shipper removes segments behind our back: recount before saying full, at
        # most every 50 ms so a full spool does not turn every call into a directory scan.
        now = time.monotonic()
        if now - self._last_rescan >= 0.05:
            self._last_rescan = now
            self._spooled = spool_bytes(self.settings.directory) + self._in_flight
            self.metrics.spool_bytes.set(self._spooled)
        return self._spooled + nbytes <= limit

    def submit(self, record: AuditRecord, waiter: Waiter, *, urgent: bool = True) -> bool:
        """Queue ``record`` for the next commit; ``False`` when dropped (spool full and
        ``continue``). The waiter completes when the record is durable. ``urgent=False``:
        the commit may wait up to ``linger_seconds`` for more records."""
        with self._lock:
            if not self._queue(record, waiter):
                return False
            batch = self._pending
            if urgent:
                if not batch.urgent:
                    batch.urgent = True
                    if not self._committing:
                        self._wake.notify()
            elif not batch.first_at:
                # No wake-up: the writer looks every linger_seconds, or an urgent record
                # takes this one along first.
                batch.first_at = time.monotonic()
        return True

    def commit_now(self, record: AuditRecord) -> bool | None:
        """Commit ``record`` (with whatever is queued) on the calling thread, now.

        Returns ``True`` once it is durable, ``False`` when it was dropped (spool full and
        ``continue``), and ``None`` without doing anything when a commit is in flight, a
        record already waits for one, or commits are slow (their average is over
        ``inline_max_seconds``): then :meth:`submit` it (the group commit). Raises like
        :meth:`submit`, and :class:`AuditUnavailableError` when the commit fails."""
        with self._lock:
            if self._failed is not None:
                raise self._failed
            limit = self.settings.inline_max_seconds
            if self._committing or self._pending.urgent or not 0 < limit >= self._commit_average:
                return None
            if not self._queue(record, Waiter(None, None)):
                return False
            batch = self._take()
        error = self._commit(batch)
        with self._lock:
            self._committing = False
            if self._pending.urgent or self._closing or error is not None:
                self._wake.notify()  # queued meanwhile from another thread, or heal
        if error is not None:
            raise error
        return True

    def _take(self) -> _Batch:
        """Take the queued batch for a commit (under ``_lock``)."""
        batch = self._pending
        self._pending = _Batch()
        self._committing = True
        self._in_flight = batch.nbytes
        self._spooled += batch.nbytes
        return batch

    def _queue(self, record: AuditRecord, waiter: Waiter) -> bool:
        """Seal ``record`` into the pending batch (under ``_lock``); False when dropped."""
        if self._failed is not None:
            raise self._failed
        if self._closing:
            raise AuditUnavailableError("audit spool is closed")
        # A sealed record is ~1 KiB: checking with a generous estimate before sealing means
        # a refused record never consumes a sequence number.
        if not self._capacity_ok(4096):
            if self.settings.on_full == "block":
                self.metrics.refusals.labels(code=SpoolFullError.code).inc()
                raise SpoolFullError(
                    f"audit spool {self.settings.directory} is full "
                    f"({self._spooled} of {self.settings.max_bytes} bytes): is the shipper "
                    "running and PostgreSQL reachable?"
                )
            self.metrics.records_dropped.labels(reason="spool_full").inc()
            self._dropped_unlogged += 1
            now = time.monotonic()
            if now - self._last_drop_log >= 5.0:  # loud, but not one line per call
                log.error(
                    "audit spool full: %d records dropped (onSpoolFull=continue), "
                    "latest decision %s",
                    self._dropped_unlogged,
                    record.decision_id,
                )
                self._dropped_unlogged = 0
                self._last_drop_log = now
            return False
        record = fit_record(record, self.settings.max_payload_bytes)
        try:
            line, chain, head = self.chainer.seal_line(record, max_bytes=MAX_FRAME)
        except (TypeError, ValueError) as e:
            # Not JSON-serialisable (the caller's bug) or, even clipped, larger than a
            # frame the reader accepts. The chain is untouched (sealing serialises and
            # measures before it advances the head).
            self.metrics.refusals.labels(code=InvalidRecordError.code).inc()
            raise InvalidRecordError(f"audit record cannot be written: {e}") from e
        frame = encode_frame(line, record.time)
        batch = self._pending
        batch.frames.append(frame)
        batch.waiters.append(waiter)
        batch.heads.append((chain, head))
        batch.nbytes += len(frame)
        return True

    def carry_state(self, flush: Callable[[], None]) -> Callable[[], bool]:
        """Carry a second file (the budget state) in the group commit; returns the function
        to call when it changed (it returns False once the writer no longer commits: closed
        or failed; the caller then writes the state itself). ``flush`` runs on the writer
        thread in every commit after a change (before the batch's waiters complete), so
        whatever changed before a record was queued is written before that record's waiter
        returns. An ``OSError`` from it fails the batch's awaited records with
        :class:`StatePersistError` (the records themselves are durable; the spool keeps
        working)."""
        self._state_flush = flush
        return self._state_changed

    def _state_changed(self) -> bool:
        with self._lock:
            if self._closing:
                return False
            batch = self._pending
            if not batch.state:
                batch.state = True
                if not batch.first_at:
                    # Written with the next record's commit, or after linger_seconds.
                    batch.first_at = time.monotonic()
        return True

    # ---------------------------------------------------------------- writer thread

    def _run(self) -> None:
        linger = self.settings.linger_seconds
        while True:
            if self._failed is not None:
                with self._lock:
                    if self._closing:
                        return
                    self._wake.wait(self.settings.retry_seconds)
                    if self._closing:
                        return
                self._heal()
                continue
            with self._lock:
                while True:
                    # Idle, or only lingering records: look again when the oldest one is
                    # due (lingering records queue without a wake-up; an urgent one wakes
                    # us at once and takes them along). While a commit_now caller commits,
                    # wait: it wakes us if an urgent record was queued meanwhile.
                    pending = self._pending
                    wait = linger
                    if not self._committing:
                        if pending.urgent or self._closing or self._failed is not None:
                            break
                        if pending.frames or pending.state:
                            wait = pending.first_at + linger - time.monotonic()
                            if wait <= 0:
                                break
                    self._wake.wait(wait)
                if self._failed is not None and not self._closing:
                    continue  # a commit_now caller's commit failed: heal first
                batch = self._take()
                closing = self._closing
            if batch.frames or batch.state:
                self._commit(batch)
            with self._lock:
                self._committing = False
            if closing and not batch.frames:
                return  # (a state write that failed now is not retried after close)

    def _commit(self, batch: _Batch) -> AuditError | None:
        """Write and sync ``batch``, complete its waiters; the error the batch failed
        with (its records refused), if any. Runs on one thread at a time (``_committing``)."""
        error: AuditUnavailableError | None = None
        state_error: StatePersistError | None = None
        started = time.perf_counter()
        frames, waiters, nbytes = batch.frames, batch.waiters, batch.nbytes
        if batch.state and self._state_flush is not None:
            # Before the records' fdatasync: the state's write then costs no extra wait.
            try:
                self._state_flush()
            except OSError as e:
                state_error = StatePersistError(
                    f"budget state could not be saved: {e.strerror or e}"[:512]
                )
                now = time.monotonic()
                if now - self._last_state_log >= 5.0:  # retried every commit: not every line
                    self._last_state_log = now
                    log.error("audit spool: carried budget state: %s", e)
                self._state_changed()  # still due: the next commit tries again
        if not frames:
            return None
        try:
            if self._size > self._base_size and self._size + nbytes > self.settings.segment_bytes:
                self._roll()
            if self.settings.before_write is not None:
                self.settings.before_write()
            data = b"".join(frames)
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            if self.settings.fsync:
                os.fdatasync(self._fd)
            self._size += len(data)
            self._written.update(batch.heads)
            os.pwrite(self._durable_fd, encode_durable(SpoolPosition(self._segment, self._size)), 0)
        except OSError as e:
            # After a failed write or fsync the file's state is unknown (fsyncgate): refuse
            # records until _heal() has cut the segment back to its last durable byte. The
            # records sealed since then (this batch, and those queued behind it) are
            # refused too, and the chain heads go back to the last written record.
            error = AuditUnavailableError(f"audit spool write failed: {e}")
            with self._lock:
                self._failed = error
                queued, self._pending = self._pending, _Batch()
                self.chainer = Chainer(self._written)
                self._spooled = max(self._spooled - nbytes - queued.nbytes, 0)
            waiters = waiters + queued.waiters
            self.metrics.refusals.labels(code=AuditUnavailableError.code).inc()
            log.error("audit spool: %s; refusing records until it can write again", e)
        else:
            took = time.perf_counter() - started
            self._commit_average += (took - self._commit_average) * 0.2
            self.metrics.fsync_seconds.observe(took)
            self.metrics.group_size.observe(len(frames))
            self.metrics.records_spooled.inc(len(frames))
            self.metrics.spool_bytes.set(self._spooled)
        with self._lock:
            self._in_flight = 0
        if error is None and state_error is not None:
            # Only awaited records (intents) wait on the state; queued outcomes are durable.
            # (A commit_now record is an intent: its caller gets the state error too.)
            _resolve([w for w in waiters if w.loop is None and w.future is not None], None)
            _resolve([w for w in waiters if w.loop is not None], state_error)
            return state_error if any(w.future is None for w in waiters) else None
        _resolve(waiters, error)
        return error

    # ---------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Commit what is queued, stop the thread, close the segment, release the lock."""
        with self._lock:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout=30)
        self._close_fds()
        self._writer_lock_cm.__exit__(None, None, None)


def _resolve(waiters: list[Waiter], error: AuditError | None) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for w in waiters:
        if w.future is None:
            continue  # commit_now: its caller reads the error from _commit
        if w.loop is None:
            cf = w.future
            assert isinstance(cf, concurrent.futures.Future)
            if error is None:
                cf.set_result(None)
            else:
                cf.set_exception(error)
        else:
            af = w.future
            assert isinstance(af, asyncio.Future)
            by_loop.setdefault(w.loop, []).append(af)
    running = asyncio._get_running_loop()
    for loop, futures in by_loop.items():
        if loop is running:
            _settle(futures, error)  # committed on the loop's own thread: no wake-up
            continue
        # One wake-up per loop per commit, not one per record.
        with contextlib.suppress(RuntimeError):  # loop already closed: nobody waits
            loop.call_soon_threadsafe(_settle, futures, error)


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for fut in futures:
        if fut.done():
            continue
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(error)
