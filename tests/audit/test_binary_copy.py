"""The shipper's binary COPY: every column lands exactly as the sealed record says."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import psycopg
import pytest

from haltgate.governance.audit import SpoolAuditSink
from haltgate.governance.audit.binary_copy import (
    COLUMNS,
    RecordEncodingError,
    copy_row,
    ts_micros,
)
from haltgate.governance.audit.record import Chainer
from haltgate.governance.audit.shipper import Shipper, ShipperSettings
from haltgate.governance.audit.spool import Frame, iter_frames, list_segments, segment_path
from haltgate.governance.audit.verify import verify_database
from tests.audit.conftest import AuditDatabase
from tests.audit.helpers import BASE_TIME, make_record

UNICODE = "naïve 日本語 עברית 🛑 e\u0301 \u200b\u2028 \\N \\ \t tab \n nl \r cr"


def _ship(spool: Path, db: AuditDatabase, records: list[object]) -> list[bytes]:
    """Spool ``records`` (with fsync), ship them all; return the spooled lines in order."""
    sink = SpoolAuditSink(spool)
    lines = []
    for record in records:
        sink.append_blocking(record)  # type: ignore[arg-type]
    sink.close_blocking()
    for number in list_segments(spool):
        frames, _, _ = iter_frames(segment_path(spool, number).read_bytes(), number)
        lines.extend(f.data for f in frames if not f.is_checkpoint)
    shipper = Shipper(ShipperSettings(spool, db.writer))
    try:
        assert shipper.drain(timeout=60) == len(records)
    finally:
        shipper.close()
    return lines


def test_every_column_round_trips_exactly(tmp_path: Path, audit_db: AuditDatabase) -> None:
    big = "x" * 300_000 + UNICODE  # a record far over the 1 KiB prebuilt length prefixes
    records = [
        make_record(
            0,
            target=UNICODE,
            tool=UNICODE,
            model="模型",
            code="\\N",
            status=-1,
            cost_usd=0.1 + 0.2,
            latency_ms=1e-300,
            run=UNICODE,
        ),
        make_record(
            1,
            kind=None,
            model=None,
            tool=None,
            failure_type=None,
            code=None,
            cost_usd=None,
            latency_ms=None,
            status=None,
        ),
        make_record(
            2,
            status=2**31 - 1,
            cost_usd=0,
            latency_ms=1.7976931348623157e308,
            payload_mode="full",
            payload={"text": big, "nul": "\x00"},
        ),
        make_record(3, time=BASE_TIME + 0.0000005, status=200),  # half a microsecond
    ]
    _ship(tmp_path, audit_db, records)
    with psycopg.connect(audit_db.reader) as conn:
        rows = conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM haltgate.audit_records ORDER BY decision_id"
        ).fetchall()
    assert len(rows) == len(records)
    for row, record in zip(rows, records, strict=True):
        got = dict(zip(COLUMNS, row, strict=True))
        doc = orjson.loads(got["record"])
        assert doc["decision_id"] == record.decision_id  # type: ignore[attr-defined]
        assert str(got["record_id"]) == doc["record_id"]
        assert got["ts"] == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=doc["time"])
        for name in (
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
            "model",
            "tool",
            "failure_type",
            "code",
            "cost_usd",
            "latency_ms",
            "status",
        ):
            assert got[name] == doc.get(name), name
            assert (
                type(got[name]) is type(doc.get(name))
                or got[name] is None
                or isinstance(got[name], float)
            ), name
        assert got["target"] == (doc.get("target") or "")
        assert got["decision"] == (doc.get("decision") or "allow")
    assert rows[2][COLUMNS.index("record")].endswith("}")
    assert orjson.loads(rows[2][COLUMNS.index("record")])["payload"]["text"] == big
    assert verify_database(audit_db.reader).ok  # the hash chain over the stored text


def test_record_column_is_the_spooled_bytes(tmp_path: Path, audit_db: AuditDatabase) -> None:
    lines = _ship(tmp_path, audit_db, [make_record(i, target=UNICODE) for i in range(3)])
    with psycopg.connect(audit_db.reader) as conn:
        stored = [
            r[0]
            for r in conn.execute(
                "SELECT convert_to(record, 'UTF8') FROM haltgate.audit_records ORDER BY seq"
            )
        ]
    assert stored == lines


@pytest.mark.parametrize(
    "when",
    [
        BASE_TIME,
        BASE_TIME + 0.0000005,
        BASE_TIME + 0.0000015,
        BASE_TIME + 0.123456789,
        0.0,
        946_684_799.9999995,
    ],
)
def test_ts_matches_what_the_text_format_gave(audit_db: AuditDatabase, when: float) -> None:
    """Records shipped by the former text COPY keep the same primary key when re-shipped."""
    text = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=when)).isoformat()
    with psycopg.connect(audit_db.reader) as conn:
        row = conn.execute(
            "SELECT (extract(epoch FROM %s::timestamptz - "
            "'2000-01-01 00:00:00+00') * 1000000)::bigint",
            (text,),
        ).fetchone()
    assert row is not None and row[0] == ts_micros(when)


def test_ts_rounds_exactly_like_timedelta() -> None:
    """``ts_micros`` computes what ``timedelta(seconds=when)`` gives without building one: on
    random times, times on and next to half microseconds, and negative ones."""
    rng = random.Random(20261207)
    values = [0.0, 5e-7, 1.5e-6, -5e-7, -1.5e-6, 946_684_799.9999995, BASE_TIME + 2.5e-6]
    for _ in range(20_000):
        micros = rng.randrange(0, 4 * 10**15)
        half = (micros + 0.5) / 1e6
        values += [
            rng.uniform(0, 4e9),
            rng.uniform(-1e9, 0),
            micros / 1e6,
            half,
            math.nextafter(half, 0.0),
            math.nextafter(half, 1e12),
        ]
    for when in values:
        td = timedelta(seconds=when)
        expected = (td.days * 86_400 + td.seconds) * 1_000_000 + td.microseconds
        assert ts_micros(when) == expected - 946_684_800 * 1_000_000, when


def _frame(**overrides: object) -> Frame:
    """A spooled frame of a sealed record, with ``overrides`` written into its JSON (values
    ``check_types`` would not let a sealed record carry)."""
    _, line = Chainer().seal(make_record(0))
    doc = orjson.loads(line)
    doc.update(overrides)
    return Frame(3, 4096, 5000, BASE_TIME, json.dumps(doc).encode())


def test_a_value_out_of_its_column_range_is_a_typed_error_naming_the_field() -> None:
    with pytest.raises(RecordEncodingError, match=r"segment 3 at byte 4096: field status"):
        copy_row(_frame(status=2**31))
    with pytest.raises(RecordEncodingError, match="field seq"):
        copy_row(_frame(seq=2**63))


def test_a_record_id_that_is_no_uuid_is_a_typed_error() -> None:
    with pytest.raises(RecordEncodingError, match="record_id is not a UUID"):
        copy_row(_frame(record_id="not-a-uuid"))
    braces = "{12345678-1234-4234-8234-123456789abc}"
    fixed = 2 + 4 + 16  # field count, then the uuid's length and 16 bytes
    assert (
        copy_row(_frame(record_id=braces))[:fixed]
        == copy_row(_frame(record_id=braces[1:-1]))[:fixed]
    )
