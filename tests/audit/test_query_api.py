"""Query (SQL, CLI) and the authenticated HTTP API against the real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import orjson
import psycopg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from haltgate.governance.audit.api import OPENAPI, create_app
from haltgate.governance.audit.query import (
    CursorError,
    RecordFilter,
    cost_by_agent,
    parse_time,
    query_records,
)
from haltgate.governance.audit.record import Chainer
from tests.audit.conftest import AuditDatabase
from tests.audit.helpers import BASE_TIME, haltgate_cli, insert_lines, make_record

TOKEN = "t0ken-for-the-audit-api-tests"


@pytest.fixture
def filled_db(audit_db: AuditDatabase) -> Iterator[AuditDatabase]:
    """run-1 of researcher: 30 calls (intent + outcome, 3 denied); run-9 of writer: 5
    intents."""
    chainer = Chainer()
    lines = []
    allow = {"decision": "allow", "failure_type": None, "code": None}
    deny = {"decision": "deny", "failure_type": "EXHAUSTION", "code": "tokens_exhausted"}
    for i in range(30):
        lines.append(
            chainer.seal(
                make_record(2 * i, time=BASE_TIME + i, **(deny if i % 10 == 5 else allow))
            )[1]
        )
        lines.append(
            chainer.seal(
                make_record(2 * i + 1, phase="outcome", time=BASE_TIME + i + 0.5, **allow)
            )[1]
        )
    for i in range(5):
        lines.append(
            chainer.seal(
                make_record(
                    i,
                    run="run-9",
                    pod="writer-0",
                    workload="writer",
                    time=BASE_TIME + 100 + i,
                    cost_usd=None,
                    **allow,
                )
            )[1]
        )
    with psycopg.connect(audit_db.writer) as conn:
        insert_lines(conn, lines)
    yield audit_db


def test_filters_and_cursor_pagination(filled_db: AuditDatabase) -> None:
    run1 = RecordFilter(run_id="run-1")
    seen: list[int] = []
    cursor = None
    for _ in range(10):
        page = query_records(filled_db.reader, run1, limit=7, cursor=cursor)
        seen.extend(d["seq"] for d in page.records)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == list(range(1, 61))
    denied = query_records(filled_db.reader, RecordFilter(decision="deny"), limit=100)
    assert {d["failure_type"] for d in denied.records} == {"EXHAUSTION"}
    assert [d["seq"] for d in denied.records] == [11, 31, 51]
    tools = query_records(filled_db.reader, RecordFilter(tool="search", workload="writer"))
    assert [d["seq"] for d in tools.records] == [1, 4]
    window = RecordFilter(
        since=datetime.fromtimestamp(BASE_TIME + 100, UTC),
        until=datetime.fromtimestamp(BASE_TIME + 102, UTC),
    )
    assert len(query_records(filled_db.reader, window).records) == 2
    newest = query_records(filled_db.reader, RecordFilter(), limit=1, order="desc")
    assert newest.records[0]["run_id"] == "run-9"
    with pytest.raises(CursorError):
        query_records(filled_db.reader, RecordFilter(), cursor=newest.next_cursor)


def test_cost_per_agent(filled_db: AuditDatabase) -> None:
    agents = {a["workload"]: a for a in cost_by_agent(filled_db.reader, RecordFilter())}
    assert agents["researcher"]["calls"] == 30
    assert agents["researcher"]["cost_usd"] == pytest.approx(30 * 0.00042)
    assert agents["researcher"]["output_tokens"] == 30 * 30
    assert agents["writer"]["calls"] == 5 and agents["writer"]["cost_usd"] == 0


def test_cli_history_and_json_query(filled_db: AuditDatabase) -> None:
    hist = haltgate_cli("audit", "history", "run-9", "--dsn", filled_db.reader)
    assert hist.returncode == 0, hist.stderr
    lines = hist.stdout.splitlines()
    assert lines[0].split()[:3] == ["TIME", "AGENT", "RUN"]
    assert len(lines) == 6 and all("team-a/writer" in line for line in lines[1:])
    out = haltgate_cli(
        "audit",
        "query",
        "--dsn",
        filled_db.reader,
        "-o",
        "json",
        "--decision",
        "deny",
        "--limit",
        "2",
    )
    assert out.returncode == 0, out.stderr
    page = orjson.loads(out.stdout)
    assert len(page["records"]) == 2 and page["next_cursor"]


async def test_api_requires_the_token_and_serves_queries(filled_db: AuditDatabase) -> None:
    app = create_app(filled_db.reader, TOKEN)
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/v1/records")).status == 401
        wrong = await client.get("/v1/records", headers={"Authorization": "Bearer nope"})
        assert wrong.status == 401 and "Bearer" in wrong.headers["WWW-Authenticate"]
        auth = {"Authorization": f"Bearer {TOKEN}"}
        first = await client.get("/v1/runs/run-1/records", params={"limit": "50"}, headers=auth)
        assert first.status == 200
        body = await first.json()
        assert len(body["records"]) == 50 and body["next_cursor"]
        rest = await (
            await client.get(
                "/v1/runs/run-1/records",
                headers=auth,
                params={"limit": "50", "cursor": body["next_cursor"]},
            )
        ).json()
        assert [r["seq"] for r in rest["records"]] == list(range(51, 61))
        assert rest["next_cursor"] is None
        costs = await (await client.get("/v1/costs", headers=auth)).json()
        assert {a["workload"] for a in costs["agents"]} == {"researcher", "writer"}
        bad = await client.get("/v1/records", params={"since": "yesterday"}, headers=auth)
        assert bad.status == 400 and (await bad.json())["error"]["code"] == "bad_request"
        unknown = await client.get("/v1/records", params={"agent": "x"}, headers=auth)
        assert unknown.status == 400
        report = await (await client.get("/v1/verify", headers=auth)).json()
        assert report["ok"] and report["records"] == 65
        spec = await (await client.get("/openapi.json")).json()
        assert spec == orjson.loads(orjson.dumps(OPENAPI))
        assert (await client.get("/healthz")).status == 200


def test_api_refuses_a_short_token() -> None:
    with pytest.raises(ValueError, match="16"):
        create_app("postgresql://unused", "short")


def test_time_bounds_are_epoch_seconds_or_iso_8601() -> None:
    """One reading of ``since``/``until`` for the CLI and the API; a bad one names the flag."""
    assert parse_time("0") == datetime(1970, 1, 1, tzinfo=UTC)
    assert parse_time("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_time("2026-11-01T12:00:00Z") == datetime(2026, 11, 1, 12, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_time("yesterday")
    bad = haltgate_cli("audit", "query", "--dsn", "x", "--since", "yesterday")
    assert bad.returncode == 2 and "'--since'" in bad.stderr and "not a time" in bad.stderr
