"""`haltgate audit history` lists a run in chain order, whatever the record times say."""

from __future__ import annotations

import orjson
import psycopg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from haltgate.governance.audit.api import OPENAPI, create_app
from haltgate.governance.audit.query import RecordFilter, query_records
from haltgate.governance.audit.record import Chainer
from tests.audit.conftest import AuditDatabase
from tests.audit.helpers import BASE_TIME, haltgate_cli, insert_lines, make_record

pytestmark = pytest.mark.postgres

TOKEN = "t0ken-for-the-chain-order-api"


def _fill(db: AuditDatabase) -> None:
    """40 records of one run: pairs sharing a timestamp (record ids are random, so a
    (ts, record_id) order puts about half of the pairs the wrong way round), and outcome
    records sealed after a later intent (the sidecar seals outcomes after the answer left)."""
    chainer = Chainer()
    lines = []
    for i in range(20):
        same = BASE_TIME + i
        lines.append(chainer.seal(make_record(2 * i, run="run-h", time=same))[1])
        lines.append(
            chainer.seal(
                make_record(
                    2 * i + 1, run="run-h", phase="outcome", time=same - (0.5 if i % 4 == 0 else 0)
                )
            )[1]
        )
    with psycopg.connect(db.writer) as conn:
        insert_lines(conn, lines)


def test_history_is_in_chain_sequence(audit_db: AuditDatabase) -> None:
    _fill(audit_db)
    hist = haltgate_cli("audit", "history", "run-h", "--dsn", audit_db.reader, "-o", "jsonl")
    assert hist.returncode == 0, hist.stderr
    seqs = [orjson.loads(line)["seq"] for line in hist.stdout.splitlines()]
    assert seqs == list(range(1, 41))


def test_chain_order_pages_with_a_cursor(audit_db: AuditDatabase) -> None:
    _fill(audit_db)
    seen: list[int] = []
    cursor = None
    for _ in range(20):
        page = query_records(
            audit_db.reader, RecordFilter(run_id="run-h"), limit=7, cursor=cursor, order="chain"
        )
        seen.extend(d["seq"] for d in page.records)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == list(range(1, 41))


async def test_api_serves_a_run_in_chain_order(audit_db: AuditDatabase) -> None:
    """``order=chain`` on the HTTP API: the same sequence order as the CLI, paged by a
    cursor; a chain cursor is refused for a time order."""
    _fill(audit_db)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with TestClient(TestServer(create_app(audit_db.reader, TOKEN))) as client:
        seen: list[int] = []
        params = {"limit": "9", "order": "chain"}
        cursor = None
        for _ in range(20):
            response = await client.get("/v1/runs/run-h/records", headers=auth, params=params)
            assert response.status == 200, await response.text()
            body = await response.json()
            seen.extend(r["seq"] for r in body["records"])
            cursor = body["next_cursor"]
            if cursor is None:
                break
            params = {"limit": "9", "order": "chain", "cursor": cursor}
        assert seen == list(range(1, 41))
        first = await (
            await client.get("/v1/records", headers=auth, params={"limit": "5", "order": "chain"})
        ).json()
        mixed = await client.get(
            "/v1/records", headers=auth, params={"order": "asc", "cursor": first["next_cursor"]}
        )
        assert mixed.status == 400 and (await mixed.json())["error"]["code"] == "bad_cursor"
        bad = await client.get("/v1/records", headers=auth, params={"order": "random"})
        assert bad.status == 400 and "chain" in (await bad.json())["error"]["message"]
    order = next(
        p for p in OPENAPI["paths"]["/v1/records"]["get"]["parameters"] if p["name"] == "order"
    )
    assert order["schema"]["enum"] == ["asc", "desc", "chain"]
