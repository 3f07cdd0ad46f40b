"""Records queued without waiting (outcomes) linger for the next awaited commit; past the
linger they are written, and synced with the next awaited commit or lazily."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from haltgate.governance.audit import AuditUnavailableError, SpoolAuditSink
from haltgate.governance.audit.spool import iter_frames, list_segments, read_durable, segment_path
from tests.audit.helpers import make_record

HANG_GUARD_SECONDS = 60
LONG_LINGER_SECONDS = 1.0
"""The longest linger the spool allows: the test's 50 ms look happens well inside it."""
LAZY_SECONDS = 60.0
"""The longest lazy sync: no sync of its own happens while the test looks."""


def _commits(sink: SpoolAuditSink) -> float:
    value = sink.metrics.registry.get_sample_value("haltgate_audit_group_commit_records_count")
    return value or 0.0


async def test_an_outcome_rides_with_the_next_intent(tmp_path: Path) -> None:
    sink = SpoolAuditSink(tmp_path, linger_seconds=LONG_LINGER_SECONDS)
    try:
        future = sink.submit_nowait(make_record(1, phase="outcome"))
        assert future is not None
        await asyncio.sleep(0.05)
        assert not future.done() and _commits(sink) == 0  # no commit of its own yet
        await sink.intent(make_record(2))
        assert future.result(timeout=1) is None  # durable with the intent
        assert _commits(sink) == 1  # one write + fdatasync for both
    finally:
        await sink.close()


async def test_a_lone_outcome_is_durable_within_the_linger(tmp_path: Path) -> None:
    sink = SpoolAuditSink(tmp_path, linger_seconds=0.05)
    try:
        future = sink.submit_nowait(make_record(1, phase="outcome"))
        assert future is not None
        # No intent and no close follows: only the linger can commit it. The wait is a hang
        # guard (far above any load), not a speed figure.
        future.result(timeout=HANG_GUARD_SECONDS)
        assert _commits(sink) == 1
    finally:
        await sink.close()


async def test_close_commits_lingering_records(tmp_path: Path) -> None:
    sink = SpoolAuditSink(tmp_path, linger_seconds=LONG_LINGER_SECONDS)
    future = sink.submit_nowait(make_record(1, phase="outcome"))
    assert future is not None
    await sink.close()
    assert future.done() and future.exception() is None


def _on_disk(directory: Path) -> list[str]:
    """Decision ids of the records in the segments now (written, synced or not)."""
    ids = []
    for number in list_segments(directory):
        frames, _, _ = iter_frames(segment_path(directory, number).read_bytes(), number)
        ids += [orjson.loads(f.data)["decision_id"] for f in frames if not f.is_checkpoint]
    return ids


def _durable_offset(directory: Path) -> int:
    position = read_durable(directory)
    return 0 if position is None else position.offset  # None: nothing published yet


async def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


async def test_a_lingering_record_is_written_at_once_and_synced_with_the_next_intent(
    tmp_path: Path,
) -> None:
    sink = SpoolAuditSink(tmp_path, linger_seconds=0.02, lazy_sync_seconds=LAZY_SECONDS)
    outcome = make_record(1, phase="outcome")
    try:
        future = sink.submit_nowait(outcome)
        assert future is not None
        # Past the linger it is in the segment (a killed process would keep it), not yet
        # synced: not confirmed, not published to the shipper, no fdatasync spent on it.
        await _until(lambda: _on_disk(tmp_path) == [outcome.decision_id], "the write")
        segment = segment_path(tmp_path, list_segments(tmp_path)[-1])
        assert _durable_offset(tmp_path) < segment.stat().st_size
        assert not future.done() and _commits(sink) == 0
        await sink.intent(make_record(2))
        assert future.result(timeout=HANG_GUARD_SECONDS) is None
        assert _commits(sink) == 1  # one fdatasync made both durable
        assert _durable_offset(tmp_path) == segment.stat().st_size
    finally:
        await sink.close()


async def test_a_lingering_record_alone_is_synced_lazily(tmp_path: Path) -> None:
    sink = SpoolAuditSink(tmp_path, linger_seconds=0.02, lazy_sync_seconds=0.05)
    try:
        future = sink.submit_nowait(make_record(1, phase="outcome"))
        assert future is not None
        await asyncio.wait_for(asyncio.wrap_future(future), HANG_GUARD_SECONDS)
        assert _commits(sink) == 1
        segment = segment_path(tmp_path, list_segments(tmp_path)[-1])
        assert _durable_offset(tmp_path) == segment.stat().st_size
    finally:
        await sink.close()


async def test_a_failed_sync_refuses_the_lingering_records_written_before_it(
    tmp_path: Path,
) -> None:
    failing = threading.Event()

    def disk() -> None:
        if failing.is_set():
            raise OSError(5, "Input/output error")

    sink = SpoolAuditSink(
        tmp_path,
        linger_seconds=0.02,
        lazy_sync_seconds=LAZY_SECONDS,
        retry_seconds=0.05,
        before_write=disk,
    )
    outcome, quiet = make_record(0, phase="outcome"), make_record(1, phase="outcome")
    refused, after = make_record(2), make_record(3)
    errors: list[Exception] = []
    try:
        future = sink.submit_nowait(outcome)
        assert future is not None
        assert sink.queue_outcome(quiet, errors.append)  # no future: a callback on refusal
        ids = [outcome.decision_id, quiet.decision_id]
        await _until(lambda: _on_disk(tmp_path) == ids, "the write")
        failing.set()
        with pytest.raises(AuditUnavailableError):
            await sink.intent(refused)
        assert isinstance(future.exception(timeout=HANG_GUARD_SECONDS), AuditUnavailableError)
        assert [type(e) for e in errors] == [AuditUnavailableError]
        failing.clear()
        await _until(lambda: sink.health() is None, "the spool to heal")
        await sink.intent(after)
        # Cut back to the last synced byte: the refused outcome is gone, no gap.
        assert _on_disk(tmp_path) == [after.decision_id]
        assert sink.chain_heads["team-a/agent-0/run-1"].seq == 1
    finally:
        failing.clear()
        await sink.close()
