"""Shipping to the real PostgreSQL: idempotent, in order, through outages and kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from haltgate.governance.audit import SpoolAuditSink
from haltgate.governance.audit.migrate import migrate
from haltgate.governance.audit.shipper import Shipper, ShipperSettings
from haltgate.governance.audit.spool import (
    SHIPPED_FILE,
    SpoolPosition,
    flocked,
    iter_frames,
    list_segments,
    segment_path,
    write_durable,
)
from haltgate.governance.audit.verify import verify_database
from haltgate.testbed.postgres import PostgresServer, remove, start_postgres
from tests.audit.conftest import AuditDatabase
from tests.audit.helpers import HALTGATE, REPO, make_record


def fill(spool: Path, n: int, *, run: str = "run-1", start: int = 0, **options: object) -> None:
    sink = SpoolAuditSink(spool, **options)
    futures = [sink.submit_nowait(make_record(start + i, run=run)) for i in range(n)]
    for f in futures:
        assert f is not None
        f.result(timeout=60)
    sink.close_blocking()


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def distinct_ids(db: AuditDatabase) -> int:
    with psycopg.connect(db.admin) as conn:
        row = conn.execute("SELECT count(DISTINCT record_id) FROM haltgate.audit_records")
        return int(row.fetchone()[0])  # type: ignore[index]


def restart_replays_one_batch(spool: Path, audit_db: AuditDatabase) -> None:
    """A new shipper re-reads the last batch (100 records, none inserted twice) and drains."""
    again = Shipper(ShipperSettings(spool, audit_db.writer, batch_records=100))
    try:
        replay = again.ship_once()
        assert (replay.records, replay.inserted) == (100, 0)
        again.drain(timeout=60)
    finally:
        again.close()


def test_ships_in_order_removes_segments_and_chain_continues(
    tmp_path: Path, audit_db: AuditDatabase
) -> None:
    small = {"segment_bytes": 8192, "max_bytes": 1024 * 1024}
    fill(tmp_path, 120, **small)
    fill(tmp_path, 30, run="run-2", **small)
    shipper = Shipper(ShipperSettings(tmp_path, audit_db.writer, batch_records=50))
    try:
        assert shipper.drain(timeout=60) == 150
        assert len(list_segments(tmp_path)) == 1  # shipped segments folded into heads.json
        # A restarted writer continues the chains from heads.json + the last segment.
        fill(tmp_path, 5, start=120, **small)
        assert shipper.drain(timeout=60) == 5
    finally:
        shipper.close()
    assert audit_db.count() == 155
    report = verify_database(audit_db.reader)
    assert report.ok, report.problems
    assert report.heads["team-a/agent-0/run-1"]["seq"] == 125
    assert report.chains == 2


def test_lost_acknowledgement_reships_without_duplicates(
    tmp_path: Path, audit_db: AuditDatabase
) -> None:
    fill(tmp_path, 300)
    shipper = Shipper(ShipperSettings(tmp_path, audit_db.writer, batch_records=100))
    try:
        before = (
            (tmp_path / SHIPPED_FILE).read_bytes() if (tmp_path / SHIPPED_FILE).exists() else None
        )
        first = shipper.ship_once()
        assert (first.records, first.inserted) == (100, 100)
    finally:
        shipper.close()
    # Crash after COPY committed but before shipped.json was replaced.
    if before is None:
        (tmp_path / SHIPPED_FILE).unlink()
    else:
        (tmp_path / SHIPPED_FILE).write_bytes(before)
    restart_replays_one_batch(tmp_path, audit_db)
    assert audit_db.count() == distinct_ids(audit_db) == 300
    assert verify_database(audit_db.reader).ok


@pytest.mark.parametrize("read_ahead", [False, True])
def test_a_batch_failing_mid_stream_is_read_again_and_nothing_is_lost(
    tmp_path: Path, audit_db: AuditDatabase, read_ahead: bool
) -> None:
    """The batch read ahead while a failing batch was in PostgreSQL starts after it: it must
    be dropped and the failed batch read again (else those records would be lost)."""
    fill(tmp_path, 450)
    settings = ShipperSettings(tmp_path, audit_db.writer, batch_records=100, read_ahead=read_ahead)
    shipper = Shipper(settings)
    try:
        assert shipper.ship_once().records == 100
        assert shipper._conn is not None
        backend = shipper._conn.info.backend_pid
        with psycopg.connect(audit_db.admin, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
        with pytest.raises(psycopg.OperationalError):
            shipper.ship_once()  # the second batch dies with its connection
        assert shipper.position.offset > 0 and audit_db.count() == 100
        again = shipper.ship_once()  # reconnects and reads the second batch again
        assert (again.records, again.inserted) == (100, 100)
        assert shipper.drain(timeout=60) == 250
    finally:
        shipper.close()
    assert audit_db.count() == distinct_ids(audit_db) == 450
    report = verify_database(audit_db.reader)
    assert report.ok, report.problems
    assert report.heads["team-a/agent-0/run-1"]["seq"] == 450


@pytest.mark.parametrize("lanes", [1, 2])
def test_a_batch_read_ahead_is_cut_at_the_recorded_progress(
    tmp_path: Path, audit_db: AuditDatabase, lanes: int
) -> None:
    """A batch encoded ahead whose first records the database already records as shipped:
    only the rest is inserted, each row from its own record (rows and frames stay aligned)."""
    fill(tmp_path, 300)
    segment = list_segments(tmp_path)[-1]
    frames, _, _ = iter_frames(segment_path(tmp_path, segment).read_bytes(), segment)
    frames = [f for f in frames if not f.is_checkpoint]
    shipper = Shipper(ShipperSettings(tmp_path, audit_db.writer, batch_records=100, lanes=lanes))
    try:
        assert shipper.ship_once().records == 100  # and the next 100 (or 200) are read ahead
        with psycopg.connect(audit_db.admin) as conn:
            conn.execute(
                'UPDATE haltgate.audit_ship_progress SET segment = %s, "offset" = %s',
                (segment, frames[130].offset),
            )
        cut = shipper.ship_once()  # with two lanes the third batch follows the cut one
        assert (cut.records, cut.inserted) == (100 * lanes, 70 + 100 * (lanes - 1))
        assert shipper.drain(timeout=60) == 100 * (2 - lanes)
    finally:
        shipper.close()
    with psycopg.connect(audit_db.reader) as conn:
        seqs = [r[0] for r in conn.execute("SELECT seq FROM haltgate.audit_records ORDER BY seq")]
    assert seqs == [*range(1, 101), *range(131, 301)]


@pytest.mark.parametrize("lanes", ["1", "2"])
def test_kill_9_shipper_mid_stream_then_restart(
    tmp_path: Path, audit_db: AuditDatabase, lanes: str
) -> None:
    total = 20000
    fill(tmp_path, total, segment_bytes=256 * 1024, max_bytes=64 * 1024 * 1024)
    argv = [
        *HALTGATE,
        "audit",
        "ship",
        "--spool",
        str(tmp_path),
        "--dsn",
        audit_db.writer,
        "--batch",
        "100",
        "--lanes",
        lanes,
    ]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: audit_db.count() >= 1000, 60, "the shipper to start shipping")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    at_kill = audit_db.count()
    assert at_kill < total, "shipper finished before the kill: make the burst bigger"
    done = subprocess.run(
        [*argv, "--once"], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert audit_db.count() == distinct_ids(audit_db) == total
    report = verify_database(audit_db.reader)
    assert report.ok, report.problems[:5]
    assert report.heads["team-a/agent-0/run-1"]["seq"] == total


def test_kill_9_sidecar_mid_burst_loses_no_acknowledged_record(
    tmp_path: Path, audit_db: AuditDatabase
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.audit.burst", str(tmp_path), "100000"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    acknowledged = 0
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        for line in proc.stdout:
            acknowledged = int(line.split()[1])
            if acknowledged >= 2000 or time.monotonic() > deadline:
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert acknowledged >= 2000
    # The restarted sidecar recovers the spool (maybe a torn tail) and continues the chain.
    after = subprocess.run(
        [sys.executable, "-m", "tests.audit.burst", str(tmp_path), "100"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert after.returncode == 0, after.stderr
    shipper = Shipper(ShipperSettings(tmp_path, audit_db.writer))
    try:
        shipper.drain(timeout=120)
    finally:
        shipper.close()
    report = verify_database(audit_db.reader)
    assert report.ok, report.problems[:5]
    head = report.heads["team-a/agent-0/run-1"]["seq"]
    assert head >= acknowledged + 100
    assert audit_db.count() == distinct_ids(audit_db) == head


@pytest.mark.parametrize("lanes", [1, 2])
def test_postgres_outage_under_load_loses_nothing(
    tmp_path: Path, audit_db: AuditDatabase, postgres_dsn: str, lanes: int
) -> None:
    shipper = Shipper(
        ShipperSettings(
            tmp_path,
            audit_db.writer,
            batch_records=200,
            poll_seconds=0.05,
            max_backoff_seconds=0.5,
            connect_timeout_seconds=2,
            lanes=lanes,
        )
    )
    thread = threading.Thread(target=shipper.run, daemon=True)
    thread.start()
    sink = SpoolAuditSink(tmp_path, segment_bytes=64 * 1024)
    written = 0

    def burst(n: int) -> None:
        nonlocal written
        futures = [sink.submit_nowait(make_record(written + i)) for i in range(n)]
        for f in futures:
            assert f is not None
            f.result(timeout=30)
        written += n

    try:
        burst(500)
        wait_for(lambda: audit_db.count() == 500, 30, "first burst shipped")
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{audit_db.name}" ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (audit_db.name,),
            )
            for _ in range(5):  # keep writing while the database is unreachable
                burst(400)
                time.sleep(0.1)
            wait_for(
                lambda: (
                    (
                        shipper.metrics.registry.get_sample_value(
                            "haltgate_audit_ship_errors_total"
                        )
                        or 0
                    )
                    >= 1
                ),
                30,
                "shipper errors",
            )
            reg = shipper.metrics.registry
            assert (reg.get_sample_value("haltgate_audit_ship_backlog_bytes") or 0) > 0
            # Records are stamped BASE_TIME (2026-09), so the lag is large and visible.
            assert (reg.get_sample_value("haltgate_audit_ship_lag_seconds") or 0) > 0
            admin.execute(f'ALTER DATABASE "{audit_db.name}" ALLOW_CONNECTIONS true')
        assert written == 2500
        wait_for(lambda: audit_db.count() == 2500, 60, "backlog shipped after the outage")
    finally:
        shipper.stop()
        thread.join(timeout=30)
        shipper.close()
        sink.close_blocking()
    assert distinct_ids(audit_db) == 2500
    assert verify_database(audit_db.reader).ok


def test_second_shipper_on_the_same_spool_is_refused(tmp_path: Path) -> None:
    first = Shipper(ShipperSettings(tmp_path, "postgresql://unused"))
    try:
        with pytest.raises(Exception, match="held by another process"):
            Shipper(ShipperSettings(tmp_path, "postgresql://unused"))
    finally:
        first.close()


def test_ships_only_what_the_writer_made_durable(tmp_path: Path, audit_db: AuditDatabase) -> None:
    fill(tmp_path, 10)
    segment = list_segments(tmp_path)[-1]
    frames, _, _ = iter_frames(segment_path(tmp_path, segment).read_bytes(), segment)
    frames = [f for f in frames if not f.is_checkpoint]
    # A live writer (holding writer.lock) has fsync'd only the first 4 records.
    with flocked(tmp_path / "writer.lock"):
        write_durable(tmp_path, SpoolPosition(segment, frames[3].end))
        shipper = Shipper(ShipperSettings(tmp_path, audit_db.writer))
        try:
            assert shipper.ship_once().records == 4
            assert shipper.ship_once().records == 0
        finally:
            shipper.close()
    # The writer is gone: the next shipper settles the orphaned spool and ships the rest.
    shipper = Shipper(ShipperSettings(tmp_path, audit_db.writer))
    try:
        assert shipper.drain(timeout=60) == 6
    finally:
        shipper.close()
    assert audit_db.count() == 10


def test_lost_progress_and_ack_fall_back_to_on_conflict(
    tmp_path: Path, audit_db: AuditDatabase
) -> None:
    fill(tmp_path, 250)
    shipper = Shipper(ShipperSettings(tmp_path, audit_db.writer, batch_records=100))
    try:
        shipper.drain(timeout=60)
    finally:
        shipper.close()
    # A spool restored from a backup against a database whose progress row is gone: every
    # record is re-read and COPY straight into the table would hit the primary key.
    (tmp_path / SHIPPED_FILE).unlink()
    with psycopg.connect(audit_db.admin) as conn:
        conn.execute("DELETE FROM haltgate.audit_ship_progress")
    restart_replays_one_batch(tmp_path, audit_db)
    assert audit_db.count() == distinct_ids(audit_db) == 250
    assert verify_database(audit_db.reader).ok


def test_awkward_text_survives_copy_exactly(tmp_path: Path, audit_db: AuditDatabase) -> None:
    odd = "POST https://h/\\path\twith\nnew\rlines \\N ✓ \u200b"
    sink = SpoolAuditSink(tmp_path)
    sink.append_blocking(
        make_record(
            0, target=odd, tool="a\\b\\", code="\\N", payload={"text": "tab\there \\u0000 \x00"}
        )
    )
    sink.close_blocking()
    shipper = Shipper(ShipperSettings(tmp_path, audit_db.writer))
    try:
        assert shipper.drain(timeout=60) == 1
    finally:
        shipper.close()
    with psycopg.connect(audit_db.reader) as conn:
        row = conn.execute("SELECT target, tool, code FROM haltgate.audit_records").fetchone()
    assert row == (odd, "a\\b\\", "\\N")
    assert verify_database(audit_db.reader).ok  # columns equal the hashed record text


def test_large_records_are_compressed_with_lz4_where_the_server_has_it(
    tmp_path: Path, audit_db: AuditDatabase
) -> None:
    """A record over the TOAST threshold is compressed as it is inserted: with lz4 when the
    server was built with it, else with the server's default, and shipping works either way."""
    sink = SpoolAuditSink(tmp_path)
    for i in range(3):
        sink.append_blocking(make_record(i, payload={"text": f"call {i} " * 800}))
    sink.close_blocking()
    shipper = Shipper(ShipperSettings(tmp_path, audit_db.writer))
    try:
        assert shipper.drain(timeout=60) == 3
    finally:
        shipper.close()
    with psycopg.connect(audit_db.reader) as conn:
        row = conn.execute(
            "SELECT 'lz4' = ANY(enumvals), current_setting('default_toast_compression')"
            " FROM pg_settings WHERE name = 'default_toast_compression'"
        ).fetchone()
        assert row is not None
        has_lz4, default = row
        methods = conn.execute(
            "SELECT DISTINCT pg_column_compression(record) FROM haltgate.audit_records"
        ).fetchall()
    assert methods == [("lz4" if has_lz4 else default,)]
    assert verify_database(audit_db.reader).ok


