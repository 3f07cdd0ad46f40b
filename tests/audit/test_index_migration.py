"""Migration 0004 (decision-id index as a hash index) on the real PostgreSQL: it applies to
a database at the previous schema that holds records, every read the product makes returns
the same before and after, explain's lookup stays index-backed, and it is idempotent."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from haltgate.governance import migrations
from haltgate.governance.audit.api import _EXPLAIN_SQL
from haltgate.governance.audit.migrate import AUDIT_MIGRATIONS, available_migrations, migrate
from haltgate.governance.audit.query import Order, RecordFilter, cost_by_agent, query_records
from haltgate.governance.audit.record import Chainer
from haltgate.governance.audit.sources import database_records
from haltgate.governance.audit.verify import verify_database
from tests.audit.helpers import BASE_TIME, insert_lines, make_record

pytestmark = pytest.mark.postgres

MIGRATION = available_migrations()[-1]


@pytest.fixture
def old_schema_db(postgres_dsn: str, tmp_path: Path) -> Iterator[str]:
    """A database migrated up to the version before 0004, holding records of two months."""
    assert MIGRATION.label == "0004_decision_hash_index"
    name = f"audit_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    info = psycopg.conninfo.conninfo_to_dict(postgres_dsn)
    info["dbname"] = name
    dsn = psycopg.conninfo.make_conninfo(**info)
    folder = tmp_path / "schema"
    folder.mkdir()
    for m in available_migrations():
        if m.version < MIGRATION.version:
            (folder / f"{m.label}.sql").write_text(m.sql)
    migrations.migrate(dsn, dataclasses.replace(AUDIT_MIGRATIONS, source=folder))
    chainer = Chainer()
    lines = []
    for i in range(240):
        run = f"run-{i % 4}"
        extra: dict[str, Any] = {"time": BASE_TIME + i * 9000.0}  # 240 x 2.5 h: two months
        if i % 11 == 3:
            extra.update(decision="deny", failure_type="SAFETY", code="tool_denied")
        for phase in ("intent", "outcome"):
            record = make_record(
                i,
                run=run,
                pod=f"agent-{i % 4}",
                phase=phase,
                decision_id=uuid.uuid4().hex,
                workload="researcher" if i % 2 else "writer",
                **extra,
            )
            lines.append(chainer.seal(record)[1])
    with psycopg.connect(dsn) as conn:
        insert_lines(conn, lines)
    try:
        yield dsn
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _all_pages(dsn: str, flt: RecordFilter, order: Order) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        page = query_records(dsn, flt, limit=37, cursor=cursor, order=order)
        out.extend(page.records)
        cursor = page.next_cursor
        if cursor is None:
            return out
    raise AssertionError("pagination did not end")


def _reads(dsn: str) -> dict[str, Any]:
    """What the query API, the CLI, explain/replay/simulate and verify read."""
    with psycopg.connect(dsn) as conn:
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT decision_id FROM haltgate.audit_records ORDER BY ts, record_id LIMIT 40"
            )
        ]
        chain = conn.execute("SELECT min(chain_id) FROM haltgate.audit_records").fetchone()
        explained = {d: conn.execute(_EXPLAIN_SQL, (d,)).fetchall() for d in ids}
    assert chain is not None
    filters = [
        RecordFilter(),
        RecordFilter(namespace="team-a", workload="writer"),
        RecordFilter(run_id="run-1"),
        RecordFilter(chain_id=chain[0]),
        RecordFilter(decision="deny"),
        RecordFilter(failure_type="SAFETY"),
        RecordFilter(tool="search"),
    ]
    doc: dict[str, Any] = {"explain": explained}
    for n, flt in enumerate(filters):
        for order in ("asc", "desc", "chain"):
            doc[f"records {n} {order}"] = _all_pages(dsn, flt, order)  # type: ignore[arg-type]
        doc[f"cost {n}"] = cost_by_agent(dsn, flt)
    doc["sources run"] = database_records(dsn, run_id="run-2")
    doc["sources decision"] = database_records(dsn, decision_id=ids[7])
    doc["sources workload"] = database_records(dsn, workload="writer")
    doc["verify"] = verify_database(dsn).as_dict()
    doc["verify chain"] = verify_database(dsn, chain_id=chain[0]).as_dict()
    return doc


def _indexes(dsn: str) -> dict[str, str]:
    """Index name -> access method, of the audit table and its partitions."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT c.relname, am.amname FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam"
            " JOIN pg_class t ON t.oid = i.indrelid"
            " WHERE t.relname LIKE 'audit_records%%'"
            " AND pg_get_indexdef(c.oid) LIKE '%%decision_id%%'"
        ).fetchall()
    return {str(n): str(a) for n, a in rows}


