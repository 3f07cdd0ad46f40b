"""One reading of every request (issue 15): what the sidecar decides on is what the
upstream executes. Each case of the issue's attacker run, through a real sidecar to the
stand-in upstreams: refused (typed 400) or governed as what the upstream would read.

Raw sockets send the request lines: HTTP clients normalise the very paths these tests need
unnormalised.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from tests.sidecar.conftest import SidecarFactory, Standins


@pytest.fixture
def http_server(both_http_servers: str) -> str:
    """Every test here runs on both explicit-port servers (llhttp and aiohttp)."""
    return both_http_servers


DENY_ADMIN = {
    "name": "no-admin",
    "action": "deny",
    "kind": "http",
    "paths": ["/echo/admin/**", "/echo/secret"],
}
DENY_GPT5 = {"name": "no-gpt-5", "action": "deny", "kind": "llm", "models": ["gpt-5*"]}
CHAT = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "one two three"}],
    "max_tokens": 5,
}


def policy(*rules: dict[str, Any], default: str = "allow", **spec: Any) -> dict[str, Any]:
    return {"spec": {"tools": {"default": default, "rules": list(rules)}, **spec}}


async def raw_http(
    base: str, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """Send one request with the target exactly as given; (status, parsed JSON body)."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    head = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
    for name, value in (headers or {}).items():
        head += f"{name}: {value}\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    writer.write(head.encode("latin-1") + b"\r\n" + body)
    await writer.drain()
    async with asyncio.timeout(10):
        answer = await reader.read()
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    payload = rest.partition(b"\r\n\r\n")[2]
    try:
        parsed = orjson.loads(payload) if payload else None
    except orjson.JSONDecodeError:
        parsed = payload
    return int(status_line.split()[1]), parsed


def code_of(payload: Any) -> str | None:
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        error = payload["error"]
        data = error.get("data")
        return data.get("code") if isinstance(data, dict) else error.get("code")
    return None


# ---------------------------------------------------------------------- paths


@pytest.mark.parametrize(
    ("target", "status", "code"),
    [
        ("/api/echo/%61dmin/x", 403, "tool_denied"),  # decoded before the rules, then denied
        ("/api/echo/ADMIN/x", 403, "tool_denied"),  # deny rules ignore case
        ("/api/echo/secret/", 403, "tool_denied"),  # ... and a trailing '/'
        ("/api/echo//admin/x", 400, "ambiguous_path"),  # empty segment
        ("/api/echo/admin%2Fx", 400, "ambiguous_path"),  # encoded '/'
        ("/api/echo/admin%2fx", 400, "ambiguous_path"),
        ("/api/echo/admin%5Cx", 400, "ambiguous_path"),  # encoded '\'
        ("/api/echo/admin%00x", 400, "ambiguous_path"),  # NUL
        ("/api/echo/admin%252Fx", 400, "ambiguous_path"),  # double encoding
        ("/api/echo/admin;x/y", 400, "ambiguous_path"),  # ';' parameters
        ("/api/echo/x/%2e%2e/admin/y", 400, "invalid_path"),
        ("/api/echo/x/../admin/y", 400, "invalid_path"),
    ],
)
async def test_path_spellings_of_a_denied_path(
    sidecar_factory: SidecarFactory, standins: Standins, target: str, status: int, code: str
) -> None:
    sc = await sidecar_factory(policy(DENY_ADMIN))
    got, payload = await raw_http(sc.explicit, "GET", target)
    assert (got, code_of(payload)) == (status, code)
    assert not standins.received("api").requests


