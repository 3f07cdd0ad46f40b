"""The audit spool writer: appends records to the active segment with group commit.

Records are sealed (chain, sequence number, hashes; ~15 us) by the caller when queued, so
sealing overlaps the commit in flight. The writer thread takes every record queued while
the previous commit was in flight, writes them with one ``write`` and makes them durable
with one ``fdatasync``: concurrent calls share a commit. ``intent()`` returns only after
its record is durable; after each sync the durable position is published in ``durable``
(the shipper reads no further).

A lone record needs no thread: :meth:`SpoolWriter.commit_now` commits on the calling
thread when no commit is in flight (the sidecar's intent of a call with no other call in
flight: its event loop has nothing else to do while the disk syncs). Handing the record to
the writer thread and its answer back costs two cross-thread wake-ups (on a VM each an
inter-processor interrupt) and GIL contention. While commits are slow (their average over
``inline_max_seconds``) every record goes to the writer thread, so a slow volume never
holds the caller's loop for long.

Records nobody waits for (``submit_nowait``: outcomes) wake nobody: they go with the next
awaited record's commit, or, ``linger_seconds`` (20 ms) later, are written (a killed
process keeps them) and synced with the next awaited record's commit or after
``lazy_sync_seconds`` (1 s): one fdatasync per call, also in sparse traffic. The linger is
timed by the event loop that queued them (a timer, no thread woken).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from collections.abc import Callable

from haltgate.governance.audit.fit import fit_fields, fit_payload
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
    encode_durable,
    encode_row_frame,
    flocked,
    list_segments,
    segment_path,
    spool_bytes,
    spool_id,
)
from haltgate.governance.audit.spool_batch import Batch, Waiter, resolve
from haltgate.governance.audit.spool_recovery import settle
from haltgate.governance.audit.spool_segments import SegmentFiles
from haltgate.governance.audit.spool_settings import SpoolSettings

__all__ = ["SpoolWriter", "Waiter"]  # Waiter: re-exported from spool_batch

_IDLE_SECONDS = 1.0
"""The writer thread's longest sleep with nothing to commit: lingering records queued on an
event loop are timed by that loop and wake no thread (this bounds their wait if the loop
stopped)."""

log = logging.getLogger("haltgate.audit.spool")


class SpoolWriter(SegmentFiles):
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
        self._fit_payload = functools.partial(
            fit_payload, max_payload_bytes=settings.max_payload_bytes
        )
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
        self._pending = Batch()
        self._committing = False
        """A commit is in flight (on the writer thread or a ``commit_now`` caller's)."""
        self._unsynced: Batch | None = None
        """Lingering records written (a killed process keeps them: they are in the page
        cache) but not synced yet: their waiters, heads and size wait for the next sync."""
        self._unsynced_at = 0.0
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
        if self._segment and self._current_format():
            self._open_segment(self._segment, create=False)
        else:
            self._roll()  # none yet, or the newest holds an older frame format
        self._spooled = spool_bytes(directory)
        self.chainer = Chainer(heads)
        self._started = True

    def _current_format(self) -> bool:
        """The newest segment announces the frame format written now (appending format-2
        frames to a format-1 segment would hide them from a reader that checks the
        magic): else a new segment is started."""
        with segment_path(self.settings.directory, self._segment).open("rb") as f:
            return f.read(len(MAGIC)) == MAGIC

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
                self._linger(batch)
        return True

    def _linger(self, batch: Batch) -> None:
        """Start the linger of ``batch``'s first record nobody waits for (under ``_lock``).

        No wake-up now: an urgent record (the next call's intent) usually takes it along
        first. On an event loop's thread a timer of that loop looks at ``linger_seconds``
        (one heap entry, no thread woken when it is no longer due); elsewhere the writer
        thread is woken to time it."""
        batch.first_at = time.monotonic()
        loop = asyncio._get_running_loop()
        if loop is not None:
            batch.timed = True
            batch.timer = loop.call_later(self.settings.linger_seconds, self._linger_due, batch)
            batch.timer_thread = threading.get_ident()
        elif not self._committing:
            self._wake.notify()

    def _linger_due(self, batch: Batch) -> None:
        """A lingering batch is due (on the event loop that queued it). Traffic is sparse
        (no intent came to take it along): commit it here, like ``commit_now``, or hand it
        to the writer thread when commits are slow or one is in flight."""
        batch.timer = None  # running now: nothing to cancel
        with self._lock:
            if self._pending is not batch or batch.urgent or self._closing:
                return  # taken along by a commit already, or the writer has it
            if self._failed is not None:
                return
            limit = self.settings.inline_max_seconds
            if self._committing or not 0 < limit >= self._commit_average:
                self._wake.notify()
                return
            taken = self._take()
        lazy = self.settings.lazy_sync_seconds
        self._commit_here(taken, sync=not lazy)
        if self._unsynced is not None:
            asyncio.get_running_loop().call_later(lazy, self._sync_due)

    def _sync_due(self) -> None:
        """Lingering records written without a sync are due for one (a timer of the loop
        that wrote them): no awaited record's commit synced them meanwhile. The writer
        thread syncs them: an fdatasync is never run on the loop for records nobody
        waits for, whatever else is in flight."""
        with self._lock:
            if self._unsynced is not None and not self._closing:
                self._wake.notify()

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
        error = self._commit_here(batch)
        if error is not None:
            raise error
        return True

    def _commit_here(self, batch: Batch, *, sync: bool = True) -> AuditError | None:
        """Commit ``batch`` (taken under ``_lock``) on the calling thread; then wake the
        writer thread if it has work: records queued meanwhile by another thread, or
        healing after a failure."""
        error = self._commit(batch, sync=sync)
        with self._lock:
            self._committing = False
            if self._pending.urgent or self._closing or self._failed is not None:
                self._wake.notify()
        return error

    def _take(self) -> Batch:
        """Take the queued batch for a commit (under ``_lock``). Taken on the thread of the
        loop timing its linger (the next call's intent, ``commit_now``), that timer is
        cancelled: it would only wake the loop to find the batch gone (in sparse traffic,
        one or two wake-ups per call)."""
        batch = self._pending
        timer = batch.timer
        if timer is not None and batch.timer_thread == threading.get_ident():
            timer.cancel()  # a loop's timer handle is not thread-safe: only on its thread
            batch.timer = None
        self._pending = Batch()
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
        record = fit_fields(record)
        try:
            # The payload bound is measured only for a record longer than it (serialising
            # the payload on its own for every record cost a second encoding of it).
            line, prefix, chain, head = self.chainer.seal_row(
                record,
                max_bytes=MAX_FRAME,
                refit=self._fit_payload,
                refit_above=self.settings.max_payload_bytes,
            )
        except (TypeError, ValueError) as e:
            # Not JSON-serialisable (the caller's bug) or, even clipped, larger than a
            # frame the reader accepts. The chain is untouched (sealing serialises and
            # measures before it advances the head).
            self.metrics.refusals.labels(code=InvalidRecordError.code).inc()
            raise InvalidRecordError(f"audit record cannot be written: {e}") from e
        frame = encode_row_frame(prefix, head.hash, line, record.time)
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
                    self._linger(batch)
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
                    wait = _IDLE_SECONDS
                    if not self._committing:
                        if pending.urgent or self._closing or self._failed is not None:
                            break
                        if pending.first_at:
                            # A loop's timer normally takes a timed batch at its due time.
                            due = pending.first_at + linger * (2 if pending.timed else 1)
                            wait = due - time.monotonic()
                            if wait <= 0:
                                break
                        if self._unsynced is not None:
                            # Woken by the loop's timer (_sync_due), or the idle backstop.
                            due = self._unsynced_at + self.settings.lazy_sync_seconds
                            wait = min(wait, due - time.monotonic())
                            if wait <= 0:
                                break
                    elif pending.first_at:
                        wait = linger
                    self._wake.wait(wait)
                if self._failed is not None and not self._closing:
                    continue  # a commit_now caller's commit failed: heal first
                batch = self._take()
                closing = self._closing
                # Records nobody waits for are written now and synced with the next
                # awaited record (or lazy_sync_seconds later): one fdatasync per call.
                sync = (
                    batch.urgent
                    or closing
                    or not self.settings.lazy_sync_seconds
                    or (
                        self._unsynced is not None
                        and time.monotonic() >= self._unsynced_at + self.settings.lazy_sync_seconds
                    )
                )
            if batch.frames or batch.state or (sync and self._unsynced is not None):
                self._commit(batch, sync=sync)
            with self._lock:
                self._committing = False
            if closing and not batch.frames:
                return  # (a state write that failed now is not retried after close)

    def _commit(self, batch: Batch, *, sync: bool = True) -> AuditError | None:
        """Write and sync ``batch``, complete its waiters; the error the batch failed
        with (its records refused), if any. Runs on one thread at a time (``_committing``).

        ``sync=False`` (lingering records only): write, but leave the sync (and the
        waiters, the durable position, the chain heads the spool counts as written) to the
        next commit that syncs; records written since the last sync are refused with
        that commit if it fails (the segment is cut back to the last synced byte)."""
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
        carried = self._unsynced
        if not frames and (carried is None or not sync):
            return None
        synced: list[Waiter] = []
        """Waiters of records made durable by this commit before anything failed."""
        try:
            if (
                frames
                and self._size > self._base_size
                and self._size + nbytes + (carried.nbytes if carried else 0)
                > self.settings.segment_bytes
            ):
                if carried is not None:
                    self._sync_written(carried.nbytes, carried.heads)  # before it is left
                    synced, carried = carried.waiters, None
                self._roll()
            if frames:
                if self.settings.before_write is not None:
                    self.settings.before_write()
                data = b"".join(frames)
                view = memoryview(data)
                while view:
                    written = os.write(self._fd, view)
                    view = view[written:]
            if not sync:
                if carried is None:
                    self._unsynced = carried = Batch()
                    self._unsynced_at = time.monotonic()
                carried.waiters += waiters
                carried.heads += batch.heads
                carried.nbytes += nbytes
                waiters = synced
            else:
                heads = batch.heads
                if carried is not None:
                    heads = carried.heads + heads
                    nbytes += carried.nbytes
                    waiters = carried.waiters + waiters
                self._sync_written(nbytes, heads)
                waiters = synced + waiters
        except OSError as e:
            # After a failed write or fsync the file's state is unknown (fsyncgate): refuse
            # records until _heal() has cut the segment back to its last durable byte. The
            # records sealed since then (this batch, those written unsynced before it and
            # those queued behind it) are refused too, and the chain heads go back to the
            # last durable record.
            error = AuditUnavailableError(f"audit spool write failed: {e}")
            unsynced, self._unsynced = self._unsynced, None
            with self._lock:
                self._failed = error
                queued, self._pending = self._pending, Batch()
                self.chainer = Chainer(self._written)
                lost = batch.nbytes + queued.nbytes + (unsynced.nbytes if unsynced else 0)
                self._spooled = max(self._spooled - lost, 0)
            resolve(synced, None)
            waiters = (unsynced.waiters if unsynced else []) + batch.waiters + queued.waiters
            self.metrics.refusals.labels(code=AuditUnavailableError.code).inc()
            log.error("audit spool: %s; refusing records until it can write again", e)
        else:
            if sync:
                took = time.perf_counter() - started
                self._commit_average += (took - self._commit_average) * 0.2
                self.metrics.fsync_seconds.observe(took)
                self.metrics.group_size.observe(len(waiters))
                self.metrics.records_spooled.inc(len(waiters))
                self.metrics.spool_bytes.set(self._spooled)
        with self._lock:
            self._in_flight = 0
        if error is None and state_error is not None:
            # Only awaited records (intents) wait on the state; queued outcomes are durable.
            # (A commit_now record is an intent: its caller gets the state error too.)
            resolve([w for w in waiters if w.loop is None and w.future is not None], None)
            resolve([w for w in waiters if w.loop is not None], state_error)
            return state_error if any(w.future is None for w in waiters) else None
        resolve(waiters, error)
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
