"""Spool frame format 2: each frame carries its record's binary COPY row.

The writer encodes the row when it seals a record; the shipper sends it as it is. These
tests hold the two ends to one encoding (the row the writer stored is byte for byte the row
the shipper makes from the record's JSON, the way it ships format-1 frames), keep format-1
spools readable and shippable (a spool written before format 2, continued by a writer of
today), and check what the reader does with a torn or inconsistent format-2 frame.
"""

from __future__ import annotations

import math
import struct
import uuid
import zlib
from pathlib import Path

import orjson
import pytest

from haltgate.governance.audit import SpoolAuditSink
from haltgate.governance.audit.binary_copy import copy_row
from haltgate.governance.audit.record import Chainer
from haltgate.governance.audit.shipper import Shipper, ShipperSettings
from haltgate.governance.audit.sink import InvalidRecordError
from haltgate.governance.audit.spool import (
    MAGIC,
    MAGIC_V1,
    ROW_FLAG,
    Frame,
    SpoolPosition,
    checkpoint_frame,
    encode_durable,
    encode_frame,
    encode_row_frame,
    iter_frames,
    list_segments,
    segment_format,
    segment_path,
)
from haltgate.governance.audit.verify import verify_database
from tests.audit.conftest import AuditDatabase
from tests.audit.helpers import make_record

UNICODE = "naïve 日本語 🛑 e\u0301 \u2028 \\N \t tab \n nl"


def _variety() -> list[object]:
    """Records covering every way a column is encoded: NULL and empty optionals, texts
    over the 1 KiB prebuilt length prefixes, non-ASCII, int and float numbers, status at
    its bounds, replay inputs, chains set by the caller."""
    return [
        make_record(0),
        make_record(1, kind=None, model=None, tool=None, cost_usd=None, latency_ms=None),
        make_record(2, kind="", model="", tool="", failure_type="", code=""),
        make_record(3, decision="", target=""),
        make_record(4, target="GET https://h/" + "p" * 2000, model=UNICODE, tool=UNICODE),
        make_record(5, decision_id="d" * 1500, message=UNICODE, status=2**31 - 1),
        make_record(6, status=-(2**31), cost_usd=3, latency_ms=0),
        make_record(7, cost_usd=1e300, latency_ms=-0.0, status=200),
        make_record(8, replay={"v": 1, "stages": [{"stage": "budget", "result": "allow"}]}),
        make_record(9, chain_id="custom/chain", phase="outcome"),
        make_record(10, record_id=str(uuid.uuid4()).upper()),
        make_record(11, namespace=UNICODE, workload="w" * 1100, pod="p", run_id="r"),
        make_record(12, time=1_790_000_000),  # an int time
    ]


def _frames(spool: Path) -> list[Frame]:
    found: list[Frame] = []
    for number in list_segments(spool):
        frames, _, reason = iter_frames(segment_path(spool, number).read_bytes(), number)
        assert reason is None
        found.extend(f for f in frames if not f.is_checkpoint)
    return found


def test_the_stored_row_is_the_row_the_shipper_makes_from_the_json(tmp_path: Path) -> None:
    sink = SpoolAuditSink(tmp_path)
    records = _variety()
    for record in records:
        sink.append_blocking(record)  # type: ignore[arg-type]
    sink.close_blocking()
    frames = _frames(tmp_path)
    assert len(frames) == len(records)
    assert segment_format(segment_path(tmp_path, 1).read_bytes()) == 2
    for frame in frames:
        assert frame.row is not None and frame.row.endswith(frame.data)
        as_format1 = frame._replace(row=None)  # what the shipper does with a format-1 frame
        assert copy_row(as_format1) == frame.row == copy_row(frame)


def test_format_2_frames_are_read_from_any_offset(tmp_path: Path) -> None:
    """A reader starting in the middle of a segment (the shipper, a tailing reader) needs
    no state: each frame says its format."""
    sink = SpoolAuditSink(tmp_path)
    for i in range(6):
        sink.append_blocking(make_record(i))
    sink.close_blocking()
    data = segment_path(tmp_path, 1).read_bytes()
    frames, _, _ = iter_frames(data, 1)
    start = frames[3].offset
    tail, stop, reason = iter_frames(data[start:], 1, base=start)
    assert reason is None and stop == len(data)
    assert [f.data for f in tail] == [f.data for f in frames[3:]]
    assert all(f.row is not None for f in tail)


def _format1_spool(spool: Path, n: int) -> list[bytes]:
    """A spool as a writer before format 2 left it: magic 1, JSON frames only."""
    spool.mkdir(parents=True, exist_ok=True)
    chainer = Chainer()
    lines = [chainer.seal_line(make_record(i))[0] for i in range(n)]
    data = (
        MAGIC_V1
        + checkpoint_frame({})
        + b"".join(encode_frame(line, make_record(i).time) for i, line in enumerate(lines))
    )
    segment_path(spool, 1).write_bytes(data)
    (spool / "durable").write_bytes(encode_durable(SpoolPosition(1, len(data))))
    return lines


