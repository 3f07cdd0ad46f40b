"""Ship spooled records to PostgreSQL: COPY in batches, idempotent, in spool order.

One shipper per spool (``shipper.lock``). Each batch is COPY'd into
``haltgate.audit_records`` in one transaction that also records the spool's progress
(``haltgate.audit_ship_progress``, keyed by ``spool.id``); only after that commit is the
position acknowledged locally (``shipped.json``, atomic). After a crash between commit and
acknowledgement the re-read batch is cut at the recorded progress, so nothing is inserted
twice; if a record is there anyway (progress lost, a spool restored from a copy), the batch
goes through a staging table with ``INSERT ... ON CONFLICT DO NOTHING`` on the primary key
``(ts, record_id)``. No loss, no duplicates. Batches leave in spool order, so a chain's
records reach the table in sequence order.

While PostgreSQL is unreachable the shipper retries with capped backoff and the spool
grows; ``haltgate_audit_ship_lag_seconds`` shows how far behind it is. Fully shipped
segments are removed after their chain heads are folded into ``heads.json``.

Read-ahead: while one batch is in PostgreSQL (the server inserting and indexing it, on its
own core), a thread reads and encodes the next one from where it ends, so the shipper's CPU
(spool framing, JSON parse, binary encoding) and the server's overlap instead of taking
turns. The thread lives only inside ``ship_once`` (joined before it returns, so compaction,
settling and ``stop`` never race it), reads only up to the durable mark like the batch
itself, and what it read is used only if the batch before it committed: it starts exactly
at the acknowledged position (after a failed batch it is dropped and read again).
Everything else (progress row, savepoint fallback, acknowledgement) is the same as without
it.

Two lanes (``ShipperSettings.lanes = 2``, the default): each round ships a batch and the one
after it at once, on two connections, so PostgreSQL inserts and indexes them in two server
processes. The second commits only after the first and only if the first committed, which
the progress row enforces (``ship_lanes``): spool order and exactly-once are unchanged, and
acknowledgements follow the commits in order. A follower left out of a round (its
partition not yet known to exist, a connection just opened) or rolled back is shipped in
the next.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
import psycopg

from haltgate.governance.audit.binary_copy import RecordEncodingError, encode_chunks
from haltgate.governance.audit.metrics import AuditMetrics
from haltgate.governance.audit.record import ChainHead
from haltgate.governance.audit.ship_lanes import Batch, BatchSuperseded, Lane, months
from haltgate.governance.audit.sink import AuditUnavailableError
from haltgate.governance.audit.spool import (
    HEADS_FILE,
    READ_CHUNK,
    SHIPPED_FILE,
    Frame,
    SpoolPosition,
    flocked,
    iter_frames,
    list_segments,
    read_checkpoint,
    read_durable,
    read_heads,
    segment_path,
    spool_id,
    write_json_atomic,
)
from haltgate.governance.audit.spool_recovery import needs_settling, settle

__all__ = [
    "DEFAULT_BATCH_RECORDS",
    "ShipResult",
    "Shipper",
    "ShipperSettings",
]

log = logging.getLogger("haltgate.audit.shipper")

DEFAULT_BATCH_RECORDS = 20_000
"""Default ``ShipperSettings.batch_records``."""


@dataclass(frozen=True, slots=True)
class ShipperSettings:
    """How the shipper runs."""

    directory: Path
    """The spool directory (shared with the writer)."""
    dsn: str
    """libpq connection string of a role in ``haltgate_audit_writer``."""
    batch_records: int = DEFAULT_BATCH_RECORDS
    """Records per COPY transaction (at most; a batch also stops at one read of the spool,
    16 MiB). Each batch ends with steps neither side can overlap (the server finishing the
    COPY, the progress row, commit, the fsync'd acknowledgement, reading the next batch):
    at 5,000 they cost a measurable share of the rate."""
    poll_seconds: float = 0.2
    """Sleep when caught up (seconds)."""
    max_backoff_seconds: float = 5.0
    """Longest wait between retries while PostgreSQL fails (seconds)."""
    connect_timeout_seconds: int = 5
    """libpq connect_timeout (seconds)."""
    toast_lz4: bool = True
    """Compress large records with lz4 instead of pglz when the server was built with lz4
    (session setting ``default_toast_compression``; a server without lz4 keeps its
    default, nothing fails)."""
    read_ahead: bool = True
    """Read and encode the next batch in a thread while this one is COPY'd (see the
    module docstring). Off: one batch at a time, encoded while it is sent."""
    lanes: int = 2
    """Batches in flight at once, each on its own connection (1 or 2). With 2 (the
    default), while there is a backlog of more than one batch PostgreSQL inserts and
    indexes two batches in two server processes, in spool order and exactly once
    (``ship_lanes``); the second connection closes once the shipper has caught up. Since
    the spool carries the COPY rows (format 2) the server sets the pace, so the second
    server process is what raises the rate. 1: one connection, always (a database short
    of connections: every shipper draining a backlog after an outage opens two)."""

    def __post_init__(self) -> None:
        if self.lanes not in (1, 2):
            raise ValueError(f"ShipperSettings.lanes must be 1 or 2, not {self.lanes!r}")
        if self.batch_records < 1:
            raise ValueError(
                f"ShipperSettings.batch_records must be at least 1, not {self.batch_records!r}"
            )


@dataclass(frozen=True, slots=True)
class ShipResult:
    """What one ``ship_once`` moved."""

    records: int
    inserted: int
    position: SpoolPosition
    moved: bool = False
    """The acknowledged position advanced (records, or only a segment checkpoint)."""


class _ReadAhead(threading.Thread):
    """Reads and encodes the round at ``start`` while the caller ships the one before."""

    def __init__(self, read: Callable[[SpoolPosition], list[Batch]], start: SpoolPosition) -> None:
        super().__init__(name="haltgate-audit-read-ahead", daemon=True)
        self._read = read
        self._start = start
        self.batches: list[Batch] | None = None

    def run(self) -> None:
        try:
            batches = self._read(self._start)
        except Exception as e:  # the next round reads again on the shipper's own thread,
            log.debug("audit shipper: read-ahead failed (%s)", type(e).__name__)
            return  # where a failure takes the usual way (retry, metrics)
        encoded = []
        for batch in batches:
            try:
                encoded.append(replace(batch, chunks=encode_chunks(batch.frames)))
            except RecordEncodingError:  # encoded again inside the COPY transaction,
                encoded.append(batch)  # which reports it
        self.batches = encoded


class _Follower(threading.Thread):
    """A follower batch's transaction on its own lane (``ship_lanes``)."""

    def __init__(self, lane: Lane, spool: str, batch: Batch) -> None:
        super().__init__(name="haltgate-audit-follower", daemon=True)
        self.lane = lane
        self._spool = spool
        self.batch = batch
        self.inserted = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.inserted = self.lane.follow(self._spool, self.batch)
        except BaseException as e:  # reported by the shipper's thread after the join
            self.error = e


