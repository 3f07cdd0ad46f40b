"""Two lanes: two batches in flight on two connections, still in order and exactly once.

The failure cases are made deterministic by holding the audit table locked (SHARE) from a
third session: the leader takes the progress row, which starts the follower, and then both
wait at their COPY, in flight; one of them is terminated, the lock released, and the
outcome checked.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

from haltgate.governance.audit import SpoolAuditSink
from haltgate.governance.audit.ship_lanes import BatchSuperseded, Lane
from haltgate.governance.audit.shipper import Shipper, ShipperSettings, ShipResult
from haltgate.governance.audit.verify import verify_database
from tests.audit.conftest import AuditDatabase
from tests.audit.helpers import BASE_TIME, make_record
from tests.audit.test_shipper import distinct_ids, fill, wait_for


def progress(db: AuditDatabase) -> tuple[int, int]:
    with psycopg.connect(db.admin) as conn:
        row = conn.execute('SELECT segment, "offset" FROM haltgate.audit_ship_progress').fetchone()
        assert row is not None
        return int(row[0]), int(row[1])


def lock_waiters(db: AuditDatabase) -> int:
    with psycopg.connect(db.admin) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name ="
            " 'haltgate-audit-shipper' AND wait_event_type = 'Lock'"
        ).fetchone()
        assert row is not None
        return int(row[0])


def verified(db: AuditDatabase, total: int) -> None:
    assert db.count() == distinct_ids(db) == total
    report = verify_database(db.reader)
    assert report.ok, report.problems[:5]
    assert report.heads["team-a/agent-0/run-1"]["seq"] == total


def test_lanes_must_be_one_or_two(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lanes"):
        ShipperSettings(tmp_path, "postgresql://x", lanes=3)
    with pytest.raises(ValueError, match="batch_records"):
        ShipperSettings(tmp_path, "postgresql://x", batch_records=0)


@pytest.mark.parametrize("read_ahead", [True, False])
def test_two_lanes_ship_two_batches_a_round_in_order_exactly_once(
    tmp_path: Path, audit_db: AuditDatabase, read_ahead: bool
) -> None:
    fill(tmp_path, 1000)
    settings = ShipperSettings(
        tmp_path, audit_db.writer, batch_records=100, lanes=2, read_ahead=read_ahead
    )
    shipper = Shipper(settings)
    try:
        # First round: the leader alone (it makes sure the month's partition exists).
        assert shipper.ship_once().records == 100
        second = shipper.ship_once()
        assert (second.records, second.inserted) == (200, 200)
        assert len(set(shipper.backend_pids())) == 2
        assert progress(audit_db) == (second.position.segment, second.position.offset)
        assert shipper.drain(timeout=60) == 700
        assert len(shipper.backend_pids()) == 1  # the second connection closed once idle
    finally:
        shipper.close()
    verified(audit_db, 1000)


def _round_with_the_table_locked(
    shipper: Shipper, db: AuditDatabase, terminate: int
) -> tuple[ShipResult | None, BaseException | None, int]:
    """Run a two-batch round while the audit table is locked against inserts; terminate
    lane ``terminate``'s backend once both wait; release; return (result, error, count
    before)."""
    outcome: dict[str, Any] = {}

    def ship() -> None:
        try:
            outcome["result"] = shipper.ship_once()
        except BaseException as e:  # reported by the test thread
            outcome["error"] = e

    before = db.count()
    with psycopg.connect(db.admin) as holder:
        holder.execute("LOCK TABLE haltgate.audit_records IN SHARE MODE")
        thread = threading.Thread(target=ship, daemon=True)
        thread.start()
        wait_for(lambda: lock_waiters(db) == 2, 60, "leader and follower both in flight")
        lane = shipper._lanes[terminate]
        assert lane.conn is not None
        pid = lane.conn.info.backend_pid
        with psycopg.connect(db.admin, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            wait_for(
                lambda: (
                    not admin.execute(
                        "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)
                    ).fetchone()
                ),
                30,
                "the terminated backend to exit",
            )
        holder.rollback()  # release the table
    thread.join(timeout=60)
    assert not thread.is_alive()
    return outcome.get("result"), outcome.get("error"), before


def test_follower_rolls_back_when_the_leader_dies(tmp_path: Path, audit_db: AuditDatabase) -> None:
    fill(tmp_path, 600)
    shipper = Shipper(ShipperSettings(tmp_path, audit_db.writer, batch_records=100, lanes=2))
    try:
        assert shipper.ship_once().records == 100
        at = progress(audit_db)
        result, error, before = _round_with_the_table_locked(shipper, audit_db, terminate=0)
        assert result is None and isinstance(error, psycopg.OperationalError)
        # The follower had COPY'd its batch; it must not commit behind the lost leader.
        assert audit_db.count() == before == 100
        assert progress(audit_db) == at
        assert (shipper.position.segment, shipper.position.offset) == at
        assert shipper.drain(timeout=60) == 500
    finally:
        shipper.close()
    verified(audit_db, 600)


def test_leader_commits_when_the_follower_dies(tmp_path: Path, audit_db: AuditDatabase) -> None:
    fill(tmp_path, 600)
    shipper = Shipper(ShipperSettings(tmp_path, audit_db.writer, batch_records=100, lanes=2))
    try:
        assert shipper.ship_once().records == 100
        result, error, before = _round_with_the_table_locked(shipper, audit_db, terminate=1)
        assert error is None and result is not None
        assert (result.records, result.inserted) == (100, 100)  # the leader's batch only
        assert audit_db.count() == before + 100 == 200
        assert progress(audit_db) == (result.position.segment, result.position.offset)
        # The follower's batch leads the next round (its lane reconnected for the one after).
        again = shipper.ship_once()
        assert (again.records, again.inserted) == (200, 200)
        assert shipper.drain(timeout=60) == 200
    finally:
        shipper.close()
    verified(audit_db, 600)


def test_a_follower_commits_only_where_the_progress_stands(
    tmp_path: Path, audit_db: AuditDatabase
) -> None:
    """The follower's check by itself: progress elsewhere than its start rolls it back."""
    fill(tmp_path, 300)
    shipper = Shipper(ShipperSettings(tmp_path, audit_db.writer, batch_records=100, lanes=1))
    try:
        assert shipper.ship_once().records == 100
        batches = shipper._read_round(shipper.position)
        first = batches[0]
        after = shipper._read_round(first.end)[0]
        lane = Lane(audit_db.writer, 5, toast_lz4=False)
        try:
            with pytest.raises(BatchSuperseded):
                lane.follow(shipper.spool_id, after)  # its leader never ran
            assert audit_db.count() == 100
            assert lane.follow(shipper.spool_id, first) == 100  # progress is at its start
        finally:
            lane.drop()
        assert progress(audit_db) == (first.end.segment, first.end.offset)
    finally:
        shipper.close()


