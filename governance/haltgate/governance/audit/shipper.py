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
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg

from haltgate.governance.audit.metrics import AuditMetrics
from haltgate.governance.audit.record import ChainHead
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
    "COLUMNS",
    "DEFAULT_BATCH_RECORDS",
    "RecordEncodingError",
    "ShipResult",
    "Shipper",
    "ShipperSettings",
    "copy_frames",
    "copy_frames_direct",
    "copy_row",
    "ts_micros",
]

log = logging.getLogger("haltgate.audit.shipper")

COLUMNS = (
    "record_id",
    "ts",
    "seq",
    "chain_id",
    "prev_hash",
    "hash",
    "decision_id",
    "phase",
    "namespace",
    "workload",
    "pod",
    "run_id",
    "kind",
    "target",
    "model",
    "tool",
    "decision",
    "failure_type",
    "code",
    "cost_usd",
    "latency_ms",
    "status",
    "record",
)
"""Columns of haltgate.audit_records the shipper writes, in COPY order (fixed-width ones
first: ``copy_row`` packs them with one struct call)."""
_COLS = ", ".join(COLUMNS)
_COPY_DIRECT = f"COPY haltgate.audit_records ({_COLS}) FROM STDIN (FORMAT BINARY)"
_STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS haltgate_audit_stage"
    " (LIKE haltgate.audit_records INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
_COPY_STAGE = f"COPY haltgate_audit_stage ({_COLS}) FROM STDIN (FORMAT BINARY)"
_MOVE = (
    f"INSERT INTO haltgate.audit_records ({_COLS}) SELECT {_COLS}"
    " FROM haltgate_audit_stage ON CONFLICT DO NOTHING"
)
_PROGRESS = (
    'SELECT segment, "offset" FROM haltgate.audit_ship_progress WHERE spool_id = %s FOR UPDATE'
)
# Only ever forward: a shipper resuming from an older local acknowledgement must not move
# the recorded progress back.
_SET_PROGRESS = """
INSERT INTO haltgate.audit_ship_progress AS p (spool_id, segment, "offset")
VALUES (%s, %s, %s)
ON CONFLICT (spool_id) DO UPDATE
SET segment = EXCLUDED.segment, "offset" = EXCLUDED."offset", updated_at = now()
WHERE (p.segment, p."offset") < (EXCLUDED.segment, EXCLUDED."offset")
"""

# PostgreSQL's binary COPY format: a signature, then per row a 16-bit field count and per
# field a 32-bit length (-1 for NULL) and the value in the type's binary send format; a
# field count of -1 ends the data.
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # + flags and header extension length
_TRAILER = b"\xff\xff"
_NULL = b"\xff\xff\xff\xff"
_int32 = struct.Struct(">i").pack
_FIXED = struct.Struct(">hi16siqiq").pack  # field count; record_id uuid; ts; seq
_float8 = struct.Struct(">id").pack  # length 8 + IEEE double (cost_usd, latency_ms)
_int4 = struct.Struct(">ii").pack  # length 4 + integer (status)
_LENGTHS = [_int32(n) for n in range(1024)]  # length prefixes of short texts, prebuilt
_PG_EPOCH_US = 946_684_800 * 1_000_000  # timestamptz counts microseconds from 2000-01-01


class RecordEncodingError(ValueError):
    """A spooled record cannot become a row of the audit table (a value out of the
    column's range). Records are type-checked when sealed, so this means a spool written by
    something else; the shipper stops at it and retries rather than skip it."""


def _text(value: str) -> bytes:
    data = value.encode("utf-8")
    n = len(data)
    return (_LENGTHS[n] if n < 1024 else _int32(n)) + data


def ts_micros(when: float) -> int:
    """``ts`` of a record: microseconds since 2000-01-01 UTC, rounded the way
    ``datetime.timedelta`` (and PostgreSQL parsing a microsecond timestamp) does, so every
    path gives a re-shipped record the same primary key ``(ts, record_id)``."""
    td = timedelta(seconds=when)
    return (td.days * 86_400 + td.seconds) * 1_000_000 + td.microseconds - _PG_EPOCH_US


