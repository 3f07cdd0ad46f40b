"""Tampering as a superuser (triggers bypassed) is found by verify, with its position."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import psycopg
import pytest

from haltgate.governance.audit.record import Chainer, record_hash
from haltgate.governance.audit.verify import ChainRecord, verify_chains, verify_database
from tests.audit.conftest import AuditDatabase
from tests.audit.helpers import haltgate_cli, insert_lines, make_record

CHAIN = "team-a/agent-0/run-1"


@pytest.fixture
def chain_db(audit_db: AuditDatabase) -> Iterator[AuditDatabase]:
    """Ten records of one chain and five of another, shipped."""
    chainer = Chainer()
    lines = [chainer.seal(make_record(i))[1] for i in range(10)]
    lines += [chainer.seal(make_record(i, run="run-2"))[1] for i in range(5)]
    with psycopg.connect(audit_db.writer) as conn:
        insert_lines(conn, lines)
    yield audit_db


def tamper(db: AuditDatabase, sql: str, *params: object) -> None:
    """Run ``sql`` as the superuser with triggers disabled, the way an insider would."""
    with psycopg.connect(db.admin) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(sql, params)


def record_at(db: AuditDatabase, seq: int) -> dict:
    with psycopg.connect(db.admin) as conn:
        row = conn.execute(
            "SELECT record FROM haltgate.audit_records WHERE chain_id = %s AND seq = %s",
            (CHAIN, seq),
        ).fetchone()
    assert row is not None
    return orjson.loads(row[0])


def kinds(db: AuditDatabase) -> set[tuple[str, int | None]]:
    return {(p.kind, p.seq) for p in verify_database(db.reader).problems}


def test_intact_chains_verify(chain_db: AuditDatabase) -> None:
    report = verify_database(chain_db.reader)
    assert report.ok and (report.chains, report.records) == (2, 15)


def test_edited_record_text(chain_db: AuditDatabase) -> None:
    doc = record_at(chain_db, 4)
    doc["decision"] = "allow" if doc["decision"] == "deny" else "deny"
    tamper(
        chain_db,
        "UPDATE haltgate.audit_records SET record = %s WHERE chain_id = %s AND seq = 4",
        orjson.dumps(doc).decode(),
        CHAIN,
    )
    # The decision column still says the truth, so it disagrees with the edited text too.
    assert kinds(chain_db) == {("hash_mismatch", 4), ("column_mismatch", 4)}


def test_edited_column_only(chain_db: AuditDatabase) -> None:
    tamper(
        chain_db,
        "UPDATE haltgate.audit_records SET failure_type = NULL, decision = 'allow'"
        " WHERE chain_id = %s AND seq = 10",
        CHAIN,
    )
    problems = verify_database(chain_db.reader).problems
    assert [(p.kind, p.seq) for p in problems] == [("column_mismatch", 10)]
    assert "decision" in problems[0].detail


def test_edit_with_recomputed_hash_breaks_the_next_link(chain_db: AuditDatabase) -> None:
    doc = record_at(chain_db, 6)
    doc["cost_usd"] = 0.0
    doc["hash"] = record_hash(doc)
    tamper(
        chain_db,
        "UPDATE haltgate.audit_records SET record = %s, hash = %s WHERE chain_id = %s AND seq = 6",
        orjson.dumps(doc).decode(),
        doc["hash"],
        CHAIN,
    )
    assert kinds(chain_db) == {("broken_link", 7), ("column_mismatch", 6)}


def test_removed_records(chain_db: AuditDatabase) -> None:
    tamper(
        chain_db, "DELETE FROM haltgate.audit_records WHERE chain_id = %s AND seq IN (1, 5)", CHAIN
    )
    assert kinds(chain_db) == {("missing_start", 2), ("seq_gap", 6)}


def test_inserted_record(chain_db: AuditDatabase) -> None:
    forged = record_at(chain_db, 3)
    forged.update(record_id="00000000-0000-4000-8000-000000000000", decision="allow")
    forged["hash"] = record_hash(forged)
    with psycopg.connect(chain_db.admin) as conn:
        insert_lines(conn, [orjson.dumps(forged)])
    assert ("duplicate_seq", 3) in kinds(chain_db)


def test_reordered_records(chain_db: AuditDatabase) -> None:
    # Swap positions 3 and 4, re-hashing both so each looks self-consistent.
    three, four = record_at(chain_db, 3), record_at(chain_db, 4)
    three["seq"], four["seq"] = 4, 3
    for doc in (three, four):
        doc["hash"] = record_hash(doc)
        tamper(
            chain_db,
            "UPDATE haltgate.audit_records SET record = %s, seq = %s, hash = %s"
            " WHERE record_id = %s",
            orjson.dumps(doc).decode(),
            doc["seq"],
            doc["hash"],
            doc["record_id"],
        )
    found = kinds(chain_db)
    assert {("broken_link", 3), ("broken_link", 4), ("broken_link", 5)} <= found


def test_reordered_lines_in_an_export_are_reported() -> None:
    chainer = Chainer()
    lines = [chainer.seal(make_record(i))[1] for i in range(4)]
    lines[1], lines[2] = lines[2], lines[1]
    report = verify_chains(ChainRecord(line, n) for n, line in enumerate(lines))
    assert [(p.kind, p.seq) for p in report.problems] == [("out_of_order", 3)]


def test_cli_verify_exit_codes(chain_db: AuditDatabase) -> None:
    ok = haltgate_cli("audit", "verify", "--dsn", chain_db.reader)
    assert ok.returncode == 0, ok.stderr
    assert "OK: 2 chains, 15 records" in ok.stdout
    tamper(chain_db, "DELETE FROM haltgate.audit_records WHERE chain_id = %s AND seq = 7", CHAIN)
    bad = haltgate_cli("audit", "verify", "--dsn", chain_db.reader)
    assert bad.returncode == 1
    assert f"BROKEN seq_gap: chain {CHAIN} seq 8 (position 6)" in bad.stdout
