"""Spooled records as rows of PostgreSQL's binary COPY format, and the COPY statements.

Binary rather than text: the server skips parsing the uuid, timestamp and float fields, the
canonical JSON goes into ``record`` as the very bytes read from the spool, and nothing needs
escaping. ``copy_frames_direct`` COPYs straight into the table; ``copy_frames`` goes through
a staging table with ``INSERT ... ON CONFLICT DO NOTHING`` (idempotent).
"""

from __future__ import annotations

import math
import struct
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg

from haltgate.governance.audit.columns import FIELD_COLUMNS
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

COLUMNS = (
    "record_id",
    "ts",
    "seq",
    "chain_id",
    *FIELD_COLUMNS,
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


_SHORT: dict[str, bytes] = {}
"""Encoded (length-prefixed) values of the columns that repeat from record to record:
names of the agent, run, chain, target, model, tool, decision, codes. A batch of 20,000
records carries a few hundred distinct ones; looking them up skips the encode and the
concatenation. Bounded: cleared when full."""
_SHORT_MAX = 8192


def _short(value: str) -> bytes:
    encoded = _text(value)
    if len(_SHORT) >= _SHORT_MAX:
        _SHORT.clear()
    _SHORT[value] = encoded
    return encoded


def ts_micros(when: float) -> int:
    """``ts`` of a record: microseconds since 2000-01-01 UTC, rounded the way
    ``datetime.timedelta(seconds=when)`` (and PostgreSQL parsing a microsecond timestamp)
    does, so every path gives a re-shipped record the same primary key ``(ts, record_id)``.

    Computed as timedelta does it, without building one (a third of the time): the whole
    seconds exactly, plus the fraction times 10**6 rounded half to even in double
    precision (tests/audit/test_binary_copy.py compares the two on 120,000 values)."""
    fraction, whole = math.modf(when)
    return int(whole) * 1_000_000 + round(fraction * 1e6) - _PG_EPOCH_US


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
    d = record_fields(frame.data)  # without the replay inputs, which no column needs
    g = d.get
    c = _SHORT.get
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
        chain, phase, namespace, workload, pod, run = (
            d["chain_id"],
            d["phase"],
            d["namespace"],
            d["workload"],
            d["pod"],
            d["run_id"],
        )
        target, decision = g("target") or "", g("decision") or "allow"
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
                c(chain) or _short(chain),
                _text(d["prev_hash"]),
                _text(d["hash"]),
                _text(d["decision_id"]),
                c(phase) or _short(phase),
                c(namespace) or _short(namespace),
                c(workload) or _short(workload),
                c(pod) or _short(pod),
                c(run) or _short(run),
                (c(kind) or _short(kind)) if kind else _NULL,
                c(target) or _short(target),
                (c(model) or _short(model)) if model else _NULL,
                (c(tool) or _short(tool)) if tool else _NULL,
                c(decision) or _short(decision),
                (c(failure) or _short(failure)) if failure else _NULL,
                (c(code) or _short(code)) if code else _NULL,
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


_COPY_CHUNK = 500
"""Records per COPY write: PostgreSQL parses and indexes one chunk (on another core) while
we format or join the next, instead of waiting for the whole batch."""


def encode_chunks(frames: Sequence[Frame]) -> list[bytes]:
    """The COPY data of ``frames`` as the writes ``_copy`` makes: ``copy_row`` of each,
    joined ``_COPY_CHUNK`` at a time (while the rows are still in the cache). The shipper's
    read-ahead thread does this while the previous batch is in PostgreSQL."""
    return [
        b"".join(map(copy_row, frames[start : start + _COPY_CHUNK]))
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