async def test_canonical_path_is_what_the_upstream_receives(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory(policy(DENY_ADMIN))
    status, payload = await raw_http(sc.explicit, "GET", "/api/echo/%7Euser/%61b%20c?q=%61")
    assert status == 200, payload
    (received,) = standins.received("api").requests
    # Unreserved characters decoded, other escapes kept: the bytes the rules were matched on.
    assert received.raw_path == "/echo/~user/ab%20c"


async def test_path_parameters_allowed_by_policy_match_without_them(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory(policy(DENY_ADMIN, limits={"pathParameters": "allow"}))
    status, payload = await raw_http(sc.explicit, "GET", "/api/echo/admin;x/y")
    assert (status, code_of(payload)) == (403, "tool_denied")
    status, _ = await raw_http(sc.explicit, "GET", "/api/echo/ok;jsessionid=1/y")
    assert status == 200
    (received,) = standins.received("api").requests
    assert received.raw_path == "/echo/ok;jsessionid=1/y"


# ---------------------------------------------------------------------- LLM calls in disguise


@pytest.mark.parametrize(
    "target",
    [
        "/llm/v1/chat/%63ompletions",
        "/llm/v1/chat/completions/",
        "/llm/V1/Chat/Completions",
        "/llm/v1/anything-else",
    ],
)
async def test_llm_call_in_disguise_is_governed(
    sidecar_factory: SidecarFactory, standins: Standins, target: str
) -> None:
    sc = await sidecar_factory(policy(DENY_GPT5))
    body = orjson.dumps({**CHAT, "model": "gpt-5"})
    status, payload = await raw_http(sc.explicit, "POST", target, body)
    assert (status, code_of(payload)) == (403, "tool_denied")
    assert not standins.received("llm").requests


async def test_llm_call_to_encoded_path_is_metered(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory(policy(DENY_GPT5))
    status, payload = await raw_http(
        sc.explicit, "POST", "/llm/v1/chat/%63ompletions", orjson.dumps(CHAT)
    )
    assert status == 200, payload
    assert standins.received("llm").requests[-1].raw_path == "/v1/chat/completions"
    for _ in range(200):
        outcomes = [r for r in sc.audit.records if r.phase == "outcome"]
        if outcomes:
            break
        await asyncio.sleep(0.01)
    (record,) = outcomes
    assert record.kind == "llm" and record.usage is not None
    assert record.usage["output_tokens"] == 5


async def test_llm_call_with_path_parameter_is_refused(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory(policy(DENY_GPT5))
    status, payload = await raw_http(
        sc.explicit, "POST", "/llm/v1/chat/completions;x", orjson.dumps({**CHAT, "model": "gpt-5"})
    )
    assert (status, code_of(payload)) == (400, "ambiguous_path")
    assert not standins.received("llm").requests


async def test_llm_body_sent_to_an_http_tool_is_an_llm_call(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory(policy(DENY_GPT5))
    status, payload = await raw_http(
        sc.explicit, "POST", "/api/echo/v1/chat", orjson.dumps({**CHAT, "model": "gpt-5"})
    )
    assert (status, code_of(payload)) == (403, "tool_denied")
    assert not standins.received("api").requests


# ---------------------------------------------------------------------- model names


@pytest.mark.parametrize(
    "model", ["GPT-5", " gpt-5", "openai/gpt-5", "gpt-5-2025-08-07", "OpenAI/GPT-5-mini "]
)
async def test_model_spellings_match_deny_rules(
    sidecar_factory: SidecarFactory, standins: Standins, model: str
) -> None:
    sc = await sidecar_factory(policy(DENY_GPT5))
    status, payload = await raw_http(
        sc.explicit, "POST", "/llm/v1/chat/completions", orjson.dumps({**CHAT, "model": model})
    )
    assert (status, code_of(payload)) == (403, "tool_denied")
    assert not standins.received("llm").requests


async def test_model_allow_rule_matches_prefixed_name(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    allow = {"name": "mini", "action": "allow", "kind": "llm", "models": ["gpt-4o-mini"]}
    sc = await sidecar_factory(policy(allow, default="deny"))
    status, _ = await raw_http(
        sc.explicit,
        "POST",
        "/llm/v1/chat/completions",
        orjson.dumps({**CHAT, "model": "openai/GPT-4o-mini"}),
    )
    assert status == 200


# ---------------------------------------------------------------------- JSON read twice


@pytest.mark.parametrize(
    "body",
    [
        b'{"model":"gpt-4o-mini","Model":"gpt-5","messages":[{"role":"user","content":"hi"}]}',
        b'{"model":"gpt-5","messages":[{"role":"user","content":"hi"}],"model":"gpt-4o-mini"}',
        b'{"MODEL":"gpt-5","messages":[{"role":"user","content":"hi"}]}',
        b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a","content":"b"}]}',
        b'{"model":"gpt-4o-mini","mod\\u0065l":"gpt-5","messages":[]}',
        b'{"model":"gpt-4o-mini","max_tokens":5,"Max_Tokens":99999,"messages":[]}',
    ],
)
async def test_ambiguous_llm_json_is_refused(
    sidecar_factory: SidecarFactory, standins: Standins, body: bytes
) -> None:
    sc = await sidecar_factory(policy(DENY_GPT5))
    status, payload = await raw_http(sc.explicit, "POST", "/llm/v1/chat/completions", body)
    assert (status, code_of(payload)) == (400, "ambiguous_json")
    assert not standins.received("llm").requests


def rpc(method: str, params: dict[str, Any] | bytes, **extra: Any) -> bytes:
    raw_params = params if isinstance(params, bytes) else orjson.dumps(params)
    head = orjson.dumps({"jsonrpc": "2.0", "id": 7, "method": method, **extra})
    return head[:-1] + b',"params":' + raw_params + b"}"


@pytest.mark.parametrize(
    "body",
    [
        rpc("ping", {"name": "delete_file", "arguments": {"path": "/x"}}, Method="tools/call"),
        rpc("tools/call", b'{"name":"echo","Name":"delete_file","arguments":{}}'),
        rpc("tools/call", b'{"name":"delete_file","name":"echo","arguments":{}}'),
        rpc("tools/call", b'{"name":"echo","arguments":{"text":"a","text":"b"}}'),
        rpc("tools/call", b'{"name":"echo","arguments":{"o":{"k":1,"K":2}}}'),
    ],
)
async def test_ambiguous_mcp_json_is_refused(
    sidecar_factory: SidecarFactory, standins: Standins, body: bytes
) -> None:
    sc = await sidecar_factory()
    status, payload = await raw_http(
        sc.explicit, "POST", "/mcp", body, {"Accept": "application/json, text/event-stream"}
    )
    assert code_of(payload) == "ambiguous_json", (status, payload)
    assert not standins.received("mcp").requests


# ---------------------------------------------------------------------- meaning overrides


@pytest.mark.parametrize(
    ("target", "headers"),
    [
        ("/api/items", {"X-HTTP-Method-Override": "DELETE"}),
        ("/api/items", {"x-method-override": "DELETE"}),
        ("/api/items", {"X-HTTP-Method": "DELETE"}),
        ("/api/items", {"X-Original-URL": "/admin"}),
        ("/api/items", {"X-Rewrite-URL": "/admin"}),
        ("/api/items?_method=DELETE", {}),
        ("/api/items?%5Fmethod=DELETE", {}),
    ],
)
async def test_meaning_override_is_refused(
    sidecar_factory: SidecarFactory, standins: Standins, target: str, headers: dict[str, str]
) -> None:
    only_post = {"name": "post-items", "action": "allow", "kind": "http", "methods": ["POST"]}
    sc = await sidecar_factory(policy(only_post, default="deny"))
    status, payload = await raw_http(sc.explicit, "POST", target, b'{"name":"x"}', headers)
    assert (status, code_of(payload)) == (400, "meaning_override")
    assert not standins.received("api").requests


# ---------------------------------------------------------------------- real upper bounds

TOKENS_100K = {"tokens": {"limit": 100_000}}


@pytest.mark.parametrize(
    "extra",
    [
        {"previous_response_id": "resp_123"},
        {"conversation": "conv_123"},
        {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-123"}]}]},
        {
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_image", "image_url": "https://example.com/huge.png"}
                    ],
                }
            ]
        },
        {"tools": [{"type": "web_search"}]},
    ],
)
async def test_stored_context_reserves_the_context_window(
    sidecar_factory: SidecarFactory, standins: Standins, extra: dict[str, Any]
) -> None:
    # gpt-4o-mini: 128k context window > the 100k token budget, so the call cannot fit.
    sc = await sidecar_factory(policy(budgets=TOKENS_100K))
    body = {"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": 5, **extra}
    status, payload = await raw_http(sc.explicit, "POST", "/llm/v1/responses", orjson.dumps(body))
    assert code_of(payload) == "tokens_exhausted", (status, payload)
    assert not standins.received("llm").requests


async def test_plain_call_still_fits(sidecar_factory: SidecarFactory) -> None:
    sc = await sidecar_factory(policy(budgets=TOKENS_100K))
    body = {"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": 5}
    status, payload = await raw_http(sc.explicit, "POST", "/llm/v1/responses", orjson.dumps(body))
    assert status == 200, payload


async def test_stored_context_of_unknown_window_is_refused(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    # The test policy prices unknown models with a default that names no context window.
    sc = await sidecar_factory(policy(budgets=TOKENS_100K))
    body = {"model": "in-house-model", "input": "hi", "previous_response_id": "resp_1"}
    status, payload = await raw_http(sc.explicit, "POST", "/llm/v1/responses", orjson.dumps(body))
    assert code_of(payload) == "unknown_context_window", (status, payload)
    assert not standins.received("llm").requests
    # Declared in the policy, the window is reserved and the call fits.
    sc2 = await sidecar_factory(
        policy(
            budgets=TOKENS_100K,
            pricing={
                "unknownModel": "default",
                "default": {"input": 1.0, "output": 2.0, "contextWindow": 50_000},
            },
        )
    )
    status, payload = await raw_http(
        sc2.explicit, "POST", "/llm/v1/responses", orjson.dumps({**body, "max_output_tokens": 5})
    )
    assert status == 200, payload


@pytest.mark.parametrize(
    "caps",
    [
        {"max_completion_tokens": 1, "max_tokens": 999_999},
        {"max_tokens": 1, "max_completion_tokens": 999_999},
        {"max_tokens": 30_000, "n": 5},
        {"n": 7},  # no cap: each completion may reach gpt-4o-mini's 16,384 tokens
    ],
)
async def test_largest_output_cap_is_reserved(
    sidecar_factory: SidecarFactory, standins: Standins, caps: dict[str, int]
) -> None:
    sc = await sidecar_factory(policy(budgets=TOKENS_100K))
    body = {"model": "gpt-4o-mini", "messages": CHAT["messages"], **caps}
    status, payload = await raw_http(
        sc.explicit, "POST", "/llm/v1/chat/completions", orjson.dumps(body)
    )
    assert code_of(payload) == "tokens_exhausted", (status, payload)
    assert not standins.received("llm").requests


async def test_non_integer_output_cap_is_refused(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory(policy(budgets=TOKENS_100K))
    body = {**CHAT, "max_tokens": "999999"}
    status, payload = await raw_http(
        sc.explicit, "POST", "/llm/v1/chat/completions", orjson.dumps(body)
    )
    assert (status, code_of(payload)) == (400, "invalid_request")
    assert not standins.received("llm").requests


async def test_llm_call_of_unknown_dialect_without_usage_spends_its_reservation(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    # An LLM-shaped body to an endpoint whose answer carries no usage haltgate can read:
    # the usage is unknown, so the whole reservation is spent, not an estimate of ours.
    body = orjson.dumps({**CHAT, "max_tokens": 50})
    reservation = len(body) + 50
    sc = await sidecar_factory(policy(budgets={"tokens": {"limit": 2 * reservation - 1}}))
    status, payload = await raw_http(sc.explicit, "POST", "/api/echo/v1/generate", body)
    assert status == 200, payload
    status, payload = await raw_http(sc.explicit, "POST", "/api/echo/v1/generate", body)
    assert code_of(payload) == "tokens_exhausted", (status, payload)
    assert len(standins.received("api").requests) == 1