class Shipper:
    """Moves records from one spool directory to PostgreSQL. ``run`` until ``stop``."""

    def __init__(self, settings: ShipperSettings, metrics: AuditMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else AuditMetrics()
        self._dir = Path(settings.directory)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._lock_cm = flocked(self._dir / "shipper.lock", blocking=False)
        self._lock_cm.__enter__()
        self._lanes = [
            Lane(settings.dsn, settings.connect_timeout_seconds, settings.toast_lz4)
            for _ in range(settings.lanes)
        ]
        self._partitions: set[tuple[int, int]] = set()
        """Months whose partition a committed transaction saw (or made) on the open
        connections; cleared when a connection is (re)opened or a batch fails."""
        self._stop = threading.Event()
        self._unsettled = False
        self._ahead: list[Batch] | None = None
        try:
            self.position = self._read_position()
            self.spool_id = spool_id(self._dir)
            self._settle_or_retry_later()
        except BaseException:
            self._lock_cm.__exit__(None, None, None)
            raise

    def _settle_or_retry_later(self) -> None:
        """``settle_orphaned``, but a full volume (it may write a torn tail aside) is not
        fatal: the shipper starts and tries again each round (it may be the one freeing
        space)."""
        try:
            self.settle_orphaned()
            self._unsettled = False
        except OSError as e:
            self._unsettled = True
            log.error("audit shipper: cannot settle the spool yet (%s); retrying", e)

    def settle_orphaned(self) -> bool:
        """If no writer is alive, recover the spool and make it durable (what a starting
        writer does), so records a crashed sidecar left behind get shipped. True if done."""
        if not needs_settling(self._dir):
            return False
        try:
            with flocked(self._dir / "writer.lock", blocking=False):
                settle(self._dir, self.metrics, heads=False)
        except AuditUnavailableError:
            return False  # a writer is alive and keeps the durable mark current
        return True

    # ---------------------------------------------------------------- position

    def _read_position(self) -> SpoolPosition:
        try:
            doc = orjson.loads((self._dir / SHIPPED_FILE).read_bytes())
            return SpoolPosition(int(doc["segment"]), int(doc["offset"]))
        except FileNotFoundError:
            segments = list_segments(self._dir)
            return SpoolPosition(segments[0] if segments else 1, 0)

    def _ack(self, position: SpoolPosition) -> None:
        """Record the shipped position locally. PostgreSQL already holds it (committed with
        the batch), so a local write that fails (a full volume) does not hold the shipper
        back: it moves on and compacts, which is what frees the space; after a restart
        the database's progress cuts whatever the stale file makes it read again."""
        self.position = position
        try:
            write_json_atomic(
                self._dir / SHIPPED_FILE, {"segment": position.segment, "offset": position.offset}
            )
        except OSError as e:
            self.metrics.ship_errors.inc()
            log.warning(
                "audit shipper: %s not written (%s); PostgreSQL has the progress", SHIPPED_FILE, e
            )

    # ---------------------------------------------------------------- reading

    def _next_frames(self, after: SpoolPosition | None = None) -> tuple[list[Frame], SpoolPosition]:
        """Up to ``batch_records`` complete frames from ``after`` (default: the
        acknowledged position), and the position after them."""
        limit = self.settings.batch_records
        frames: list[Frame] = []
        pos = self.position if after is None else after
        durable = read_durable(self._dir)
        if durable is None:
            return frames, pos
        # Never ship past the durable mark: a record the writer has written but not yet
        # fsync'd may still vanish in a power loss and its sequence number be reused.
        segments = [n for n in list_segments(self._dir) if pos.segment <= n <= durable.segment]
        for index, number in enumerate(segments):
            newest = index == len(segments) - 1
            start = pos.offset if number == pos.segment else 0
            # Read a bounded chunk, not the rest of the segment: a batch is a few MB, a
            # segment up to its size limit, and re-reading it per batch would be quadratic.
            want = READ_CHUNK
            if number == durable.segment:
                want = min(want, max(durable.offset - start, 0))
            try:
                with segment_path(self._dir, number).open("rb") as f:
                    f.seek(start)
                    data = f.read(want)
            except FileNotFoundError:
                break
            # A segment read from its start opens with a checkpoint frame: one more frame.
            parsed, stop, reason = iter_frames(
                data, number, base=start, max_frames=limit - len(frames) + (start == 0)
            )
            if reason is not None and reason.startswith("short") and len(data) == READ_CHUNK:
                reason = None  # the chunk ended inside a frame: the next batch reads on
                chunked = True
            else:
                chunked = len(data) == READ_CHUNK
            frames.extend(f for f in parsed if not f.is_checkpoint)
            if parsed:
                pos = SpoolPosition(number, parsed[-1].end)
            if len(frames) >= limit or (reason is None and stop < start + len(data)):
                break  # batch full, or parsing stopped at max_frames inside this chunk
            if reason is not None:
                if not newest:
                    # A bad frame in an older segment: the writer repairs it when it
                    # restarts; shipping past it would lose the records behind it.
                    log.error(
                        "audit shipper: %s in segment %d at byte %d; waiting for the "
                        "writer to repair it",
                        reason,
                        number,
                        stop,
                    )
                # In the newest segment it is a write in progress: ship it next time.
                break
            if newest or chunked:
                break
            pos = SpoolPosition(segments[index + 1], 0)  # this segment is complete
        return frames, pos

    # ---------------------------------------------------------------- PostgreSQL

    @property
    def _conn(self) -> psycopg.Connection[Any] | None:
        """The first lane's connection (the one every batch uses without parallel lanes)."""
        return self._lanes[0].conn

    def backend_pids(self) -> list[int]:
        """The PostgreSQL server processes of the open connections (for measurements)."""
        return [lane.conn.info.backend_pid for lane in self._lanes if not lane.fresh and lane.conn]

    def _read_round(self, start: SpoolPosition) -> list[Batch]:
        """Up to ``lanes`` consecutive batches from ``start`` (one when the spool has no
        more to give: the followers read are never empty)."""
        frames, end = self._next_frames(start)
        batches = [Batch(start, frames, end)]
        while len(batches) < self.settings.lanes and frames:
            frames, after = self._next_frames(end)
            if not frames:
                break
            batches.append(Batch(end, frames, after))
            end = after
        return batches

    def _take_read_ahead(self) -> list[Batch] | None:
        """The round read ahead, if it starts where the acknowledged position is now (the
        round before it committed) and holds records; else None (read afresh)."""
        ahead, self._ahead = self._ahead, None
        if not ahead or ahead[0].start != self.position or not ahead[0].frames:
            return None
        return ahead

    def _run_round(self, batches: list[Batch]) -> list[tuple[Batch, int]]:
        """COPY the round's batches, the first as leader on lane 0 (this thread), each
        follower on its own lane and thread, started once the leader holds the progress
        row; return the committed
        ones, in order, with how many records each inserted. Followers run only if their
        partitions are known to exist (``ship_lanes``) and their lane connects. Raises the
        leader's error; a follower that fails is logged, counted and shipped again."""
        if self._lanes[0].fresh:
            self._partitions.clear()  # a new session: see the partitions again
        if len(batches) > 1 and any(months(b.frames) - self._partitions for b in batches[1:]):
            batches = batches[:1]  # the rest is shipped next round
        for index, lane in enumerate(self._lanes[1 : len(batches)], 1):
            try:
                lane.connection()
            except psycopg.Error as e:
                self.metrics.ship_errors.inc()
                log.warning("audit shipper: lane %d cannot connect (%s)", index, type(e).__name__)
                batches = batches[:index]
                break
        threads: list[_Follower] = [
            _Follower(lane, self.spool_id, batch)
            for lane, batch in zip(self._lanes[1:], batches[1:], strict=False)
        ]

        def start_followers() -> None:
            for thread in threads:
                thread.start()

        done: list[tuple[Batch, int]] = []
        try:
            done.append(
                (
                    batches[0],
                    self._lanes[0].lead(
                        self.spool_id, batches[0], self._partitions, start_followers
                    ),
                )
            )
        except BaseException:
            self._partitions.clear()  # rolled back with the transaction
            if threads:  # end the leader's session now: its followers wait on its locks
                self._lanes[0].drop()
            raise
        finally:
            for thread in threads:
                if thread.ident is not None:  # started (the leader took the progress row)
                    thread.join()  # a follower waits for the leader's transaction to end
        for thread in threads:
            if thread.ident is None:
                break  # never started: its batch is shipped in the next round
            if thread.error is not None:
                if not isinstance(thread.error, BatchSuperseded):
                    thread.lane.drop()
                    self.metrics.ship_errors.inc()
                    log.warning(
                        "audit shipper: follower batch failed (%s); it is read again",
                        type(thread.error).__name__,
                    )
                break
            done.append((thread.batch, thread.inserted))
        return done

    # ---------------------------------------------------------------- loop

    def ship_once(self) -> ShipResult:
        """Ship one round: a batch (maybe empty), and with two lanes the batch after it.
        Raises psycopg errors; nothing of a failed leader is acked then."""
        lanes = self.settings.lanes
        queue = self._take_read_ahead()
        if queue is None:
            queue = self._read_round(self.position)
        elif len(queue) < lanes and queue[-1].frames:  # what was left over: fill the round
            more = [b for b in self._read_round(queue[-1].end) if b.frames]
            queue += more[: lanes - len(queue)]
        round_, rest = queue[:lanes], queue[lanes:]
        frames = round_[0].frames
        records = inserted = 0
        ahead: _ReadAhead | None = None
        done: list[tuple[Batch, int]] = []
        committed = False
        try:
            if frames:
                if self.settings.read_ahead and len(rest) < lanes:
                    ahead = _ReadAhead(self._read_round, queue[-1].end)
                    ahead.start()
                done = self._run_round(round_)
                committed = True
        finally:
            if ahead is not None:
                ahead.join()  # nothing of the shipper runs between calls
            if committed:
                # What was read but not committed (a follower left out or rolled back)
                # still follows on from the last committed batch, and so does the round
                # read ahead: the next round takes them. After a failed leader nothing is
                # kept (read again from the acknowledged position).
                later = round_[len(done) :] + rest
                if ahead is not None and ahead.batches is not None:
                    later += ahead.batches
                self._ahead = later
            # On failure too: during an outage the lag metric is what shows it.
            self._update_lag(frames[0].time if frames else None)
        for batch, count in done:
            records += len(batch.frames)
            inserted += count
            self.metrics.records_shipped.inc(len(batch.frames))
        pos = done[-1][0].end if done else round_[0].end
        moved = pos != self.position
        if moved:
            self._ack(pos)
        if len(queue[-1].frames) < self.settings.batch_records:
            self.metrics.ship_lag_seconds.set(0)  # caught up
        if len(queue) == 1:  # nothing after this batch yet
            for lane in self._lanes[1:]:
                lane.drop()  # opened for a backlog: no connection held while idle
        return ShipResult(records, inserted, self.position, moved)

    def _update_lag(self, oldest_unshipped: float | None) -> None:
        backlog = 0
        for number in list_segments(self._dir):
            if number >= self.position.segment:
                try:
                    backlog += segment_path(self._dir, number).stat().st_size
                except FileNotFoundError:
                    continue
        self.metrics.ship_backlog_bytes.set(max(backlog - self.position.offset, 0))
        if oldest_unshipped is not None:
            self.metrics.ship_lag_seconds.set(max(time.time() - oldest_unshipped, 0.0))

    def compact(self) -> int:
        """Remove fully shipped segments, folding their chain heads into heads.json."""
        done = [n for n in list_segments(self._dir) if n < self.position.segment]
        if not done:
            return 0
        with flocked(self._dir / "compact.lock"):
            # The first kept segment opens with the heads of everything before it.
            found = read_checkpoint(self._dir, self.position.segment)
            if found is None:  # no checkpoint (torn at creation): read the removed segments
                found = read_heads(self._dir)
                for number in done:
                    data = segment_path(self._dir, number).read_bytes()
                    frames, _, _ = iter_frames(data, number)
                    for frame in frames:
                        if not frame.is_checkpoint:
                            d = orjson.loads(frame.data)
                            found[d["chain_id"]] = ChainHead(d["seq"], d["hash"])
            try:
                write_json_atomic(
                    self._dir / HEADS_FILE,
                    {c: {"seq": h.seq, "hash": h.hash} for c, h in found.items()},
                )
            except OSError as e:
                if read_checkpoint(self._dir, self.position.segment) is None:
                    raise  # heads.json is the only place these heads would survive
                # The kept segment's checkpoint holds the same heads (recovery reads it
                # first): removing the shipped segments is safe, and frees the volume.
                log.warning(
                    "audit shipper: %s not written (%s); the checkpoint of segment "
                    "%d keeps the chain heads",
                    HEADS_FILE,
                    e,
                    self.position.segment,
                )
            for number in done:
                os.unlink(segment_path(self._dir, number))
        return len(done)

    def drain(self, timeout: float = 60.0) -> int:
        """Ship until nothing is left (or ``timeout`` seconds); return records shipped."""
        self.settle_orphaned()
        total = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            before = self.position
            result = self.ship_once()
            total += result.records
            if result.records == 0 and result.position == before:
                self.compact()
                return total
        raise TimeoutError(f"audit shipper: still records left after {timeout:.0f}s")

    def run(self, on_error: Callable[[BaseException], None] | None = None) -> None:
        """Ship until ``stop()``; retry PostgreSQL failures with capped backoff."""
        backoff = 0.1
        while not self._stop.is_set():
            try:
                result = self.ship_once()
            except (psycopg.Error, OSError, RecordEncodingError) as e:
                self.metrics.ship_errors.inc()
                log.warning("audit shipper: %s; retrying in %.1fs", type(e).__name__, backoff)
                if on_error is not None:
                    on_error(e)
                self._drop_connection()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.settings.max_backoff_seconds)
                continue
            backoff = 0.1
            try:
                self.compact()  # under constant load too, or the spool fills up
            except OSError as e:
                self.metrics.ship_errors.inc()
                log.warning("audit shipper: compaction failed (%s); retrying", e)
            if self._unsettled:
                self._settle_or_retry_later()
            if result.records == 0 and not result.moved:
                self._stop.wait(self.settings.poll_seconds)

    def stop(self) -> None:
        """Ask ``run`` to return after the batch in flight."""
        self._stop.set()

    def _drop_connection(self) -> None:
        for lane in self._lanes:
            lane.drop()

    def close(self) -> None:
        """Close the connection and release the shipper lock."""
        self._drop_connection()
        self._lock_cm.__exit__(None, None, None)
