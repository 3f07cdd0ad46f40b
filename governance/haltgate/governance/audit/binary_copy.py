"""Spooled records as rows of PostgreSQL's binary COPY format, and the COPY statements.

Binary rather than text: the server skips parsing the uuid, timestamp and float fields, the
canonical JSON goes into ``record`` as the very bytes read from the spool, and nothing needs
escaping. ``copy_frames_direct`` COPYs straight into the table; ``copy_frames`` goes through
a staging table with ``INSERT ... ON CONFLICT DO NOTHING`` (idempotent).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import psycopg

from haltgate.governance.audit.copy_rows import (
    COLUMNS,
    RecordEncodingError,
    row_from_fields,
    ts_micros,
)
from haltgate.governance.audit.record_fields import record_fields
from haltgate.governance.audit.spool import Frame

__all__ = [
    "COLUMNS",
    "RecordEncodingError",
    "copy_frames",
    "copy_frames_direct",
    "copy_row",
    "encode_chunks",
    "ts_micros",
]

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

# PostgreSQL's binary COPY format: a signature, then the rows (audit/copy_rows.py); a
# field count of -1 ends the data.
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # + flags and header extension length
_TRAILER = b"\xff\xff"


def copy_row(frame: Frame) -> bytes:
    """The COLUMNS of one spooled record as a row of PostgreSQL's binary COPY format.

    A frame of format 2 carries its row, encoded by the spool writer when it sealed the
    record (audit/copy_rows.py): taken as it is. A frame of format 1 (written before) is
    encoded here from its JSON: the record's canonical JSON goes into ``record`` as the
    very bytes read from the spool (no decode, no escaping)."""
    row = frame.row
    if row is not None:
        return row
    d = record_fields(frame.data)  # without the replay inputs, which no column needs
    try:
        return row_from_fields(d, frame.time, frame.data)
    except (struct.error, OverflowError, TypeError, AttributeError, KeyError) as e:
        raise RecordEncodingError(
            f"audit record in spool segment {frame.segment} at byte {frame.offset}: field "
            f"{_out_of_range(d)} does not fit its column ({e})"
        ) from None
    except RecordEncodingError as e:
        raise RecordEncodingError(
            f"audit record in spool segment {frame.segment} at byte {frame.offset}: {e}"
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


_COPY_CHUNK = 500
"""Records per COPY write: PostgreSQL parses and indexes one chunk (on another core) while
we format or join the next, instead of waiting for the whole batch."""


def encode_chunks(frames: Sequence[Frame]) -> list[bytes]:
    """The COPY data of ``frames`` as the writes ``_copy`` makes: ``copy_row`` of each,
    joined ``_COPY_CHUNK`` at a time (while the rows are still in the cache). The shipper's
    read-ahead thread does this while the previous batch is in PostgreSQL."""
    return [
        b"".join(
            [
                f.row if f.row is not None else copy_row(f)
                for f in frames[start : start + _COPY_CHUNK]
            ]
        )
        for start in range(0, len(frames), _COPY_CHUNK)
    ]


def _copy(
    cur: psycopg.Cursor[Any], sql: str, frames: Sequence[Frame], chunks: Sequence[bytes] | None
) -> None:
    with cur.copy(sql) as copy:
        copy.write(_SIGNATURE)
        if chunks is None:
            for start in range(0, len(frames), _COPY_CHUNK):
                copy.write(b"".join(map(copy_row, frames[start : start + _COPY_CHUNK])))
        else:
            for chunk in chunks:
                copy.write(chunk)
        copy.write(_TRAILER)


def copy_frames(
    conn: psycopg.Connection[Any], frames: Sequence[Frame], chunks: Sequence[bytes] | None = None
) -> int:
    """Insert ``frames`` idempotently (staging table + ON CONFLICT DO NOTHING) in the
    current transaction; return how many were new. ``chunks``: their ``encode_chunks``,
    when already encoded."""
    conn.execute(_STAGE_DDL)
    with conn.cursor() as cur:
        _copy(cur, _COPY_STAGE, frames, chunks)
        cur.execute(_MOVE)
        return max(cur.rowcount, 0)


def copy_frames_direct(
    conn: psycopg.Connection[Any], frames: Sequence[Frame], chunks: Sequence[bytes] | None = None
) -> int:
    """COPY ``frames`` straight into the table (fails with UniqueViolation on a record that
    is already there); return how many were inserted. ``chunks`` as for ``copy_frames``."""
    with conn.cursor() as cur:
        _copy(cur, _COPY_DIRECT, frames, chunks)
    return len(frames)
