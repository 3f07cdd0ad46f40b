"""MCP answers the sidecar rewrites or answers itself (docs/policies.md section 2): a
dropped sampling or elicitation request is refused to the server in the agent's place, and
``resources/templates/list`` keeps only templates every expansion of which is allowed.
Real sidecar, stand-in MCP server (``testbed/haltgate/testbed/standins/mcp.py``)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from haltgate.testbed.standins._common import BEHAVIOR_HEADER
from tests.sidecar.conftest import SidecarFactory, Standins
from tests.sidecar.test_mcp import call, rpc


async def _server_answers(standins: Standins, n: int) -> list[tuple[Any, dict[str, str]]]:
    """The JSON-RPC responses (no method) POSTed to the stand-in, once ``n`` arrived (the
    sidecar sends them in the background: a bounded wait)."""
    found: list[tuple[Any, dict[str, str]]] = []
    for _ in range(200):
        found = [
            (body, r.headers)
            for r in standins.received("mcp").requests
            if r.method == "POST"
            and isinstance(body := orjson.loads(r.body), dict)
            and "method" not in body
        ]
        if len(found) >= n:
            break
        await asyncio.sleep(0.025)
    return found


@pytest.mark.parametrize(
    ("how", "mode"),
    [("get", "server-requests"), ("post", "server-requests"), ("post", "server-requests-sse")],
)
async def test_dropped_server_requests_are_answered_to_the_server(
    sidecar_factory: SidecarFactory, standins: Standins, how: str, mode: str
) -> None:
    """A dropped sampling or elicitation request is refused to the server (a JSON-RPC error
    POSTed as the client would answer it, with the agent's session and credentials), so
    the server does not wait for an answer that never comes; requests the policy allows
    (roots/list) are the agent's to answer."""
    sc = await sidecar_factory()
    agent = {
        BEHAVIOR_HEADER: mode,
        "Mcp-Session-Id": "session-7",
        "Authorization": "Bearer mcp-token",
    }
    if how == "get":
        async with (
            aiohttp.ClientSession() as s,
            s.get(sc.explicit + "/mcp", headers={"Accept": "text/event-stream", **agent}) as r,
        ):
            assert r.status == 200
            await r.read()
    else:
        status, _, _ = await call(sc.explicit + "/mcp", rpc("ping", 1), **agent)
        assert status == 200
    answers = await _server_answers(standins, 2)
    assert sorted(body["id"] for body, _ in answers) == ["s1", "s2"]
    methods = {"s1": "sampling/createMessage", "s2": "elicitation/create"}
    for body, headers in answers:
        assert body["error"]["code"] == -32003
        assert body["error"]["data"]["code"] == "mcp_server_request_denied"
        assert methods[body["id"]] in body["error"]["message"]
        assert headers["Mcp-Session-Id"] == "session-7"
        assert headers["Authorization"] == "Bearer mcp-token"
    # Audited with the call whose answer carried them.
    outcomes = [r for r in sc.audit.records if r.phase == "outcome"]
    refused = [
        f["type"]
        for r in outcomes
        for f in r.findings
        if f.get("action") == "server_request_refused"
    ]
    assert sorted(refused) == sorted(methods.values())


@pytest.mark.parametrize("mode", ["", "sse"])
async def test_resource_template_listings_are_filtered(
    sidecar_factory: SidecarFactory, mode: str
) -> None:
    """A template is listed only when every URI it can expand to is allowed: its fixed
    start lies under an allowing glob, and no deny rule could match an expansion."""
    docs = {"name": "docs", "action": "allow", "uris": ["file:///srv/docs/**"]}
    sc = await sidecar_factory({"spec": {"mcp": {"resources": {"rules": [docs]}}}})
    _, body, _ = await call(
        sc.explicit + "/mcp", rpc("resources/templates/list", 1), **{BEHAVIOR_HEADER: mode}
    )
    answer = body[0] if isinstance(body, list) else body
    listed = [t["name"] for t in answer["result"]["resourceTemplates"]]
    assert listed == ["docs", "docs-tree"]
    secrets = {"name": "no-secrets", "action": "deny", "uris": ["file:///srv/docs/secret*"]}
    sc = await sidecar_factory({"spec": {"mcp": {"resources": {"rules": [docs, secrets]}}}})
    _, body, _ = await call(sc.explicit + "/mcp", rpc("resources/templates/list", 1))
    assert body["result"]["resourceTemplates"] == []  # `{name}` could be `secret.txt`
    sc = await sidecar_factory({"spec": {"mcp": {"resources": {"default": "allow"}}}})
    _, body, _ = await call(sc.explicit + "/mcp", rpc("resources/templates/list", 1))
    assert len(body["result"]["resourceTemplates"]) == 5
