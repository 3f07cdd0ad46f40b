"""Ship spooled records to PostgreSQL: COPY in batches, idempotent, in spool order.

One shipper per spool (``shipper.lock``). Each batch is copied into a temporary staging
table and moved with ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` in one transaction;
only after that commit is the spool position acknowledged (``shipped.json``, atomic). A
crash between the commit and the acknowledgement re-ships the batch on restart and the
conflict clause drops the copies: no loss, no duplicates. Batches leave in spool order, so a
chain's records reach the table in sequence order.

While PostgreSQL is unreachable the shipper retries with capped backoff and the spool
grows; ``haltgate_audit_ship_lag_seconds`` shows how far behind it is. Fully shipped
segments are removed after their chain heads are folded into ``heads.json``.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg

from haltgate.governance.audit.metrics import AuditMetrics
from haltgate.governance.audit.sink import AuditUnavailableError
from haltgate.governance.audit.spool import (
    HEADS_FILE,
    SHIPPED_FILE,
    Frame,
    SpoolPosition,
    flocked,
    iter_frames,
    list_segments,
    read_durable,
    read_heads,
    segment_path,
    settle,
    spool_bytes,
    write_json_atomic,
)

__all__ = ["ShipResult", "Shipper", "ShipperSettings", "copy_frames", "copy_payload"]

log = logging.getLogger("haltgate.audit.shipper")

_STAGE_DDL = """
CREATE TEMP TABLE IF NOT EXISTS haltgate_audit_stage (record text, epoch double precision)
ON COMMIT DELETE ROWS
"""
_COPY = "COPY haltgate_audit_stage (record, epoch) FROM STDIN (FORMAT BINARY)"
# JSON is parsed inside PostgreSQL (C, in the server process): the shipper only frames bytes,
# which is what lets one Python process feed the database at its own speed.
_MOVE = """
INSERT INTO haltgate.audit_records (
  record_id, ts, chain_id, seq, prev_hash, hash, decision_id, phase, namespace, workload,
  pod, run_id, kind, target, model, tool, decision, failure_type, code, cost_usd,
  latency_ms, status, record)
SELECT (j->>'record_id')::uuid, to_timestamp(epoch), j->>'chain_id', (j->>'seq')::bigint,
  j->>'prev_hash', j->>'hash', j->>'decision_id', j->>'phase', j->>'namespace',
  j->>'workload', j->>'pod', j->>'run_id', j->>'kind', coalesce(j->>'target', ''),
  j->>'model', j->>'tool', coalesce(j->>'decision', 'allow'), j->>'failure_type',
  j->>'code', (j->>'cost_usd')::double precision, (j->>'latency_ms')::double precision,
  (j->>'status')::integer, record
