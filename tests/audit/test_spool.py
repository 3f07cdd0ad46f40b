"""The local spool: durability order, group commit, bounds, recovery of torn tails."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import orjson
import pytest

from haltgate.governance.audit import InvalidRecordError, SpoolAuditSink, SpoolFullError
from haltgate.governance.audit.record import ChainHead
from haltgate.governance.audit.spool import (
    MAGIC,
    iter_frames,
    list_segments,
    read_checkpoint,
    segment_path,
)
from tests.audit.helpers import make_record


def read_all(directory: Path) -> list[dict]:
    docs = []
    for number in list_segments(directory):
        frames, _, reason = iter_frames(segment_path(directory, number).read_bytes(), number)
        assert reason is None
        docs.extend(orjson.loads(f.data) for f in frames if not f.is_checkpoint)
    return docs


async def test_concurrent_intents_are_durable_in_seal_order(tmp_path: Path) -> None:
    sink = SpoolAuditSink(tmp_path)
    await asyncio.wait_for(
        asyncio.gather(*(sink.intent(make_record(i)) for i in range(200))), timeout=30
    )
    await sink.close()
    docs = read_all(tmp_path)
    assert [d["seq"] for d in docs] == list(range(1, 201))
    for prev, cur in itertools.pairwise(docs):
        assert cur["prev_hash"] == prev["hash"]
    # Group commit: 200 concurrent records needed far fewer than 200 fsyncs.
    commits = sink.metrics.registry.get_sample_value("haltgate_audit_group_commit_records_count")
    assert commits is not None
    assert commits < 200


async def test_restart_continues_every_chain(tmp_path: Path) -> None:
    sink = SpoolAuditSink(tmp_path)
    for i in range(3):
        await sink.intent(make_record(i))
        await sink.intent(make_record(i, run="run-2"))
    heads = sink.chain_heads
    await sink.close()
    again = SpoolAuditSink(tmp_path)
    assert again.chain_heads == heads
    await again.intent(make_record(9))
    await again.close()
    last = read_all(tmp_path)[-1]
    assert (last["seq"], last["prev_hash"]) == (4, heads["team-a/agent-0/run-1"].hash)


async def test_segments_roll_and_full_spool_blocks_without_consuming_a_seq(
    tmp_path: Path,
) -> None:
    sink = SpoolAuditSink(tmp_path, segment_bytes=8192, max_bytes=16384)
    with pytest.raises(SpoolFullError) as info:
        for i in range(100):
            await sink.intent(make_record(i))
    assert info.value.code == "audit_spool_full"
    assert len(list_segments(tmp_path)) >= 2
    head = sink.chain_heads["team-a/agent-0/run-1"]
    await sink.close()
    docs = read_all(tmp_path)
    assert docs[-1]["seq"] == head.seq == len(docs)


async def test_full_spool_with_continue_drops_loudly(tmp_path: Path) -> None:
    sink = SpoolAuditSink(tmp_path, segment_bytes=8192, max_bytes=16384, on_full="continue")
    for i in range(100):
        await sink.intent(make_record(i))
    dropped = sink.metrics.registry.get_sample_value(
        "haltgate_audit_records_dropped_total", {"reason": "spool_full"}
    )
    await sink.close()
    assert dropped is not None and dropped > 0
    assert len(read_all(tmp_path)) + dropped == 100


def test_second_writer_on_the_same_spool_is_refused(tmp_path: Path) -> None:
    sink = SpoolAuditSink(tmp_path)
    try:
        with pytest.raises(Exception, match="held by another process"):
            SpoolAuditSink(tmp_path, lock_wait_seconds=0.2)
    finally:
        sink.close_blocking()


@pytest.mark.parametrize("cut", [3, 9, 40])
def test_torn_tail_is_cut_and_earlier_records_kept(tmp_path: Path, cut: int) -> None:
    sink = SpoolAuditSink(tmp_path)
    for i in range(5):
        sink.append_blocking(make_record(i))
    sink.close_blocking()
    path = segment_path(tmp_path, list_segments(tmp_path)[-1])
    data = path.read_bytes()
    # Simulate a write torn by a crash: the last frame only partly on disk.
    frames, _, _ = iter_frames(data, 1)
    assert frames[0].is_checkpoint
    path.write_bytes(data[: frames[-1].offset + cut])
    sink = SpoolAuditSink(tmp_path)
    assert sink.chain_heads["team-a/agent-0/run-1"].seq == 4
    sink.append_blocking(make_record(5))
    sink.close_blocking()
    assert [d["seq"] for d in read_all(tmp_path)] == [1, 2, 3, 4, 5]
    assert list(tmp_path.glob("*.torn-*"))


def test_corrupt_frame_in_the_middle_keeps_the_records_before_it(tmp_path: Path) -> None:
    sink = SpoolAuditSink(tmp_path)
    for i in range(5):
        sink.append_blocking(make_record(i))
    sink.close_blocking()
    path = segment_path(tmp_path, 1)
    data = bytearray(path.read_bytes())
    frames, _, _ = iter_frames(bytes(data), 1)
    data[frames[3].offset + 20] ^= 0xFF  # flip a byte inside record 3 (frame 0: checkpoint)
    path.write_bytes(bytes(data))
    sink = SpoolAuditSink(tmp_path)
    sink.close_blocking()
    assert [d["seq"] for d in read_all(tmp_path)] == [1, 2]
    assert path.read_bytes().startswith(MAGIC)


async def test_unserialisable_record_is_refused_without_taking_a_seq(tmp_path: Path) -> None:
    sink = SpoolAuditSink(tmp_path)
    await sink.intent(make_record(0))
    with pytest.raises(InvalidRecordError) as info:
        await sink.intent(make_record(1, payload={"body": object()}))
    assert info.value.code == "audit_record_invalid"
    await sink.intent(make_record(2))
    await sink.close()
    assert [d["seq"] for d in read_all(tmp_path)] == [1, 2]


async def test_each_segment_opens_with_the_heads_before_it(tmp_path: Path) -> None:
    sink = SpoolAuditSink(tmp_path, segment_bytes=4096, max_bytes=1024 * 1024)
    for i in range(30):
        await sink.intent(make_record(i, run=f"run-{i % 3}"))
    await sink.close()
    segments = list_segments(tmp_path)
    assert len(segments) > 3
    heads: dict[str, ChainHead] = {}
    for number in segments:
        assert read_checkpoint(tmp_path, number) == heads
        frames, _, _ = iter_frames(segment_path(tmp_path, number).read_bytes(), number)
        for frame in frames[1:]:
            doc = orjson.loads(frame.data)
            heads[doc["chain_id"]] = ChainHead(doc["seq"], doc["hash"])
    again = SpoolAuditSink(tmp_path)
    assert again.chain_heads == heads
    await again.close()


def test_every_audit_command_has_help() -> None:
    from click.testing import CliRunner

    from haltgate.cli.main import main

    runner = CliRunner()
    for command in (
        "migrate",
        "ship",
        "verify",
        "query",
        "history",
        "cost",
        "export",
        "serve",
        "retention",
    ):
        result = runner.invoke(main, ["audit", command, "--help"])
        assert result.exit_code == 0, (command, result.output)
        assert f"audit {command} [OPTIONS]" in result.output