def _start_again(server: PostgresServer) -> None:
    server.start()  # same data directory and port


@pytest.mark.postgres
@pytest.mark.parametrize("lanes", [1, 2])
def test_postgres_stopped_under_load_loses_nothing(tmp_path: Path, lanes: int) -> None:
    server = start_postgres()
    try:
        migrate(server.dsn())
        shipper = Shipper(
            ShipperSettings(
                tmp_path / "spool",
                server.dsn(),
                batch_records=200,
                poll_seconds=0.05,
                max_backoff_seconds=0.5,
                connect_timeout_seconds=2,
                lanes=lanes,
            )
        )
        thread = threading.Thread(target=shipper.run, daemon=True)
        thread.start()
        sink = SpoolAuditSink(tmp_path / "spool", segment_bytes=64 * 1024)

        def count() -> int:
            try:
                with psycopg.connect(server.dsn(), connect_timeout=2) as conn:
                    row = conn.execute(
                        "SELECT count(DISTINCT record_id), count(*) FROM haltgate.audit_records"
                    ).fetchone()
            except psycopg.OperationalError:
                return -1
            assert row is not None and row[0] == row[1], "duplicates"
            return int(row[0])

        written = 0
        try:
            for burst in range(12):
                futures = [sink.submit_nowait(make_record(written + i)) for i in range(250)]
                for f in futures:
                    assert f is not None
                    f.result(timeout=30)  # the sidecar keeps working: the spool takes it
                written += 250
                if burst == 3:
                    server.stop()
                if burst == 8:
                    assert (
                        shipper.metrics.registry.get_sample_value(
                            "haltgate_audit_ship_errors_total"
                        )
                        or 0
                    ) >= 1
                    _start_again(server)
            wait_for(lambda: count() == written, 60, "backlog shipped after the restart")
        finally:
            shipper.stop()
            thread.join(timeout=30)
            shipper.close()
            sink.close_blocking()
        report = verify_database(server.dsn())
        assert report.ok and report.records == written == 3000
    finally:
        remove(server)
