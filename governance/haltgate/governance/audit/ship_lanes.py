"""The shipper's batch transactions, and the lanes (connections) they run on.

A batch is COPY'd in one transaction that also moves the spool's recorded progress
(``haltgate.audit_ship_progress``). The shipper may keep two batches in flight on two
connections ("lanes"), so PostgreSQL inserts and indexes them on two server processes at
once. They stay in spool order and exactly-once because of the progress row:

- the **leader** (the first batch of a round) locks the progress row first
  (``SELECT ... FOR UPDATE``), cuts what it already records as shipped, COPYs, and moves
  it to the batch's end;
- a **follower** (the batch right after it, on another connection) starts once the leader
  holds the progress row, COPYs, and locks the progress row only at the end: that waits
  until the leader's transaction ends (started earlier, a follower whose COPY finished
  before the leader took the row would find it unmoved and roll back for nothing). It
  commits only if the progress is then exactly where the follower starts, i.e. the leader
  committed; otherwise (the leader failed, or the progress is elsewhere) it rolls back
  (``BatchSuperseded``) and its records are read again. So no follower commits records
  behind a gap, and commits land in spool order. A record already in the table (a lost
  progress row) takes the same savepoint and ``ON CONFLICT`` way as in a leader.

Waits only ever point backwards (follower on leader), so the two cannot deadlock. For that
a follower never creates a partition: creating one locks the table until commit, and the
leader's COPY would wait on that while the follower waits on the leader. The shipper runs
a follower only when its months' partitions are known to exist.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from haltgate.governance.audit.binary_copy import copy_frames, copy_frames_direct
from haltgate.governance.audit.spool import Frame, SpoolPosition

__all__ = ["Batch", "BatchSuperseded", "Lane", "months"]

log = logging.getLogger("haltgate.audit.shipper")

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

# Records over ~2 KB (an LLM intent with its replay inputs) are compressed by PostgreSQL's
# TOAST code as they are inserted. With the default pglz that doubled the server's CPU per
# row (31 instead of 16 us for a 2.5 KB intent, PostgreSQL 15; bench/audit.py --replay);
# lz4 fills the same pages for a fraction of the CPU. The method is chosen per value when
# it is written (columns left at their default follow the session's setting), recorded
# with the value and read back by any session, so the shipper's session can choose it
# alone: no schema change.
_HAS_LZ4 = "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"


class BatchSuperseded(Exception):
    """A follower batch was rolled back: the batch before it did not commit (or the
    recorded progress is not where the follower starts). Its records are read again."""


@dataclass(frozen=True, slots=True)
class Batch:
    """The frames of one COPY transaction, read from ``start`` up to ``end``."""

    start: SpoolPosition
    frames: list[Frame]
    end: SpoolPosition
    chunks: list[bytes] | None = None
    """``encode_chunks(frames)`` when encoded ahead; None: encoded while sent."""


def months(frames: Sequence[Frame]) -> set[tuple[int, int]]:
    """The (year, month) of the records' times: the partitions a batch needs."""
    found = set()
    for when in {int(f.time) // 86400 for f in frames}:  # days first: few conversions
        day = datetime.fromtimestamp(when * 86400, UTC)
        found.add((day.year, day.month))
    return found


class Lane:
    """One connection of the shipper, opened on first use and again after a failure."""

    def __init__(self, dsn: str, connect_timeout: int, toast_lz4: bool) -> None:
        self._dsn = dsn
        self._timeout = connect_timeout
        self._lz4 = toast_lz4
        self.conn: psycopg.Connection[Any] | None = None

    @property
    def fresh(self) -> bool:
        """No open connection: the next use connects."""
        return self.conn is None or self.conn.closed

    def connection(self) -> psycopg.Connection[Any]:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(
                self._dsn,
                connect_timeout=self._timeout,
                application_name="haltgate-audit-shipper",
            )
            if self._lz4:
                row = self.conn.execute(_HAS_LZ4).fetchone()
                if row is not None and row[0]:
                    self.conn.execute("SET default_toast_compression = lz4")
                self.conn.commit()
        return self.conn

    def drop(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except psycopg.Error:
                pass
            self.conn = None

    def ensure_partitions(self, wanted: set[tuple[int, int]], known: set[tuple[int, int]]) -> None:
        """Create the monthly partitions of ``wanted`` not in ``known`` (and add them)."""
        conn = self.connection()
        for year, month in sorted(wanted - known):
            conn.execute(
                "SELECT haltgate.audit_ensure_partition(%s)",
                (datetime(year, month, 1, tzinfo=UTC),),
            )
            known.add((year, month))

    def lead(
        self,
        spool: str,
        batch: Batch,
        known: set[tuple[int, int]],
        on_locked: Callable[[], None] | None = None,
    ) -> int:
        """Commit ``batch`` and the spool's progress (``batch.end``) in one transaction;
        return how many records were new.

        Frames the recorded progress already covers (committed before a crash that lost
        the local acknowledgement) are skipped, so the rest can be COPY'd straight into
        the table. Should one still be there (progress lost, a restored spool copy), the
        batch is redone through the staging table with ON CONFLICT DO NOTHING."""
        frames, end, chunks = batch.frames, batch.end, batch.chunks
        conn = self.connection()
        with conn.transaction():
            # Partitions before the progress row: a follower's COPY (a lock the partition's
            # creation waits for) then ends at that row without waiting for the leader,
            # rolls back (the progress is not yet where it starts), and the leader goes on.
            self.ensure_partitions(months(frames), known)
            row = conn.execute(_PROGRESS, (spool,)).fetchone()
            if on_locked is not None:
                on_locked()  # the followers start now: their progress lock waits for ours
            done = SpoolPosition(int(row[0]), int(row[1])) if row else None
            skip = 0  # frames are in spool order: the ones already shipped lead
            if done is not None:
                while skip < len(frames) and (frames[skip].segment, frames[skip].offset) < (
                    done.segment,
                    done.offset,
                ):
                    skip += 1
            todo = frames
            if skip:  # rare (see above): encode what is left while sending it
                todo, chunks = frames[skip:], None
            inserted = _copy(conn, todo, chunks)
            conn.execute(_SET_PROGRESS, (spool, end.segment, end.offset))
            return inserted

    def follow(self, spool: str, batch: Batch) -> int:
        """Commit ``batch`` after the leader's transaction, only if that one committed
        (module docstring); raise ``BatchSuperseded`` otherwise. Its partitions must exist."""
        conn = self.connection()
        try:
            with conn.transaction():
                inserted = _copy(conn, batch.frames, batch.chunks)
                row = conn.execute(_PROGRESS, (spool,)).fetchone()  # waits for the leader
                if row is None or SpoolPosition(int(row[0]), int(row[1])) != batch.start:
                    raise BatchSuperseded(f"recorded progress {row!r}, batch at {batch.start}")
                conn.execute(_SET_PROGRESS, (spool, batch.end.segment, batch.end.offset))
                return inserted
        except BatchSuperseded:
            log.debug("audit shipper: follower batch rolled back (the one before failed)")
            raise


def _copy(conn: psycopg.Connection[Any], frames: list[Frame], chunks: list[bytes] | None) -> int:
    """COPY straight in under a savepoint; a record already there redoes it idempotently."""
    if not frames:
        return 0
    try:
        with conn.transaction():  # savepoint: a conflict undoes only this
            return copy_frames_direct(conn, frames, chunks)
    except psycopg.errors.UniqueViolation:
        log.warning(
            "audit shipper: %d records partly shipped before; inserting with ON CONFLICT "
            "DO NOTHING",
            len(frames),
        )
        return copy_frames(conn, frames, chunks)
