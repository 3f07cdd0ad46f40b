"""The audit schema: migrations, partitions, append-only for everyone."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from haltgate.governance.audit.migrate import available_migrations, migrate
from haltgate.governance.audit.record import Chainer
from tests.audit.conftest import AuditDatabase
from tests.audit.helpers import insert_lines, make_record


def _insert(dsn: str, n: int, **overrides: object) -> None:
    chainer = Chainer()
    lines = [chainer.seal(make_record(i, **overrides))[1] for i in range(n)]
    with psycopg.connect(dsn) as conn:
        insert_lines(conn, lines)


def test_migrate_is_idempotent_and_records_versions(audit_db: AuditDatabase) -> None:
    assert migrate(audit_db.admin) == []
    with psycopg.connect(audit_db.admin) as conn:
        versions = [
            r[0]
            for r in conn.execute("SELECT version FROM haltgate.schema_migrations ORDER BY version")
        ]
    assert versions == [m.version for m in available_migrations()]


def test_writer_inserts_into_a_monthly_partition_and_cannot_change_anything(
    audit_db: AuditDatabase,
) -> None:
    _insert(audit_db.writer, 3)
    with psycopg.connect(audit_db.admin) as conn:
        parts = {
            r[0]: r[1]
            for r in conn.execute(
                "SELECT tableoid::regclass::text, count(*) FROM haltgate.audit_records GROUP BY 1"
            )
        }
    assert parts == {"haltgate.audit_records_202609": 3}
    for statement in (
        "UPDATE haltgate.audit_records SET decision = 'deny'",
        "DELETE FROM haltgate.audit_records",
        "TRUNCATE haltgate.audit_records",
        "UPDATE haltgate.audit_records_202609 SET decision = 'deny'",
        "CREATE TABLE haltgate.evil (x int)",
    ):
        with (
            psycopg.connect(audit_db.writer) as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            conn.execute(statement)
    assert audit_db.count() == 3


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE haltgate.audit_records SET decision = 'deny'",
        "DELETE FROM haltgate.audit_records",
        "TRUNCATE haltgate.audit_records",
        "TRUNCATE haltgate.audit_records_202609",
        "DELETE FROM haltgate.audit_records_202609",
    ],
)
def test_trigger_refuses_changes_even_for_the_owner(
    audit_db: AuditDatabase, statement: str
) -> None:
    _insert(audit_db.writer, 2)
    with (
        psycopg.connect(audit_db.admin) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"),
    ):
        conn.execute(statement)
    assert audit_db.count() == 2


def test_retention_drops_whole_old_partitions(audit_db: AuditDatabase) -> None:
    _insert(audit_db.writer, 2)  # September 2026
    _insert(audit_db.writer, 2, run="later", time=datetime(2027, 3, 5, tzinfo=UTC).timestamp())
    with psycopg.connect(audit_db.admin) as conn:
        dropped = [
            r[0]
            for r in conn.execute(
                "SELECT haltgate.audit_drop_partitions_before('2027-01-01T00:00:00Z')"
            )
        ]
    assert dropped == ["audit_records_202609"]
    assert audit_db.count() == 2


def test_cli_retention_keeps_recent_months(audit_db: AuditDatabase) -> None:
    now = datetime.now(UTC)
    _insert(audit_db.writer, 2, run="recent", time=now.timestamp())
    _insert(audit_db.writer, 2, run="old", time=datetime(2020, 1, 15, tzinfo=UTC).timestamp())
    argv = [
        sys.executable,
        "-c",
        "from haltgate.cli.main import main; main()",
        "audit",
        "retention",
        "--dsn",
        audit_db.admin,
        "--keep-months",
        "12",
    ]
    repo = Path(__file__).resolve().parents[2]
    dry = subprocess.run(
        [*argv, "--dry-run"], cwd=repo, capture_output=True, text=True, timeout=60, check=False
    )
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.strip() == "would drop haltgate.audit_records_202001"
    assert audit_db.count() == 4
    done = subprocess.run(argv, cwd=repo, capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.strip() == "dropped haltgate.audit_records_202001"
    assert audit_db.count() == 2