-- OFFSET 0 keeps the subquery from being flattened: otherwise the cast to jsonb is
-- repeated for every column that reads j (20 parses per row instead of one).
FROM (SELECT record, epoch, record::jsonb AS j FROM haltgate_audit_stage OFFSET 0) AS staged
ON CONFLICT DO NOTHING
"""
_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_BINARY_TRAILER = struct.pack(">h", -1)
_TUPLE = struct.Struct(">hi")
_FLOAT8 = struct.Struct(">id")


def copy_payload(frames: Sequence[Frame]) -> bytes:
    """PostgreSQL binary COPY data of ``(record text, epoch float8)`` rows."""
    parts = [_BINARY_HEADER]
    append = parts.append
    for frame in frames:
        append(_TUPLE.pack(2, len(frame.data)))
        append(frame.data)
        append(_FLOAT8.pack(8, frame.time))
    append(_BINARY_TRAILER)
    return b"".join(parts)


def copy_frames(conn: psycopg.Connection[Any], frames: Sequence[Frame]) -> int:
    """Stage and insert ``frames`` in the current transaction; return how many were new."""
    conn.execute(_STAGE_DDL)
    with conn.cursor() as cur:
        with cur.copy(_COPY) as copy:
            copy.write(copy_payload(frames))
        cur.execute(_MOVE)
        return max(cur.rowcount, 0)


@dataclass(frozen=True, slots=True)
class ShipperSettings:
    """How the shipper runs."""

    directory: Path
    """The spool directory (shared with the writer)."""
    dsn: str
    """libpq connection string of a role in ``haltgate_audit_writer``."""
    batch_records: int = 5000
    """Records per COPY transaction (at most)."""
    poll_seconds: float = 0.2
    """Sleep when caught up (seconds)."""
    max_backoff_seconds: float = 5.0
    """Longest wait between retries while PostgreSQL fails (seconds)."""
    connect_timeout_seconds: int = 5
    """libpq connect_timeout (seconds)."""


@dataclass(frozen=True, slots=True)
class ShipResult:
    """What one ``ship_once`` moved."""

    records: int
    inserted: int
    position: SpoolPosition


def _months(frames: Sequence[Frame]) -> set[tuple[int, int]]:
    months = set()
    for when in {int(f.time) // 86400 for f in frames}:  # days first: few conversions
        day = datetime.fromtimestamp(when * 86400, UTC)
        months.add((day.year, day.month))
    return months


class Shipper:
    """Moves records from one spool directory to PostgreSQL. ``run`` until ``stop``."""

    def __init__(self, settings: ShipperSettings, metrics: AuditMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else AuditMetrics()
        self._dir = Path(settings.directory)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._lock_cm = flocked(self._dir / "shipper.lock", blocking=False)
        self._lock_cm.__enter__()
        self._conn: psycopg.Connection[Any] | None = None
        self._partitions: set[tuple[int, int]] = set()
        self._stop = threading.Event()
        self.position = self._read_position()
        self.settle_orphaned()

    def settle_orphaned(self) -> bool:
        """If no writer is alive, recover the spool and make it durable (what a starting
        writer does), so records a crashed sidecar left behind get shipped. True if done."""
        try:
            with flocked(self._dir / "writer.lock", blocking=False):
                settle(self._dir, self.metrics)
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
        write_json_atomic(self._dir / SHIPPED_FILE,
                          {"segment": position.segment, "offset": position.offset})
        self.position = position

    # ---------------------------------------------------------------- reading

    def _next_frames(self) -> tuple[list[Frame], SpoolPosition]:
        """Up to ``batch_records`` complete frames after the acknowledged position."""
        limit = self.settings.batch_records
        frames: list[Frame] = []
        pos = self.position
        durable = read_durable(self._dir)
        if durable is None:
            return frames, pos
        # Never ship past the durable mark: a record the writer has written but not yet
        # fsync'd may still vanish in a power loss and its sequence number be reused.
        segments = [n for n in list_segments(self._dir) if pos.segment <= n <= durable.segment]
        for index, number in enumerate(segments):
            newest = index == len(segments) - 1
            start = pos.offset if number == pos.segment else 0
            try:
                with segment_path(self._dir, number).open("rb") as f:
                    f.seek(start)
                    if number == durable.segment:
                        data = f.read(max(durable.offset - start, 0))
                    else:
                        data = f.read()
            except FileNotFoundError:
                break
            parsed, stop, reason = iter_frames(data, number, base=start)
            take = parsed[: limit - len(frames)]
            frames.extend(take)
            if take:
                pos = SpoolPosition(number, take[-1].end)
            if len(frames) >= limit:
                break
            if reason is not None:
                if not newest:
                    # A bad frame in an older segment: the writer repairs it when it
                    # restarts; shipping past it would lose the records behind it.
                    log.error("audit shipper: %s in segment %d at byte %d; waiting for the "
                              "writer to repair it", reason, number, stop)
                # In the newest segment it is a write in progress: ship it next time.
                break
            if newest:
                break
            pos = SpoolPosition(segments[index + 1], 0)  # this segment is complete
        return frames, pos

    # ---------------------------------------------------------------- PostgreSQL

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self.settings.dsn,
                connect_timeout=self.settings.connect_timeout_seconds,
                application_name="haltgate-audit-shipper",
            )
            self._partitions.clear()
        return self._conn

    def _ensure_partitions(self, conn: psycopg.Connection[Any],
                           months: set[tuple[int, int]]) -> None:
        for year, month in sorted(months - self._partitions):
            conn.execute("SELECT haltgate.audit_ensure_partition(%s)",
                         (datetime(year, month, 1, tzinfo=UTC),))
            self._partitions.add((year, month))

    def _insert(self, frames: Sequence[Frame]) -> int:
        conn = self._connection()
        try:
            with conn.transaction():
                self._ensure_partitions(conn, _months(frames))
                return copy_frames(conn, frames)
        except BaseException:
            self._partitions.clear()  # rolled back with the transaction
            raise

    # ---------------------------------------------------------------- loop

    def ship_once(self) -> ShipResult:
        """Ship one batch (maybe empty). Raises psycopg errors; nothing is acked then."""
        frames, pos = self._next_frames()
        inserted = 0
        if frames:
            inserted = self._insert(frames)
            self.metrics.records_shipped.inc(len(frames))
        if pos != self.position:
            self._ack(pos)
        self._update_lag(frames)
        return ShipResult(len(frames), inserted, self.position)

    def _update_lag(self, shipped: Sequence[Frame]) -> None:
        backlog = max(spool_bytes(self._dir) - self.position.offset, 0)
        self.metrics.ship_backlog_bytes.set(backlog)
        if not shipped or len(shipped) < self.settings.batch_records:
            self.metrics.ship_lag_seconds.set(0)
        else:
            self.metrics.ship_lag_seconds.set(max(time.time() - shipped[-1].time, 0.0))

    def compact(self) -> int:
        """Remove fully shipped segments, folding their chain heads into heads.json."""
        done = [n for n in list_segments(self._dir) if n < self.position.segment]
        if not done:
            return 0
        with flocked(self._dir / "compact.lock"):
            heads = {c: {"seq": h.seq, "hash": h.hash} for c, h in read_heads(self._dir).items()}
            for number in done:
                data = segment_path(self._dir, number).read_bytes()
                frames, _, _ = iter_frames(data, number)
                for frame in frames:
                    d = orjson.loads(frame.data)
                    heads[d["chain_id"]] = {"seq": d["seq"], "hash": d["hash"]}
            write_json_atomic(self._dir / HEADS_FILE, heads)
            for number in done:
                os.unlink(segment_path(self._dir, number))
        return len(done)

    def drain(self, timeout: float = 60.0) -> int:
        """Ship until nothing is left (or ``timeout`` seconds); return records shipped."""
        self.settle_orphaned()
        total = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.ship_once()
            total += result.records
            if result.records == 0:
                self.compact()
                return total
        raise TimeoutError(f"audit shipper: still records left after {timeout:.0f}s")

    def run(self, on_error: Callable[[BaseException], None] | None = None) -> None:
        """Ship until ``stop()``; retry PostgreSQL failures with capped backoff."""
        backoff = 0.1
        while not self._stop.is_set():
            try:
                result = self.ship_once()
            except (psycopg.Error, OSError) as e:
                self.metrics.ship_errors.inc()
                log.warning("audit shipper: %s; retrying in %.1fs", type(e).__name__, backoff)
                if on_error is not None:
                    on_error(e)
                self._drop_connection()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.settings.max_backoff_seconds)
                continue
            backoff = 0.1
            if result.records < self.settings.batch_records:
                self.compact()
                self._stop.wait(self.settings.poll_seconds)

    def stop(self) -> None:
        """Ask ``run`` to return after the batch in flight."""
        self._stop.set()

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None

    def close(self) -> None:
        """Close the connection and release the shipper lock."""
        self._drop_connection()
        self._lock_cm.__exit__(None, None, None)
