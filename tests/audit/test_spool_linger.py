"""Records queued without waiting (outcomes) linger for the next awaited commit."""

from __future__ import annotations

import asyncio
from pathlib import Path

from haltgate.governance.audit import SpoolAuditSink
from tests.audit.helpers import make_record

HANG_GUARD_SECONDS = 60
LONG_LINGER_SECONDS = 1.0
"""The longest linger the spool allows: the test's 50 ms look happens well inside it."""


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