def test_a_format_1_spool_is_continued_and_shipped(tmp_path: Path, audit_db: AuditDatabase) -> None:
    old = _format1_spool(tmp_path, 5)
    sink = SpoolAuditSink(tmp_path)  # a writer of today on a spool of yesterday
    assert sink.chain_heads["team-a/agent-0/run-1"].seq == 5
    for i in range(5, 9):
        sink.append_blocking(make_record(i))
    sink.close_blocking()
    # The old segment is left as it was; the new records went to a new, format-2 segment.
    assert list_segments(tmp_path) == [1, 2]
    assert segment_path(tmp_path, 1).read_bytes().startswith(MAGIC_V1)
    assert segment_path(tmp_path, 2).read_bytes().startswith(MAGIC)
    frames = _frames(tmp_path)
    assert [f.data for f in frames[:5]] == old
    assert [f.row is None for f in frames] == [True] * 5 + [False] * 4
    shipper = Shipper(ShipperSettings(tmp_path, audit_db.writer, batch_records=3, lanes=2))
    try:
        assert shipper.drain(timeout=60) == 9
    finally:
        shipper.close()
    assert audit_db.count() == 9
    report = verify_database(audit_db.reader)
    assert report.ok, report.problems[:5]  # columns match the record text, chain unbroken
    assert report.heads["team-a/agent-0/run-1"]["seq"] == 9


@pytest.mark.parametrize("where", ["header", "row", "json"])
def test_a_torn_format_2_frame_is_cut_and_the_records_before_it_kept(
    tmp_path: Path, audit_db: AuditDatabase, where: str
) -> None:
    sink = SpoolAuditSink(tmp_path)
    for i in range(5):
        sink.append_blocking(make_record(i))
    sink.close_blocking()
    path = segment_path(tmp_path, 1)
    data = path.read_bytes()
    frames, _, _ = iter_frames(data, 1)
    last = frames[-1]
    assert last.row is not None
    json_at = len(last.row) - len(last.data)
    cut = {"header": 18, "row": 20 + json_at // 2, "json": 20 + json_at + 10}[where]
    path.write_bytes(data[: last.offset + cut])  # a write torn by a crash
    sink = SpoolAuditSink(tmp_path)
    assert sink.chain_heads["team-a/agent-0/run-1"].seq == 4
    sink.append_blocking(make_record(5))
    sink.close_blocking()
    assert list(tmp_path.glob("*.torn-*"))
    shipper = Shipper(ShipperSettings(tmp_path, audit_db.writer))
    try:
        assert shipper.drain(timeout=60) == 5
    finally:
        shipper.close()
    report = verify_database(audit_db.reader)
    assert report.ok, report.problems[:5]


def test_a_row_that_does_not_end_with_its_record_is_refused() -> None:
    """A format-2 frame whose row's ``record`` length is not its JSON's (a writer's bug,
    CRC intact) would misalign the COPY stream: the reader stops there."""
    line = Chainer().seal_line(make_record(0))[0]
    good = encode_row_frame(b"\x00" * 30, "0" * 64, line, 1.0)
    frames, stop, reason = iter_frames(good, 1, base=8)
    assert reason is None and frames[0].data == line
    bad = encode_row_frame(b"\x00" * 30, "0" * 64, line + b" ", 1.0)
    # Re-frame the same row claiming one byte less of JSON: valid CRC, wrong length.
    body = bad[20:-1]
    stamp = struct.pack("<dI", 1.0, len(body) - len(line))
    crc = zlib.crc32(body, zlib.crc32(stamp))
    forged = struct.pack("<II", len(body) | ROW_FLAG, crc) + stamp + body
    frames, stop, reason = iter_frames(forged, 1, base=8)
    assert frames == [] and stop == 8 and reason == "frame row does not end with its record"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"record_id": "not-a-uuid"}, "record_id"),
        ({"status": 2**31}, "status"),
        ({"status": "200"}, "status"),
        ({"cost_usd": math.inf}, "cost_usd"),
        ({"latency_ms": math.nan}, "latency_ms"),
        ({"model": ["x"]}, "model"),
        ({"tool": 7}, "tool"),
        ({"kind": False}, "kind"),
        ({"target": None}, "target"),
        ({"decision": None}, "decision"),
        ({"namespace": "a\x00b"}, "namespace"),
        ({"args_digest": 5}, "args_digest"),
        ({"message": "m\x00"}, "message"),
        ({"decision_id": b"x"}, "decision_id"),
        ({"time": -1.0}, "time"),
    ],
)
async def test_a_record_that_cannot_become_a_row_is_refused_without_taking_a_seq(
    tmp_path: Path, overrides: dict[str, object], field: str
) -> None:
    sink = SpoolAuditSink(tmp_path)
    try:
        await sink.intent(make_record(0))
        with pytest.raises(InvalidRecordError, match=field):
            await sink.intent(make_record(1, **overrides))
        await sink.intent(make_record(2))
        assert sink.chain_heads["team-a/agent-0/run-1"].seq == 2  # no gap
    finally:
        await sink.close()
    assert [orjson.loads(f.data)["seq"] for f in _frames(tmp_path)] == [1, 2]