def test_migration_keeps_every_read_and_indexes_decisions_by_hash(old_schema_db: str) -> None:
    dsn = old_schema_db
    before_indexes = _indexes(dsn)
    assert "audit_records_decision" in before_indexes
    assert set(before_indexes.values()) == {"btree"}
    before = _reads(dsn)
    assert before["verify"]["ok"] and before["explain"] and len(before["records 0 asc"]) == 480

    assert [m.label for m in migrate(dsn)] == [MIGRATION.label]

    after_indexes = _indexes(dsn)
    assert "audit_records_decision" not in after_indexes
    assert after_indexes["audit_records_decision_hash"] == "hash"
    # One hash index on the parent and on each partition (two months + default), no btree.
    assert len(after_indexes) >= 4 and set(after_indexes.values()) == {"hash"}
    assert _reads(dsn) == before

    # explain's lookup stays index-backed (seq scans priced out: the table is small).
    with psycopg.connect(dsn) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(
            r[0] for r in conn.execute("EXPLAIN " + _EXPLAIN_SQL, (before["explain"].popitem()[0],))
        )
    assert any(name in plan for name, am in after_indexes.items() if am == "hash"), plan

    # Idempotent: the file runs again on the migrated database without error or change.
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        conn.execute(MIGRATION.sql.encode())
    assert _indexes(dsn) == after_indexes


def test_an_index_built_ahead_concurrently_is_kept(old_schema_db: str) -> None:
    """The docs' recipe for a large trail: build the hash index by hand without blocking the
    shipper (ON ONLY, then CONCURRENTLY per partition and ATTACH); the migration then only
    drops the btree."""
    dsn = old_schema_db
    before = _reads(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE INDEX IF NOT EXISTS audit_records_decision_hash"
            " ON ONLY haltgate.audit_records USING hash (decision_id)"
        )
        parts = [
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'haltgate.audit_records'::regclass ORDER BY 1"
            )
        ]
        assert len(parts) >= 3  # two months and the default partition
        for part in parts:
            conn.execute(
                f"CREATE INDEX CONCURRENTLY {part}_decision_hash"
                f" ON haltgate.{part} USING hash (decision_id)"
            )
            conn.execute(
                "ALTER INDEX haltgate.audit_records_decision_hash"
                f" ATTACH PARTITION haltgate.{part}_decision_hash"
            )
        valid = conn.execute(
            "SELECT indisvalid FROM pg_index"
            " WHERE indexrelid = 'haltgate.audit_records_decision_hash'::regclass"
        ).fetchone()
        assert valid == (True,)
        built = conn.execute(
            "SELECT oid FROM pg_class WHERE relname = 'audit_records_decision_hash'"
        ).fetchone()

    assert [m.label for m in migrate(dsn)] == [MIGRATION.label]
    indexes = _indexes(dsn)
    assert set(indexes.values()) == {"hash"} and "audit_records_decision" not in indexes
    with psycopg.connect(dsn) as conn:
        same = conn.execute(
            "SELECT oid FROM pg_class WHERE relname = 'audit_records_decision_hash'"
        ).fetchone()
    assert same == built  # not rebuilt
    assert _reads(dsn) == before


def test_a_new_database_gets_the_hash_index_only(audit_db: Any) -> None:
    indexes = _indexes(audit_db.admin)
    assert indexes.get("audit_records_decision_hash") == "hash"
    assert "audit_records_decision" not in indexes
