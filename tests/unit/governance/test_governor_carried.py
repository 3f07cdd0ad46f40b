"""The Governor's state carried by the audit spool's group commit (``persist_with``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from haltgate.governance.audit import SpoolAuditSink
from haltgate.governance.audit.sink import StatePersistError
from haltgate.governance.engine import Usage
from haltgate.governance.governor import Governor, StateFile, make_engine
from tests.audit.helpers import make_record
from tests.unit.governance.conftest import T0, make_spec

BUDGETS = {"calls": {"limit": 10}, "tokens": {"limit": 100_000}}


def _reserve(g: Governor, call_id: str) -> bool:
    return g.reserve(
        call_id, T0, kind="llm", host="api.openai.com", model="gpt-4o",
        max_input_tokens=1000, max_output_tokens=500, fingerprint=call_id,
    ).allowed  # fmt: skip


def _in_flight(path: Path) -> set[str]:
    """Call ids reserved in the state on disk (empty when nothing is written yet)."""
    data = StateFile(path).read()
    if data is None:
        return set()
    engine = make_engine(make_spec(BUDGETS))
    return set(engine.engine_state(engine.state_from_json(data)).reservations)


async def test_a_reservation_is_on_disk_when_its_intent_is_durable(tmp_path: Path) -> None:
    sink = SpoolAuditSink(tmp_path / "spool", linger_seconds=1.0)
    g = Governor(make_engine(make_spec(BUDGETS)), tmp_path / "state")
    g.persist_with(sink)
    try:
        writes = g.writes
        assert _reserve(g, "call-7f3a")
        assert g.writes == writes  # deferred: nothing written on the event loop
        assert "call-7f3a" not in _in_flight(tmp_path / "state")
        await sink.intent(make_record(1))
        assert g.writes == writes + 1
        assert "call-7f3a" in _in_flight(tmp_path / "state")
    finally:
        await sink.close()


async def test_a_settlement_is_written_within_the_linger(tmp_path: Path) -> None:
    sink = SpoolAuditSink(tmp_path / "spool", linger_seconds=0.05)
    g = Governor(make_engine(make_spec(BUDGETS)), tmp_path / "state")
    g.persist_with(sink)
    try:
        assert _reserve(g, "call-91")
        await sink.intent(make_record(1))
        g.settle("call-91", T0 + 1, Usage(100, 50), True)
        # No intent and no close follows: only the linger can write the settlement. (Not
        # asserted "not yet on disk" first: on a loaded machine the linger may already be
        # over by then.)
        for _ in range(3000):  # polls a file another thread writes: a hang guard of ~30 s
            if "call-91" not in _in_flight(tmp_path / "state"):
                break
            await asyncio.sleep(0.01)
        assert "call-91" not in _in_flight(tmp_path / "state")  # settled on disk too
    finally:
        await sink.close()


async def test_close_writes_the_last_state(tmp_path: Path) -> None:
    sink = SpoolAuditSink(tmp_path / "spool", linger_seconds=1.0)
    g = Governor(make_engine(make_spec(BUDGETS)), tmp_path / "state")
    g.persist_with(sink)
    assert _reserve(g, "call-5")
    g.settle("call-5", T0 + 1, Usage(100, 50), True)
    await sink.close()
    g2 = Governor(make_engine(make_spec(BUDGETS)), tmp_path / "state")
    assert g2.snapshot()["budget"]["tokens"]["used"] == 150.0


async def test_a_failed_state_write_refuses_the_intent_and_stays_due(tmp_path: Path) -> None:
    # A full disk: the slot files are /dev/full, where every write fails with ENOSPC.
    for slot in ("state.0", "state.1"):
        (tmp_path / slot).symlink_to("/dev/full")
    sink = SpoolAuditSink(tmp_path / "spool", linger_seconds=1.0)
    g = Governor(make_engine(make_spec(BUDGETS)), tmp_path / "state")
    g.persist_with(sink)
    try:
        assert _reserve(g, "call-1")
        with pytest.raises(StatePersistError) as e:
            await sink.intent(make_record(1))
        assert e.value.code == "state_persist_failed"
        # Still due: the next call is refused too, not forwarded with its state unsaved.
        with pytest.raises(StatePersistError):
            await sink.intent(make_record(2))
        # The records themselves are durable and the spool keeps working.
        outcome = sink.submit_nowait(make_record(3, phase="outcome"))
        assert outcome is not None
    finally:
        await sink.close()
    assert outcome.exception(timeout=1) is None


async def test_after_the_carrier_closed_changes_are_written_at_once(tmp_path: Path) -> None:
    sink = SpoolAuditSink(tmp_path / "spool", linger_seconds=1.0)
    g = Governor(make_engine(make_spec(BUDGETS)), tmp_path / "state")
    g.persist_with(sink)
    await sink.close()
    assert _reserve(g, "call-late")
    assert "call-late" in _in_flight(tmp_path / "state")