def _uuid_bytes(value: str) -> bytes:
    if len(value) == 36:
        raw = bytes.fromhex(value.replace("-", ""))
        if len(raw) == 16 and value.count("-") == 4:
            return raw
    try:
        return uuid.UUID(value).bytes  # braces, no hyphens, urn: prefix
    except ValueError:
        raise RecordEncodingError(
            f"audit record field record_id is not a UUID: {value!r}"
        ) from None


def copy_row(frame: Frame) -> bytes:
    """The COLUMNS of one spooled record as a row of PostgreSQL's binary COPY format.

    Binary rather than text: the server skips parsing 23 text fields (uuid, timestamp and
    float input functions are most of what it spends per row besides the indexes), the
    canonical JSON goes into ``record`` as the very bytes read from the spool (no decode,
    no escaping), and nothing needs escaping. Types were checked when the record was
    sealed (``record.check_types``); empty optional fields are NULL, ``target`` and
    ``decision`` always have a value."""
    d = orjson.loads(frame.data)
    g = d.get
    kind, model, tool, failure, code = (
        g("kind"),
        g("model"),
        g("tool"),
        g("failure_type"),
        g("code"),
    )
    cost, latency, status = g("cost_usd"), g("latency_ms"), g("status")
    record = frame.data
    n = len(record)
    try:
        return b"".join(
            (
                _FIXED(
                    len(COLUMNS),
                    16,
                    _uuid_bytes(d["record_id"]),
                    8,
                    ts_micros(frame.time),
                    8,
                    d["seq"],
                ),
                _text(d["chain_id"]),
                _text(d["prev_hash"]),
                _text(d["hash"]),
                _text(d["decision_id"]),
                _text(d["phase"]),
                _text(d["namespace"]),
                _text(d["workload"]),
                _text(d["pod"]),
                _text(d["run_id"]),
                _text(kind) if kind else _NULL,
                _text(g("target") or ""),
                _text(model) if model else _NULL,
                _text(tool) if tool else _NULL,
                _text(g("decision") or "allow"),
                _text(failure) if failure else _NULL,
                _text(code) if code else _NULL,
                _NULL if cost is None else _float8(8, cost),
                _NULL if latency is None else _float8(8, latency),
                _NULL if status is None else _int4(4, status),
                _LENGTHS[n] if n < 1024 else _int32(n),
                record,
            )
        )
    except (struct.error, OverflowError, TypeError, AttributeError) as e:
        raise RecordEncodingError(
            f"audit record in spool segment {frame.segment} at byte {frame.offset}: field "
            f"{_out_of_range(d)} does not fit its column ({e})"
        ) from None


_RANGES = (
    ("seq", -(2**63), 2**63),
    ("status", -(2**31), 2**31),
    ("cost_usd", -1.7e308, 1.7e308),
    ("latency_ms", -1.7e308, 1.7e308),
)


def _out_of_range(doc: dict[str, Any]) -> str:
    """The first numeric column whose value ``copy_row`` could not pack."""
    for name, low, high in _RANGES:
        value = doc.get(name)
        if value is not None and not (type(value) in (int, float) and low <= value < high):
            return name
    return "(unknown)"


DEFAULT_BATCH_RECORDS = 20_000
"""Default ``ShipperSettings.batch_records``."""

_COPY_CHUNK = 500
"""Records per COPY write: PostgreSQL parses and indexes one chunk (on another core) while
we format the next, instead of waiting for the whole batch."""


def _copy(cur: psycopg.Cursor[Any], sql: str, frames: Sequence[Frame]) -> None:
    with cur.copy(sql) as copy:
        copy.write(_SIGNATURE)
        for start in range(0, len(frames), _COPY_CHUNK):
            copy.write(b"".join(map(copy_row, frames[start : start + _COPY_CHUNK])))
        copy.write(_TRAILER)