def test_a_leader_making_a_partition_while_its_follower_is_in_flight(
    tmp_path: Path, audit_db: AuditDatabase
) -> None:
    """The leader's batch holds a late record of a month without a partition while the
    follower's month is known: the leader creates the partition with the follower's COPY
    in flight. Neither may deadlock or lose a record (``ship_lanes``: the order of locks)."""
    sink = SpoolAuditSink(tmp_path)
    late = BASE_TIME - 70 * 86400  # two months earlier: no partition yet
    futures = [
        sink.submit_nowait(make_record(i, **({"time": late} if i == 150 else {})))
        for i in range(300)
    ]
    for f in futures:
        assert f is not None
        f.result(timeout=60)
    sink.close_blocking()
    shipper = Shipper(ShipperSettings(tmp_path, audit_db.writer, batch_records=100, lanes=2))
    try:
        assert shipper.ship_once().records == 100  # makes the month of the first batch
        # Leader: the late record's month; follower: a known one. If the follower's COPY
        # holds the table when the leader creates the partition, the follower rolls back
        # (the progress is not yet at its start) and ships next round; else both commit.
        both = shipper.ship_once()
        assert both.records in (100, 200) and both.inserted == both.records
        assert shipper.drain(timeout=60) == 200 - both.records
    finally:
        shipper.close()
    verified(audit_db, 300)
    with psycopg.connect(audit_db.admin) as conn:
        row = conn.execute("SELECT count(*) FROM haltgate.audit_records_default").fetchone()
        assert row is not None and row[0] == 0  # the late record went to its own month
