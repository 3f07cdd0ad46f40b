"""Budgets counted where the work happens: ``calls: {limit: N}`` means at most N tools run
upstream, as the upstream readers count them, however the calls are batched and however
many batches race; MCP session messages run and cost nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.differential.harness import UPSTREAMS, Bed, Exchange, Request, running_bed

LIMIT = 10
BATCH = 3
BATCHES = 24


@pytest.fixture(scope="module")
def budget_bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    with running_bed(
        tmp_path_factory.mktemp("differential-budgets"),
        extra={"budgets": {"calls": {"limit": LIMIT}}},
    ) as started:
        yield started


def _tools_call(ident: int) -> dict[str, object]:
    return {
        "jsonrpc": "2.0",
        "id": ident,
        "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": str(ident)}},
    }


def _mcp(upstream: str, body: object) -> Request:
    return Request(f"{upstream}-mcp", "POST", "", json.dumps(body).encode())


def _tools_run(exchanges: list[Exchange]) -> int:
    return sum(
        1
        for ex in exchanges
        for e in ex.executed
        for c in e["rpc"] or []
        if c["method"] == "tools/call"
    )


def test_calls_limit_holds_upstream_for_racing_batches(budget_bed: Bed) -> None:
    session: list[dict[str, Any]] = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "agent", "version": "1"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "ping"},
    ]
    for upstream in UPSTREAMS:
        opened = budget_bed.send(_mcp(upstream, session))
        assert opened.forwarded, f"session refused: {opened.refusal}"
        assert [c["method"] for c in opened.executed[0]["rpc"]] == [m["method"] for m in session]

    batches = [
        _mcp(UPSTREAMS[n % len(UPSTREAMS)], [_tools_call(n * BATCH + i) for i in range(BATCH)])
        for n in range(BATCHES)
    ]
    with ThreadPoolExecutor(max_workers=12) as pool:
        racing = list(pool.map(budget_bed.send, batches))
    ran = _tools_run(racing)
    whole = [ex for ex in racing if ex.forwarded]
    assert all(len(ex.executed) == 1 and len(ex.executed[0]["rpc"]) == BATCH for ex in whole), (
        "a batch ran in part"
    )
    assert all(not ex.executed for ex in racing if not ex.forwarded)
    # The session cost nothing, so exactly LIMIT // BATCH batches fit, whatever the race.
    assert ran == BATCH * len(whole) == BATCH * (LIMIT // BATCH)

    rest = [budget_bed.send(_mcp("go", _tools_call(1000 + i))) for i in range(2)]
    assert [ex.forwarded for ex in rest] == [True, False]
    assert ran + _tools_run(rest) == LIMIT
