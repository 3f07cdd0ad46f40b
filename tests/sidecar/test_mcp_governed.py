"""MCP governed whole (issue 15, item 2): one test per way around the MCP rules.

Every test runs the real sidecar against the stand-in MCP server, which reads method names
case-insensitively (as a lenient server may) and counts what it executed
(``/_standin/executions``): the measure of what got past the sidecar.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from haltgate.testbed.standins._common import BEHAVIOR_HEADER
from tests.sidecar.conftest import ADMIN_TOKEN, SidecarFactory, Standins
from tests.sidecar.test_mcp import call, rpc

SHADOW = "file:///etc/shadow"


async def executed(standins: Standins) -> dict[str, int]:
    async with aiohttp.ClientSession() as s, s.get(standins.mcp + "/_standin/executions") as r:
        return dict(await r.json())


def upstream_bodies(standins: Standins) -> list[Any]:
    return [orjson.loads(r.body) for r in standins.received("mcp").requests if r.method == "POST"]


def error_code(body: Any) -> str:
    return str(body["error"]["data"]["code"])


def tools(n: int, name: str = "echo") -> list[dict[str, Any]]:
    return [rpc("tools/call", i, name=name, arguments={"text": str(i)}) for i in range(n)]


# --------------------------------------------------------------------------- batches


async def test_batch_uses_one_call_per_element(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    """``calls: {limit: 10}``: a batch of 50 tools/call is 50 calls, refused whole."""
    sc = await sidecar_factory({"spec": {"budgets": {"calls": {"limit": 10}}}})
    status, body, _ = await call(sc.explicit + "/mcp", tools(50))
    assert status == 200
    assert len(body) == 50
    assert {error_code(m) for m in body} == {"calls_exhausted"}
    assert await executed(standins) == {}
    status, body, _ = await call(sc.explicit + "/mcp", tools(10))
    assert [m["result"]["content"][0]["text"] for m in body] == [str(i) for i in range(10)]
    assert await executed(standins) == {"tool": 10}


async def test_batch_counts_every_tool_for_distinct_tools(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    """Only the first tool of a batch used to count for ``distinctTools``."""
    sc = await sidecar_factory({"spec": {"budgets": {"distinctTools": {"limit": 2}}}})
    batch = [
        rpc("tools/call", 1, name="echo", arguments={"text": "x"}),
        rpc("tools/call", 2, name="add", arguments={"a": 1, "b": 2}),
        rpc("tools/call", 3, name="search", arguments={"query": "q"}),
    ]
    _status, body, _ = await call(sc.explicit + "/mcp", batch)
    assert {error_code(m) for m in body} == {"distinct_tools_exhausted"}
    assert await executed(standins) == {}


async def test_batch_risk_is_charged_per_element(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    rules = [
        {"name": "risky-echo", "action": "allow", "kind": "mcp", "mcpTools": ["echo"], "risk": 1.0}
    ]
    sc = await sidecar_factory(
        {
            "spec": {
                "budgets": {"riskScore": {"limit": 2.5}},
                "tools": {"default": "deny", "rules": rules},
            }
        }
    )
    _status, body, _ = await call(sc.explicit + "/mcp", tools(3))
    assert {error_code(m) for m in body} == {"risk_exceeded"}
    assert await executed(standins) == {}


async def test_batch_with_a_denied_resource_fails_whole(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory()
    batch = [
        rpc("tools/call", 1, name="echo", arguments={"text": "x"}),
        rpc("resources/read", 2, uri=SHADOW),
    ]
    _status, body, _ = await call(sc.explicit + "/mcp", batch)
    assert [m["id"] for m in body] == [1, 2]
    assert {error_code(m) for m in body} == {"resource_not_allowed"}
    assert not upstream_bodies(standins)


async def test_concurrent_batches_never_exceed_the_calls_limit(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    """``calls: {limit: N}`` with many concurrent batches: at most N tools run upstream,
    and a batch runs whole or not at all."""
    limit = 10
    sc = await sidecar_factory({"spec": {"budgets": {"calls": {"limit": limit}}}})

    async def batch(n: int) -> list[Any]:
        _, body, _ = await call(
            sc.explicit + "/mcp", tools(3, "echo"), **{BEHAVIOR_HEADER: "sse" if n % 2 else ""}
        )
        return list(body)

    answers = await asyncio.gather(*(batch(n) for n in range(40)))
    ran = (await executed(standins)).get("tool", 0)
    assert 0 < ran <= limit
    whole = [a for a in answers if all("result" in m for m in a)]
    refused = [a for a in answers if all("error" in m for m in a)]
    assert len(whole) + len(refused) == len(answers)
    assert ran == 3 * len(whole)


# --------------------------------------------------------------------------- methods


async def test_method_names_are_exact(sidecar_factory: SidecarFactory, standins: Standins) -> None:
    """``Tools/Call`` is not ``tools/call``: refused, not passed (the stand-in, like a
    lenient server, would run it)."""
    sc = await sidecar_factory()
    for method in ("Tools/Call", "TOOLS/CALL", "tools/call ", "Resources/Read"):
        msg = rpc(method, 1, name="delete_file", arguments={"path": "/"}, uri=SHADOW)
        status, body, _ = await call(sc.explicit + "/mcp", msg)
        assert status == 400
        assert error_code(body) == "mcp_method_unknown", method
    assert await executed(standins) == {}
    assert not upstream_bodies(standins)


async def test_duplicate_and_case_colliding_keys_are_ambiguous(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory()
    raw = [
        b'{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/call",'
        b'"params":{"name":"delete_file","arguments":{"path":"/"}}}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call",'
        b'"params":{"name":"search","Name":"delete_file","arguments":{"query":"x"}}}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call",'
        b'"params":{"name":"delete_file","name":"search","arguments":{"query":"x"}}}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call",'
        b'"params":{"name":"read_file","arguments":{"path":"/a","PATH":"/etc/shadow"}}}',
        # a lone field spelled otherwise: a case-insensitive server still reads it
        b'{"jsonrpc":"2.0","id":1,"result":{},"Method":"tools/call",'
        b'"params":{"name":"delete_file","arguments":{"path":"/"}}}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call",'
        b'"params":{"name":"read_file","Arguments":{"path":"/etc/shadow"}}}',
        b'{"jsonrpc":"2.0","id":1,"method":"initialize",'
        b'"params":{"protocolVersion":"2025-06-18","capabilities":{"Sampling":{}}}}',
        b'{"jsonrpc":"2.0","id":1,"method":"initialize",'
        b'"params":{"protocolversion":"2025-06-18","capabilities":{}}}',
        # U+017F (long s) folds to "s": Go reads "param" + U+017F as params
        b'{"jsonrpc":"2.0","id":1,"method":"ping","param\xc5\xbf":{"name":"x"}}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call",'
        b'"params":{"name":"read_file","arguments":{},"_META":{}}}',
    ]
    async with aiohttp.ClientSession() as s:
        for body in raw:
            async with s.post(
                sc.explicit + "/mcp", data=body, headers={"Content-Type": "application/json"}
            ) as r:
                answer = await r.json()
            assert error_code(answer) == "ambiguous_json", body
    assert not upstream_bodies(standins)


async def test_resources_read_is_denied_by_default(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory()
    _, body, headers = await call(sc.explicit + "/mcp", rpc("resources/read", 1, uri=SHADOW))
    assert error_code(body) == "resource_not_allowed"
    assert headers["x-haltgate-failure-type"] == "SAFETY"
    _status, body, _ = await call(sc.explicit + "/mcp", rpc("resources/list", 2))
    assert error_code(body) == "resource_not_allowed"
    assert await executed(standins) == {}


async def test_resources_allow_list_by_uri_glob(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory(
        {
            "spec": {
                "mcp": {
                    "resources": {
                        "rules": [
                            {"name": "docs", "action": "allow", "uris": ["file:///srv/docs/**"]},
                            {
                                "name": "no-secrets",
                                "action": "deny",
                                "uris": ["file:///srv/docs/secret/**"],
                            },
                        ]
                    }
                }
            }
        }
    )
    ok = "file:///srv/docs/guide/intro.md"
    _, body, _ = await call(sc.explicit + "/mcp", rpc("resources/read", 1, uri=ok))
    assert body["result"]["contents"][0]["uri"] == ok
    _, body, _ = await call(sc.explicit + "/mcp", rpc("resources/list", 2))
    assert "result" in body
    refused = {
        "file:///srv/docs/secret/key": "resource_denied",
        SHADOW: "resource_not_allowed",
        "file:///srv/docs/../../etc/shadow": "ambiguous_uri",
        "file:///srv/docs/%2e%2e/%2e%2e/etc/shadow": "ambiguous_uri",
        "file:///srv/docs/..%2F..%2Fetc/shadow": "ambiguous_uri",
        "file:///srv/docs//secret/key": "ambiguous_uri",
        "file:///srv/docs/%73ecret/key": "ambiguous_uri",
        "FILE:///srv/docs/secret/key": "resource_denied",
    }
    for n, (uri, code) in enumerate(refused.items()):
        _status, body, _ = await call(sc.explicit + "/mcp", rpc("resources/read", 10 + n, uri=uri))
        assert error_code(body) == code, uri
    assert await executed(standins) == {"resource": 1}


async def test_prompts_are_allow_listed(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory()
    _, body, _ = await call(sc.explicit + "/mcp", rpc("prompts/get", 1, name="summarize"))
    assert error_code(body) == "prompt_not_allowed"
    sc = await sidecar_factory(
        {
            "spec": {
                "mcp": {
                    "prompts": {
                        "rules": [{"name": "summaries", "action": "allow", "prompts": ["summar*"]}]
                    }
                }
            }
        }
    )
    _, body, _ = await call(sc.explicit + "/mcp", rpc("prompts/get", 2, name="summarize"))
    assert body["result"]["messages"][0]["content"]["text"] == "prompt summarize"
    _, body, _ = await call(sc.explicit + "/mcp", rpc("prompts/get", 3, name="exfiltrate"))
    assert error_code(body) == "prompt_not_allowed"
    completion = rpc(
        "completion/complete",
        4,
        ref={"type": "ref/prompt", "name": "exfiltrate"},
        argument={"name": "x", "value": ""},
    )
    _status, body, _ = await call(sc.explicit + "/mcp", completion)
    assert error_code(body) == "prompt_not_allowed"
    assert await executed(standins) == {"prompt": 1}


async def test_sampling_and_elicitation_capabilities_are_removed(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory()
    init = rpc(
        "initialize",
        1,
        protocolVersion="2025-06-18",
        capabilities={"sampling": {}, "elicitation": {}, "roots": {"listChanged": True}},
        clientInfo={"name": "agent", "version": "1"},
    )
    _status, body, _ = await call(sc.explicit + "/mcp", init)
    assert body["result"]["serverInfo"]["name"] == "standin-mcp"
    sent = upstream_bodies(standins)[-1]
    assert sent["params"]["capabilities"] == {"roots": {"listChanged": True}}
    sc = await sidecar_factory({"spec": {"mcp": {"sampling": "allow"}}})
    await call(sc.explicit + "/mcp", init)
    assert upstream_bodies(standins)[-1]["params"]["capabilities"] == {
        "sampling": {},
        "roots": {"listChanged": True},
    }


async def test_denied_server_requests_never_reach_the_agent(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory()
    async with (
        aiohttp.ClientSession() as s,
        s.get(
            sc.explicit + "/mcp",
            headers={"Accept": "text/event-stream", BEHAVIOR_HEADER: "server-requests"},
        ) as r,
    ):
        raw = await r.read()
    methods = [
        orjson.loads(line[6:]).get("method")
        for line in raw.split(b"\n")
        if line.startswith(b"data: ")
    ]
    assert methods == ["roots/list", "notifications/message"]
    assert b"id: ev-2\n" in raw  # what is relayed is relayed unchanged


# --------------------------------------------------------------------------- session


async def test_session_messages_use_no_budget(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    """With ``calls: 1`` a whole session (initialize, notifications, ping, tools/list, the
    GET stream) still leaves the one call for a tool."""
    sc = await sidecar_factory({"spec": {"budgets": {"calls": {"limit": 1}}}})
    url = sc.explicit + "/mcp"
    status, body, _ = await call(
        url,
        rpc(
            "initialize",
            1,
            protocolVersion="2025-06-18",
            capabilities={},
            clientInfo={"name": "a", "version": "1"},
        ),
    )
    assert "result" in body
    status, _, _ = await call(url, rpc("notifications/initialized", None))
    assert status == 202
    for n in range(3):
        status, body, _ = await call(url, rpc("ping", 10 + n))
        assert "result" in body
    status, body, _ = await call(url, rpc("tools/list", 20))
    assert "result" in body
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        assert r.status == 405  # the stand-in has no GET stream by default
    status, body, _ = await call(url, rpc("tools/call", 30, name="echo", arguments={"text": "x"}))
    assert body["result"]["content"][0]["text"] == "x"
    status, body, _ = await call(url, rpc("tools/call", 31, name="echo", arguments={"text": "y"}))
    assert error_code(body) == "calls_exhausted"


async def test_teardown_is_never_refused(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    """A halted agent still closes its session upstream (DELETE is forwarded)."""
    sc = await sidecar_factory()
    async with aiohttp.ClientSession() as s:
        async with s.post(
            sc.admin + "/halt",
            json={"message": "stop"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as r:
            assert r.status == 200
        _status, body, _ = await call(sc.explicit + "/mcp", rpc("ping", 1))
        assert body["error"]["data"]["type"] == "EXTERNAL"
        async with s.delete(
            sc.explicit + "/mcp", headers={"Mcp-Session-Id": "standin-session-1"}
        ) as r:
            assert r.status == 200
    deletes = [r for r in standins.received("mcp").requests if r.method == "DELETE"]
    assert len(deletes) == 1
    assert deletes[0].headers["Mcp-Session-Id"] == "standin-session-1"


async def test_open_event_stream_holds_no_reservation(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory({"spec": {"budgets": {"calls": {"limit": 1}}}})
    async with (
        aiohttp.ClientSession() as s,
        s.get(sc.explicit + "/mcp", headers={BEHAVIOR_HEADER: "hold"}) as stream,
    ):
        assert stream.status == 200
        await stream.content.readline()  # the stream is open upstream
        _status, body, _ = await call(
            sc.explicit + "/mcp", rpc("tools/call", 1, name="echo", arguments={"text": "x"})
        )
        assert body["result"]["content"][0]["text"] == "x"


async def test_bodies_nothing_reads_never_go_upstream(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    """A DELETE or GET with a body, or another HTTP method, would reach the server unread."""
    sc = await sidecar_factory()
    smuggled = orjson.dumps(rpc("tools/call", 1, name="delete_file", arguments={"path": "/"}))
    async with aiohttp.ClientSession() as s:
        for method, code in (
            ("DELETE", "invalid_request"),
            ("GET", "invalid_request"),
            ("PUT", "mcp_http_method"),
            ("PATCH", "mcp_http_method"),
        ):
            async with s.request(
                method,
                sc.explicit + "/mcp",
                data=smuggled,
                headers={"Content-Type": "application/json"},
            ) as r:
                assert r.status == 400, method
                assert r.headers["x-haltgate-code"] == code, method
    assert not standins.received("mcp").requests


async def test_denied_server_requests_are_taken_out_of_answers(
    sidecar_factory: SidecarFactory,
) -> None:
    """In a JSON batch answer, a streamed answer, and a tools/list stream read whole."""
    sc = await sidecar_factory()
    for mode, message in (
        ("server-requests", rpc("ping", 1)),
        ("server-requests-sse", rpc("ping", 1)),
        ("server-requests-sse", rpc("tools/list", 2)),
    ):
        _, body, _ = await call(sc.explicit + "/mcp", message, **{BEHAVIOR_HEADER: mode})
        methods = [m.get("method") for m in (body if isinstance(body, list) else [body])]
        assert "sampling/createMessage" not in methods, mode
        assert "elicitation/create" not in methods, mode
        assert methods[:2] == ["roots/list", "notifications/message"], mode
        assert "result" in (body if isinstance(body, list) else [body])[-1]
    sc = await sidecar_factory({"spec": {"mcp": {"sampling": "allow", "elicitation": "allow"}}})
    _, body, _ = await call(
        sc.explicit + "/mcp", rpc("ping", 1), **{BEHAVIOR_HEADER: "server-requests"}
    )
    assert [m.get("method") for m in body][:2] == ["sampling/createMessage", "elicitation/create"]


async def test_resource_and_prompt_listings_are_filtered(sidecar_factory: SidecarFactory) -> None:
    """Like tools/list: the agent sees only what it may use (JSON and SSE answers)."""
    sc = await sidecar_factory(
        {
            "spec": {
                "mcp": {
                    "resources": {
                        "rules": [
                            {"name": "docs", "action": "allow", "uris": ["file:///srv/docs/**"]}
                        ]
                    },
                    "prompts": {
                        "rules": [{"name": "summaries", "action": "allow", "prompts": ["summar*"]}]
                    },
                }
            }
        }
    )
    for mode in ("", "sse"):
        batch = [rpc("resources/list", 1), rpc("prompts/list", 2)]
        _, body, _ = await call(sc.explicit + "/mcp", batch, **{BEHAVIOR_HEADER: mode})
        by_id = {m["id"]: m["result"] for m in body}
        assert [r["uri"] for r in by_id[1]["resources"]] == ["file:///srv/docs/readme.txt"]
        assert [p["name"] for p in by_id[2]["prompts"]] == ["summarize"]


def test_server_request_filter_reads_escaped_keys() -> None:
    """The byte-level fast path never skips a request spelt with escapes."""
    from haltgate.governance.mcp import McpAuthorizer
    from haltgate.governance.policy_rules import Mcp
    from haltgate.sidecar.mcp_answers import ServerRequestFilter

    f = ServerRequestFilter(McpAuthorizer(Mcp()))
    sampling = (
        b'id: 7\ndata: {"jsonrpc":"2.0","id":1,"\\u006dethod":'
        b'"sampling\\/createMessage","params":{}}\n\n'
    )
    kept = b'id: 8\ndata: {"jsonrpc":"2.0","id":2,"result":{}}\n\n'
    assert f.raw(sampling + kept) == kept
    assert f.raw(kept) is kept
    assert f.dropped == ["sampling/createMessage"]


MCP_REGO = """
package haltgate

