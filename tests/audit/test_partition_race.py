"""Two shippers creating the same monthly partition at once: both succeed."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import psycopg
import pytest

from tests.audit.conftest import AuditDatabase

pytestmark = pytest.mark.postgres

_MONTH = datetime(2031, 3, 15, tzinfo=UTC)


def test_concurrent_partition_creation_is_idempotent(audit_db: AuditDatabase) -> None:
    """The second caller waits on the first one's transaction and then finds the table,
    instead of failing with "relation ... already exists"."""
    results: list[object] = []
    with psycopg.connect(audit_db.writer) as first, psycopg.connect(audit_db.writer) as second:
        # Both sessions looked the catalog up before the table existed (as two shippers
        # starting the same month do), so their catalog caches say "absent".
        for conn in (first, second):
            conn.execute("SELECT to_regclass('haltgate.audit_records_203103')")
            conn.commit()
        row = first.execute("SELECT haltgate.audit_ensure_partition(%s)", (_MONTH,)).fetchone()
        assert row == ("audit_records_203103",)

        def racer() -> None:
            try:
                got = second.execute(
                    "SELECT haltgate.audit_ensure_partition(%s)", (_MONTH,)
                ).fetchone()
                second.commit()
                results.append(got)
            except psycopg.Error as e:  # what the shipper counted as a ship error
                results.append(e)

        thread = threading.Thread(target=racer)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive(), "the second caller must wait for the first transaction"
        first.commit()
        thread.join(10)
        assert not thread.is_alive()
    assert results == [("audit_records_203103",)], results
    with psycopg.connect(audit_db.admin) as conn:
        parts = conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'haltgate.audit_records'::regclass"
            " AND inhrelid = 'haltgate.audit_records_203103'::regclass"
        ).fetchone()
    assert parts == (1,)
