"""MCP through the sidecar: tool authorization, JSON-RPC errors, batches, tools/list."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest

from tests.sidecar.conftest import SidecarFactory, Standins


@pytest.fixture
def http_server(both_http_servers: str) -> str:
    """Every test here runs on both explicit-port servers (llhttp and aiohttp)."""
    return both_http_servers


def rpc(method: str, msg_id: Any = 1, **params: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if msg_id is not None:
        msg["id"] = msg_id
    if params:
        msg["params"] = params
    return msg


async def call(url: str, payload: Any, **headers: str) -> tuple[int, Any, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            url,
            data=orjson.dumps(payload),
            headers={"Accept": "application/json, text/event-stream", **headers},
        ) as r,
    ):
        raw = await r.read()
        if r.content_type == "text/event-stream":
            events = [
                orjson.loads(line[6:]) for line in raw.split(b"\n") if line.startswith(b"data: ")
            ]
            return r.status, events, dict(r.headers)
        return r.status, orjson.loads(raw) if raw else None, dict(r.headers)


async def test_allowed_tool_call(sidecar_factory: SidecarFactory, standins: Standins) -> None:
    sc = await sidecar_factory()
    status, body, headers = await call(
        sc.explicit + "/mcp", rpc("tools/call", 7, name="add", arguments={"a": 2, "b": 3})
    )
    assert status == 200
    assert body == {
        "jsonrpc": "2.0",
        "id": 7,
        "result": {"content": [{"type": "text", "text": "5"}], "isError": False},
    }
    assert headers["Mcp-Session-Id"] == "standin-session-1"


async def test_denied_tool_is_jsonrpc_error(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory()
    status, body, headers = await call(
        sc.explicit + "/mcp",
        rpc("tools/call", "req-9", name="delete_file", arguments={"path": "/etc"}),
    )
    assert status == 200
    assert body["id"] == "req-9"
    error = body["error"]
    assert error["code"] == -32003
    assert error["data"]["type"] == "SAFETY"
    assert error["data"]["code"] == "tool_denied"
    assert error["data"]["decision_id"] == headers["x-haltgate-decision-id"]
    assert headers["x-haltgate-failure-type"] == "SAFETY"
    assert not standins.received("mcp").requests


async def test_batch_with_one_denied_call_is_refused_whole(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory()
    batch = [
        rpc("tools/call", 1, name="echo", arguments={"text": "x"}),
        rpc("tools/call", 2, name="delete_file", arguments={"path": "/"}),
        rpc("notifications/progress", None),
    ]
    status, body, _ = await call(sc.explicit + "/mcp", batch)
    assert status == 200
    assert [m["id"] for m in body] == [1, 2]
    assert all(m["error"]["data"]["code"] == "tool_denied" for m in body)
    assert not standins.received("mcp").requests


async def test_allowed_batch(sidecar_factory: SidecarFactory) -> None:
    sc = await sidecar_factory()
    batch = [
        rpc("tools/call", 1, name="echo", arguments={"text": "x"}),
        rpc("tools/call", 2, name="add", arguments={"a": 1, "b": 1}),
    ]
    status, body, _ = await call(sc.explicit + "/mcp", batch)
    assert status == 200
    assert [m["result"]["content"][0]["text"] for m in body] == ["x", "2"]


async def test_tools_list_is_filtered(sidecar_factory: SidecarFactory) -> None:
    sc = await sidecar_factory()
    for headers in ({}, {"x-standin-behavior": "sse"}):
        status, body, _ = await call(sc.explicit + "/mcp", rpc("tools/list", 3), **headers)
        assert status == 200
        message = body[0] if isinstance(body, list) else body
        names = [t["name"] for t in message["result"]["tools"]]
        assert "delete_file" not in names
        assert {"echo", "add", "read_file", "search"} <= set(names)


async def test_sse_answer_relayed(sidecar_factory: SidecarFactory) -> None:
    sc = await sidecar_factory()
    status, events, _ = await call(
        sc.explicit + "/mcp",
        rpc("tools/call", 4, name="echo", arguments={"text": "hi"}),
        **{"x-standin-behavior": "sse"},
    )
    assert status == 200
    assert events == [
        {
            "jsonrpc": "2.0",
            "id": 4,
            "result": {"content": [{"type": "text", "text": "hi"}], "isError": False},
        }
    ]


async def test_notification_and_initialize(sidecar_factory: SidecarFactory) -> None:
    sc = await sidecar_factory()
    status, body, _ = await call(
        sc.explicit + "/mcp", rpc("initialize", 0, protocolVersion="2025-06-18")
    )
    assert status == 200 and body["result"]["serverInfo"]["name"] == "standin-mcp"
    status, body, _ = await call(sc.explicit + "/mcp", rpc("notifications/initialized", None))
    assert status == 202 and body is None


async def test_tools_call_without_id_is_refused(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory()
    status, body, _ = await call(
        sc.explicit + "/mcp", rpc("tools/call", None, name="echo", arguments={})
    )
    assert status == 400
    assert body["id"] is None
    assert body["error"]["code"] == -32600
    assert body["error"]["data"]["code"] == "jsonrpc_missing_id"
    assert not standins.received("mcp").requests


async def test_invalid_json_is_parse_error(sidecar_factory: SidecarFactory) -> None:
    sc = await sidecar_factory()
    async with aiohttp.ClientSession() as s, s.post(sc.explicit + "/mcp", data=b"{nope") as r:
        assert r.status == 400
        body = await r.json()
    assert body["error"]["code"] == -32700 and body["id"] is None
    assert body["error"]["data"]["code"] == "invalid_json"


async def test_identical_tool_calls_halt_as_stagnation(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory({"spec": {"budgets": {"identicalRetries": {"limit": 3}}}})
    statuses = []
    for i in range(5):
        _, body, _ = await call(
            sc.explicit + "/mcp",
            rpc("tools/call", i, name="search", arguments={"query": "same thing"}),
        )
        statuses.append(body.get("error", {}).get("data", {}).get("type"))
    assert statuses[:2] == [None, None]
    assert "STAGNATION" in statuses
    refused = statuses.index("STAGNATION")
    assert len(standins.received("mcp").requests) == refused