def copy_frames(conn: psycopg.Connection[Any], frames: Sequence[Frame]) -> int:
    """Insert ``frames`` idempotently (staging table + ON CONFLICT DO NOTHING) in the
    current transaction; return how many were new."""
    conn.execute(_STAGE_DDL)
    with conn.cursor() as cur:
        _copy(cur, _COPY_STAGE, frames)
        cur.execute(_MOVE)
        return max(cur.rowcount, 0)


def copy_frames_direct(conn: psycopg.Connection[Any], frames: Sequence[Frame]) -> int:
    """COPY ``frames`` straight into the table (fails with UniqueViolation on a record that
    is already there); return how many were inserted."""
    with conn.cursor() as cur:
        _copy(cur, _COPY_DIRECT, frames)
    return len(frames)


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


@dataclass(frozen=True, slots=True)
class ShipResult:
    """What one ``ship_once`` moved."""

    records: int
    inserted: int
    position: SpoolPosition
    moved: bool = False
    """The acknowledged position advanced (records, or only a segment checkpoint)."""


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
        self._unsettled = False
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

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self.settings.dsn,
                connect_timeout=self.settings.connect_timeout_seconds,
                application_name="haltgate-audit-shipper",
            )
            self._partitions.clear()
        return self._conn

    def _ensure_partitions(
        self, conn: psycopg.Connection[Any], months: set[tuple[int, int]]
    ) -> None:
        for year, month in sorted(months - self._partitions):
            conn.execute(
                "SELECT haltgate.audit_ensure_partition(%s)",
                (datetime(year, month, 1, tzinfo=UTC),),
            )
            self._partitions.add((year, month))

    def _insert(self, frames: Sequence[Frame], end: SpoolPosition) -> int:
        """Commit ``frames`` (ending at ``end``) and the spool's progress in one transaction.

        Frames the recorded progress already covers (committed before a crash that lost
        the local acknowledgement) are skipped, so the rest can be COPY'd straight into the
        table. Should one still be there (progress lost, a restored spool copy), the batch
        is redone through the staging table with ON CONFLICT DO NOTHING."""
        conn = self._connection()
        try:
            with conn.transaction():
                self._ensure_partitions(conn, _months(frames))
                row = conn.execute(_PROGRESS, (self.spool_id,)).fetchone()
                done = SpoolPosition(int(row[0]), int(row[1])) if row else None
                todo = [
                    f for f in frames if done is None or SpoolPosition(f.segment, f.offset) >= done
                ]
                inserted = 0
                if todo:
                    try:
                        with conn.transaction():  # savepoint: a conflict undoes only this
                            inserted = copy_frames_direct(conn, todo)
                    except psycopg.errors.UniqueViolation:
                        log.warning(
                            "audit shipper: %d records partly shipped before; "
                            "inserting with ON CONFLICT DO NOTHING",
                            len(todo),
                        )
                        inserted = copy_frames(conn, todo)
                conn.execute(_SET_PROGRESS, (self.spool_id, end.segment, end.offset))
                return inserted
        except BaseException:
            self._partitions.clear()  # rolled back with the transaction
            raise

    # ---------------------------------------------------------------- loop

    def ship_once(self) -> ShipResult:
        """Ship one batch (maybe empty). Raises psycopg errors; nothing is acked then."""
        frames, pos = self._next_frames()
        inserted = 0
        try:
            if frames:
                inserted = self._insert(frames, pos)
                self.metrics.records_shipped.inc(len(frames))
        finally:
            # On failure too: during an outage the lag metric is what shows it.
            self._update_lag(frames[0].time if frames else None)
        moved = pos != self.position
        if moved:
            self._ack(pos)
        if len(frames) < self.settings.batch_records:
            self.metrics.ship_lag_seconds.set(0)  # caught up
        return ShipResult(len(frames), inserted, self.position, moved)

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
