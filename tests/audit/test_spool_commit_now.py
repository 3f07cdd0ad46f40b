"""Commits on the caller's thread (``commit_now``) and intents queued ahead of their commit
(``begin_intent``): durable when they say so, in chain order with the group commit, and
refused (never half-written) when the commit fails."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import orjson
import pytest

from haltgate.governance.audit import AuditUnavailableError, SpoolAuditSink
from haltgate.governance.audit.spool import (
    iter_frames,
    list_segments,
    read_durable,
    segment_path,
)
from haltgate.governance.audit.spool_settings import SpoolSettings
from tests.audit.helpers import make_record


def on_disk(directory: Path) -> list[dict]:
    """Every record in the segments now (the writer still open), in file order."""
    docs = []
    for number in list_segments(directory):
        frames, _, reason = iter_frames(segment_path(directory, number).read_bytes(), number)
        assert reason is None
        docs.extend(orjson.loads(f.data) for f in frames if not f.is_checkpoint)
    return docs


def wait_until(check: object, what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


async def test_commit_now_is_durable_and_published_when_it_returns(tmp_path: Path) -> None:
    sink = SpoolAuditSink(tmp_path)
    try:
        queued = sink.submit_nowait(make_record(0))  # a lingering outcome goes along
        assert sink.commit_now(make_record(1))
        docs = on_disk(tmp_path)
        assert [d["seq"] for d in docs] == [1, 2]
        assert docs[1]["decision_id"] == make_record(1).decision_id
        durable = read_durable(tmp_path)
        assert durable is not None
        assert durable.offset == segment_path(tmp_path, durable.segment).stat().st_size
        assert queued is not None and queued.result(timeout=5) is None
    finally:
        await sink.close()


async def test_commit_now_declines_while_a_commit_is_in_flight(tmp_path: Path) -> None:
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        if threading.current_thread().name == "haltgate-audit-spool":
            entered.set()
            release.wait(10)

    sink = SpoolAuditSink(settings=SpoolSettings(directory=tmp_path, before_write=hold))
    try:
        first = asyncio.ensure_future(sink.intent(make_record(0)))
        await asyncio.get_running_loop().run_in_executor(None, entered.wait, 10)
        # The writer thread is committing: the record is not taken (nor sealed) here...
        assert not sink.commit_now(make_record(1))
        # ...and goes with the group commit instead, after the one in flight.
        second = asyncio.ensure_future(sink.intent(make_record(1)))
        release.set()
        await asyncio.wait_for(asyncio.gather(first, second), 10)
        assert [d["seq"] for d in on_disk(tmp_path)] == [1, 2]
    finally:
        release.set()
        await sink.close()


async def test_commit_now_declines_when_commits_are_slow(tmp_path: Path) -> None:
    sink = SpoolAuditSink(settings=SpoolSettings(directory=tmp_path, inline_max_seconds=0))
    try:
        assert not sink.commit_now(make_record(0))
        assert on_disk(tmp_path) == []
    finally:
        await sink.close()


async def test_failed_commit_now_refuses_the_record_and_keeps_the_chain(tmp_path: Path) -> None:
    fail = threading.Event()
    fail.set()

    def broken_disk() -> None:
        if fail.is_set():
            raise OSError(5, "Input/output error")

    sink = SpoolAuditSink(
        settings=SpoolSettings(directory=tmp_path, before_write=broken_disk, retry_seconds=0.05)
    )
    try:
        with pytest.raises(AuditUnavailableError):
            sink.commit_now(make_record(0))
        assert sink.health() == "audit_unavailable"
        fail.clear()
        wait_until(lambda: sink.health() is None, "the spool to heal")
        await asyncio.wait_for(sink.intent(make_record(1)), 10)
        docs = on_disk(tmp_path)
        # The refused record left no trace and no gap: the next one is seq 1.
        assert [(d["seq"], d["decision_id"]) for d in docs] == [(1, make_record(1).decision_id)]
    finally:
        await sink.close()


async def test_begin_intent_completes_when_durable_and_fails_with_the_commit(
    tmp_path: Path,
) -> None:
    entered, release = threading.Event(), threading.Event()
    outcome: list[str] = []

    def hold_then_fail() -> None:
        entered.set()
        release.wait(10)
        if outcome:
            raise OSError(28, "No space left on device")

    sink = SpoolAuditSink(
        settings=SpoolSettings(directory=tmp_path, before_write=hold_then_fail, retry_seconds=0.05)
    )
    try:
        pending = sink.begin_intent(make_record(0))
        assert pending is not None
        await asyncio.get_running_loop().run_in_executor(None, entered.wait, 10)
        assert not pending.done()  # queued, not durable: the caller must wait for it
        assert on_disk(tmp_path) == []
        release.set()
        await asyncio.wait_for(pending, 10)
        assert [d["seq"] for d in on_disk(tmp_path)] == [1]

        entered.clear()
        release.clear()
        outcome.append("fail")
        failing = sink.begin_intent(make_record(1))
        assert failing is not None
        await asyncio.get_running_loop().run_in_executor(None, entered.wait, 10)
        release.set()
        with pytest.raises(AuditUnavailableError):
            await asyncio.wait_for(failing, 10)
        assert [d["seq"] for d in on_disk(tmp_path)] == [1]
    finally:
        release.set()
        outcome.clear()
        await sink.close()