import rego.v1

default decision := {"allow": true}

decision := {"allow": false, "reason": "no drafts", "failure_type": "SAFETY"} if {
    some m in input.mcp
    startswith(m.uri, "file:///srv/docs/drafts/")
}
"""


@pytest.mark.opa
async def test_opa_sees_every_mcp_message(
    sidecar_factory: SidecarFactory, standins: Standins, opa_server: str
) -> None:
    """OPA reads the resource of the second message of a batch (in canonical form)."""
    sc = await sidecar_factory(
        {
            "spec": {
                "opa": {"rego": MCP_REGO},
                "mcp": {
                    "resources": {
                        "rules": [
                            {"name": "docs", "action": "allow", "uris": ["file:///srv/docs/**"]}
                        ]
                    }
                },
            }
        },
        opa_url=opa_server,
    )
    batch = [
        rpc("resources/read", 1, uri="file:///srv/docs/a.md"),
        rpc("resources/read", 2, uri="FILE:///srv/docs/drafts/b.md"),
    ]
    _, body, _ = await call(sc.explicit + "/mcp", batch)
    assert all("error" in m for m in body), body
    assert {error_code(m) for m in body} == {"opa_denied"}
    _, body, _ = await call(sc.explicit + "/mcp", batch[0])
    assert body["result"]["contents"][0]["uri"] == "file:///srv/docs/a.md"
    assert await executed(standins) == {"resource": 1}


async def test_random_batches_run_whole_or_not_at_all(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    """A seeded sweep of mixed batches against an oracle of the rules: a batch reaches the
    server only if every message in it is allowed, and then all of its work runs."""
    import random

    rng = random.Random(15)
    sc = await sidecar_factory(
        {
            "spec": {
                "mcp": {
                    "resources": {
                        "rules": [
                            {"name": "docs", "action": "allow", "uris": ["file:///srv/docs/**"]}
                        ]
                    }
                }
            }
        }
    )
    pieces: list[tuple[str, bool, dict[str, Any]]] = [
        # (kind of work, allowed?, message without id)
        (
            "tool",
            True,
            {"method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x"}}},
        ),
        (
            "tool",
            True,
            {"method": "tools/call", "params": {"name": "add", "arguments": {"a": 1, "b": 2}}},
        ),
        (
            "tool",
            False,
            {"method": "tools/call", "params": {"name": "delete_file", "arguments": {"path": "/"}}},
        ),
        (
            "tool",
            False,
            {"method": "Tools/Call", "params": {"name": "echo", "arguments": {"text": "x"}}},
        ),
        ("resource", True, {"method": "resources/read", "params": {"uri": "file:///srv/docs/a"}}),
        ("resource", False, {"method": "resources/read", "params": {"uri": SHADOW}}),
        (
            "resource",
            False,
            {"method": "resources/read", "params": {"uri": "file:///srv/docs/../../etc/shadow"}},
        ),
        ("", True, {"method": "ping"}),
        ("", True, {"method": "tools/list"}),
    ]
    expected = {"tool": 0, "resource": 0}
    for n in range(40):  # bounded sweep
        chosen = [rng.choice(pieces) for _ in range(rng.randint(1, 6))]
        batch = [{"jsonrpc": "2.0", "id": i, **msg} for i, (_, _, msg) in enumerate(chosen)]
        before = len(standins.received("mcp").requests)
        _, body, _ = await call(sc.explicit + "/mcp", batch)
        forwarded = len(standins.received("mcp").requests) > before
        assert forwarded == all(ok for _, ok, _ in chosen), (n, batch, body)
        if forwarded:
            for kind, _, _ in chosen:
                if kind:
                    expected[kind] += 1
        else:  # denials answer every id; unreadable input one error with id null
            assert all("error" in m for m in (body if isinstance(body, list) else [body]))
    ran = await executed(standins)
    assert {k: ran.get(k, 0) for k in expected} == expected


async def test_compressed_answers_cannot_carry_server_requests(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    """The filter reads plain bytes: a server that compresses although asked for identity
    is refused while server requests are denied, relayed when they are all allowed."""
    sc = await sidecar_factory()
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        async with s.post(
            sc.explicit + "/mcp",
            data=orjson.dumps(rpc("ping", 1)),
            headers={BEHAVIOR_HEADER: "gzip"},
        ) as r:
            assert r.status == 502
            assert r.headers["x-haltgate-code"] == "mcp_answer_encoded"
    sc = await sidecar_factory({"spec": {"mcp": {"sampling": "allow", "elicitation": "allow"}}})
    _, body, _ = await call(sc.explicit + "/mcp", rpc("ping", 2), **{BEHAVIOR_HEADER: "gzip"})
    assert body == {"jsonrpc": "2.0", "id": 2, "result": {}}
