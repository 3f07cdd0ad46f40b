"""The shared migration runner (haltgate.governance.migrations) on the real PostgreSQL:
per-component history tables, checksum check, version collisions."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from haltgate.governance.audit.migrate import AUDIT_MIGRATIONS
from haltgate.governance.audit.migrate import migrate as migrate_audit
from haltgate.governance.migrations import MigrationError, MigrationSet, migrate
from haltgate.governance.pool.store import POOL_MIGRATIONS, PoolStoreError
from haltgate.governance.pool.store import migrate as migrate_pool
from tests.audit.conftest import AuditDatabase

pytestmark = pytest.mark.postgres


def _history(dsn: str, table: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [
            f"{v:04d}_{n}"
            for v, n in conn.execute(f"SELECT version, name FROM haltgate.{table} ORDER BY version")
        ]


def test_audit_and_pool_keep_separate_histories(audit_db: AuditDatabase) -> None:
    audit_before = _history(audit_db.admin, AUDIT_MIGRATIONS.table)
    applied = migrate_pool(audit_db.admin)
    assert applied and applied[0].startswith("0001_")
    assert _history(audit_db.admin, POOL_MIGRATIONS.table) == applied
    assert _history(audit_db.admin, AUDIT_MIGRATIONS.table) == audit_before
    assert migrate_audit(audit_db.admin) == [] and migrate_pool(audit_db.admin) == []


def test_a_changed_migration_is_refused_not_rerun(audit_db: AuditDatabase, tmp_path: Path) -> None:
    folder = tmp_path / "schema"
    folder.mkdir()
    (folder / "0001_things.sql").write_text("CREATE TABLE haltgate.things (x int);\n")
    (folder / "README.md").write_text("not a migration\n")
    things = MigrationSet(
        source=folder, table="things_migrations", lock_key=0x7465_7374, what="things migration"
    )
    assert [m.label for m in migrate(audit_db.admin, things)] == ["0001_things"]
    (folder / "0002_more.sql").write_text("ALTER TABLE haltgate.things ADD y int;\n")
    assert [m.label for m in migrate(audit_db.admin, things)] == ["0002_more"]
    (folder / "0001_things.sql").write_text("CREATE TABLE haltgate.things (x bigint);\n")
    with pytest.raises(MigrationError, match="things migration 0001_things was changed"):
        migrate(audit_db.admin, things)
    (folder / "0001_things.sql").write_text("CREATE TABLE haltgate.things (x int);\n")
    (folder / "0002_other.sql").write_text("SELECT 1;\n")
    with pytest.raises(MigrationError, match="two migrations with version 0002"):
        migrate(audit_db.admin, things)
    assert _history(audit_db.admin, "things_migrations") == ["0001_things", "0002_more"]


def test_the_pool_reports_a_changed_migration_as_a_store_error(audit_db: AuditDatabase) -> None:
    migrate_pool(audit_db.admin)
    with psycopg.connect(audit_db.admin) as conn:
        conn.execute("UPDATE haltgate.pool_migrations SET sha256 = 'x' WHERE version = 1")
    with pytest.raises(PoolStoreError, match=r"pool migration 0001_\w+ was changed"):
        migrate_pool(audit_db.admin)
