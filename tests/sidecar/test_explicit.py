"""Explicit mode end to end: agent -> sidecar (alias base URL) -> stand-in upstreams."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from haltgate.governance.audit import AuditRecord
from tests.sidecar.conftest import Running, SidecarFactory, Standins


@pytest.fixture
def http_server(both_http_servers: str) -> str:
    """Every test here runs on both explicit-port servers (llhttp and aiohttp)."""
    return both_http_servers


CHAT = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "one two three"}],
    "max_tokens": 5,
}


async def post(url: str, body: Any, **headers: str) -> tuple[int, dict[str, str], bytes]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    async with aiohttp.ClientSession() as s, s.post(url, data=raw, headers=headers) as r:
        return r.status, dict(r.headers), await r.read()


async def outcomes(sc: Running, n: int = 1) -> list[AuditRecord]:
    """Outcome records (written after the answer): wait for ``n`` of them, bounded."""
    for _ in range(200):
        found = [rec for rec in sc.audit.records if rec.phase == "outcome"]
        if len(found) >= n:
            return found
        await asyncio.sleep(0.01)
    raise AssertionError(f"expected {n} outcome records, found {len(found)}")


async def test_chat_answer_unchanged_and_headers(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory()
    raw = orjson.dumps(CHAT)
    status, _, direct = await post(standins.llm + "/v1/chat/completions", raw)
    status, headers, via = await post(sc.explicit + "/llm/v1/chat/completions", raw)
    assert status == 200
    assert via == direct
    assert headers["x-haltgate-decision-id"]
    assert float(headers["x-haltgate-overhead-ms"]) >= 0
    # The upstream received the agent's bytes unchanged.
    assert standins.received("llm").requests[-1].body == raw
    (record,) = await outcomes(sc)
    assert record.decision_id == headers["x-haltgate-decision-id"]
    assert record.usage is not None
    assert (record.usage["input_tokens"], record.usage["output_tokens"]) == (3, 5)
    assert record.usage["estimated"] is False
    intents = [rec for rec in sc.audit.records if rec.phase == "intent"]
    assert [i.decision_id for i in intents] == [record.decision_id]


async def test_stream_with_usage_is_byte_identical(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory()
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    _, _, direct = await post(standins.llm + "/v1/chat/completions", body)
    status, headers, via = await post(sc.explicit + "/llm/v1/chat/completions", body)
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    assert via == direct
    (record,) = await outcomes(sc)
    assert record.usage and record.usage["output_tokens"] == 5
    assert record.usage["estimated"] is False


async def test_stream_without_usage_gets_usage_injected(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory()
    body = {**CHAT, "stream": True}
    status, _, via = await post(sc.explicit + "/llm/v1/chat/completions", body)
    assert status == 200
    sent = orjson.loads(standins.received("llm").requests[-1].body)
    assert sent["stream_options"] == {"include_usage": True}
    # The usage the sidecar asked for is metered, not shown: the client sees what it gets
    # directly (tests/sidecar/test_stream_fidelity.py has the details).
    _, _, expected = await post(standins.llm + "/v1/chat/completions", body)
    assert via == expected
    (record,) = await outcomes(sc)
    assert record.usage and record.usage["output_tokens"] == 5
    assert not record.usage["estimated"]


@pytest.mark.parametrize(
    ("alias", "path", "body", "expect"),
    [
        (
            "claude",
            "/v1/messages",
            {
                "model": "claude-x",
                "max_tokens": 4,
                "stream": True,
                "messages": [{"role": "user", "content": "a b"}],
            },
            (2, 4),
        ),
        (
            "llm",
            "/v1/responses",
            {"model": "gpt-4o", "input": "a b c d", "max_output_tokens": 3, "stream": True},
            (4, 3),
        ),
        (
            "llm",
            "/v1/responses",
            {"model": "gpt-4o", "input": "a b", "max_output_tokens": 3},
            (2, 3),
        ),
        ("llm", "/v1/embeddings", {"model": "emb", "input": ["a b", "c"]}, (3, 0)),
        (
            "llm",
            "/v1/completions",
            {"model": "m", "prompt": "x y", "max_tokens": 2, "stream": True},
            (2, 2),
        ),
    ],
)
async def test_dialects_unchanged_with_usage(
    sidecar_factory: SidecarFactory,
    standins: Standins,
    alias: str,
    path: str,
    body: dict[str, Any],
    expect: tuple[int, int],
) -> None:
    sc = await sidecar_factory()
    _, _, direct = await post(standins.llm + path, body)
    status, _, via = await post(f"{sc.explicit}/{alias}{path}", body)
    assert status == 200
    assert via == direct
    (record,) = await outcomes(sc)
    assert record.usage is not None
    assert (record.usage["input_tokens"], record.usage["output_tokens"]) == expect


async def test_anthropic_cache_tokens_normalised(sidecar_factory: SidecarFactory) -> None:
    sc = await sidecar_factory()
    body = {
        "model": "claude-x",
        "max_tokens": 2,
        "messages": [{"role": "user", "content": "a b c d e f"}],
    }
    status, _, _ = await post(
        sc.explicit + "/claude/v1/messages",
        body,
        **{"x-standin-cached": "4", "x-standin-cache-write": "3"},
    )
    assert status == 200
    (record,) = await outcomes(sc)
    assert record.usage is not None
    # input = uncached (6-4) + cache reads (4) + cache writes (3)
    assert record.usage["input_tokens"] == 9
    assert record.usage["cached_input_tokens"] == 4
    assert record.usage["cache_write_tokens"] == 3


async def test_token_budget_refuses_with_typed_error(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    raw = orjson.dumps(CHAT)
    # Enough for one call's worst case (body bytes + max_tokens), not for two.
    limit = len(raw) + 5 + 5
    sc = await sidecar_factory({"spec": {"budgets": {"tokens": {"limit": limit}}}})
    status, _, _ = await post(sc.explicit + "/llm/v1/chat/completions", raw)
    assert status == 200
    forwarded = len(standins.received("llm").requests)
    status, headers, body = await post(sc.explicit + "/llm/v1/chat/completions", raw)
    assert status == 429
    error = orjson.loads(body)["error"]
    assert error["type"] == "EXHAUSTION"
    assert error["code"] == "tokens_exhausted"
    assert error["decision_id"] == headers["x-haltgate-decision-id"]
    assert error["budget"]["tokens"]["limit"] == limit
    assert len(standins.received("llm").requests) == forwarded  # nothing forwarded


async def test_stream_crossing_the_budget_is_cut(
    standins: Standins, sidecar_factory: SidecarFactory
) -> None:
    from haltgate.sidecar.pipeline_state import PipelineSettings

    body = {
        "model": "m",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "go"}],
    }
    raw = orjson.dumps(body)
    # The client names no max_tokens: the sidecar reserves 2; the budget leaves 3 more.
    sc = await sidecar_factory(
        {"spec": {"budgets": {"tokens": {"limit": len(raw) + 2 + 3}}}},
        pipeline=PipelineSettings(default_max_output_tokens=2),
    )
    status, _, via = await post(
        sc.explicit + "/llm/v1/chat/completions", raw, **{"x-standin-tokens": "200"}
    )
    assert status == 200
    assert b"event: error" in via
    tail = via.rsplit(b"data: ", 1)[1]
    error = orjson.loads(tail)["error"]
    assert (error["type"], error["code"]) == ("EXHAUSTION", "tokens_exhausted")
    assert b"tok150" not in via
    (record,) = await outcomes(sc)
    assert record.decision == "deny" and record.usage and record.usage["estimated"]


async def test_truncated_upstream_stream_ends_with_error_event(
    sidecar_factory: SidecarFactory,
) -> None:
    sc = await sidecar_factory()
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    status, _, via = await post(
        sc.explicit + "/llm/v1/chat/completions", body, **{"x-standin-behavior": "truncate"}
    )
    assert status == 200
    assert via.endswith(b"\n\n")
    error = orjson.loads(via.rsplit(b"data: ", 1)[1])["error"]
    assert error["code"] == "upstream_truncated"
    (record,) = await outcomes(sc)
    assert record.usage is not None and record.usage["estimated"] is True
    # The sidecar keeps serving.
    status, _, _ = await post(sc.explicit + "/llm/v1/chat/completions", CHAT)
    assert status == 200


async def test_upstream_error_is_relayed(sidecar_factory: SidecarFactory) -> None:
    sc = await sidecar_factory()
    status, headers, body = await post(
        sc.explicit + "/llm/v1/chat/completions", CHAT, **{"x-standin-behavior": "error"}
    )
    assert status == 500
    assert orjson.loads(body)["error"]["type"] == "server_error"
    assert headers["x-haltgate-decision-id"]


async def test_unknown_alias_is_404(sidecar_factory: SidecarFactory) -> None:
    sc = await sidecar_factory()
    status, headers, body = await post(sc.explicit + "/nope/v1/chat/completions", CHAT)
    assert status == 404
    assert orjson.loads(body)["error"]["code"] == "unknown_upstream"
    assert headers["x-haltgate-decision-id"]


async def test_denied_model_is_403_and_audited(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory(
        {
            "spec": {
                "tools": {
                    "rules": [
                        {
                            "name": "small-only",
                            "action": "allow",
                            "kind": "llm",
                            "models": ["tiny-*"],
                        }
                    ]
                }
            }
        }
    )
    status, _, body = await post(sc.explicit + "/llm/v1/chat/completions", CHAT)
    assert status == 403
    error = orjson.loads(body)["error"]
    assert (error["type"], error["code"]) == ("SAFETY", "tool_not_allowed")
    assert not standins.received("llm").requests
    (record,) = await outcomes(sc)
    assert (record.decision, record.code) == ("deny", "tool_not_allowed")


async def test_proxy_absolute_form(sidecar_factory: SidecarFactory, standins: Standins) -> None:
    sc = await sidecar_factory()
    async with aiohttp.ClientSession() as s:
        async with s.get(standins.api + "/items/1", proxy=sc.explicit) as r:
            assert r.status == 200
            assert r.headers["x-haltgate-decision-id"]
            assert await r.json() == {"id": "1", "name": "alpha"}
        async with s.delete(standins.api + "/items/1", proxy=sc.explicit) as r:
            assert r.status == 403
            assert (await r.json())["error"]["code"] == "tool_not_allowed"


async def test_http_tool_alias(sidecar_factory: SidecarFactory, standins: Standins) -> None:
    sc = await sidecar_factory()
    async with aiohttp.ClientSession() as s:
        async with s.get(sc.explicit + "/api/items?x=1") as r:
            assert r.status == 200
    seen = standins.received("api").requests[-1]
    assert (seen.path, seen.query) == ("/items", "x=1")


async def raw_request(base: str, data: bytes) -> bytes:
    """Send raw bytes (clients normalise what these tests need unnormalised)."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    await writer.drain()
    async with asyncio.timeout(5):
        answer = await reader.read(65536)
    writer.close()
    return answer


async def test_dot_segments_refused(sidecar_factory: SidecarFactory, standins: Standins) -> None:
    sc = await sidecar_factory()
    answer = await raw_request(
        sc.explicit,
        b"GET /api/items/%2e%2e/secret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 400")
    assert b'"code":"invalid_path"' in answer
    assert not standins.received("api").requests


async def test_metrics_endpoint(sidecar_factory: SidecarFactory) -> None:
    sc = await sidecar_factory()
    await post(sc.explicit + "/llm/v1/chat/completions", CHAT)
    async with aiohttp.ClientSession() as s, s.get(sc.metrics + "/metrics") as r:
        text = await r.text()
    assert 'haltgate_requests_total{code="",decision="allow",kind="llm"} 1.0' in text
    assert "haltgate_added_latency_seconds_bucket" in text
    assert 'haltgate_tokens_total{model="gpt-4o-mini",type="output"} 5.0' in text


def _sample(text: str, prefix: str) -> float:
    """The value of the one metric line that starts with ``prefix`` (0 when absent)."""
    values = [
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    ]
    assert len(values) <= 1, values
    return values[0] if values else 0.0


async def test_each_call_is_counted_before_the_next_one(sidecar_factory: SidecarFactory) -> None:
    # A call's metrics (decision, tokens, cost, latencies) are counted in loop callbacks
    # after its answer is handed over: by the time the agent holds the answer they are,
    # and the cost counted is the one its outcome record keeps.
    sc = await sidecar_factory()
    for n in range(1, 4):
        status, _, _ = await post(sc.explicit + "/llm/v1/chat/completions", CHAT)
        assert status == 200
        async with aiohttp.ClientSession() as s, s.get(sc.metrics + "/metrics") as r:
            text = await r.text()
        assert _sample(text, 'haltgate_requests_total{code="",decision="allow",kind="llm"}') == n
        assert _sample(text, 'haltgate_tokens_total{model="gpt-4o-mini",type="output"}') == 5 * n
        assert _sample(text, 'haltgate_upstream_latency_seconds_count{kind="llm"}') == n
        assert _sample(text, 'haltgate_added_latency_seconds_count{kind="llm"}') == n
        assert sc.sidecar.pipeline is not None and sc.sidecar.pipeline.decisions["allow"] == n
        cost = sum(rec.cost_usd or 0.0 for rec in await outcomes(sc, n))
        assert cost > 0
        assert _sample(text, 'haltgate_cost_usd_total{model="gpt-4o-mini"}') == pytest.approx(cost)


async def test_upstream_timeout_and_unreachable(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    from tests.sidecar.conftest import base_policy, merge

    dead = "http://127.0.0.1:9"  # discard port: nothing listens
    doc = merge(base_policy(standins), {"spec": {"limits": {"upstreamTimeoutSeconds": 0.1}}})
    doc["spec"]["upstreams"].append({"name": "dead", "url": dead, "kind": "llm"})
    sc = await sidecar_factory()
    sc.write_policy(doc)
    await sc.sidecar.watcher.check()
    status, _, body = await post(
        sc.explicit + "/llm/v1/chat/completions", CHAT, **{"x-standin-behavior": "slow"}
    )
    assert status == 504 and orjson.loads(body)["error"]["code"] == "upstream_timeout"
    status, _, body = await post(sc.explicit + "/dead/v1/chat/completions", CHAT)
    assert status == 502 and orjson.loads(body)["error"]["code"] == "upstream_unreachable"
    status, _, _ = await post(sc.explicit + "/llm/v1/chat/completions", CHAT)
    assert status == 200


async def test_http_tool_answer_streams_through(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory()
    size = 3 * 1024 * 1024
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        async with s.get(f"{standins.api}/bytes/{size}") as r:
            direct = await r.read()
        async with s.get(f"{sc.explicit}/api/bytes/{size}") as r:
            assert r.status == 200 and r.content_length == size
            via = await r.read()
    assert via == direct
    (record,) = await outcomes(sc)
    assert record.status == 200 and record.decision == "allow"


async def test_oversized_llm_answer_refused(sidecar_factory: SidecarFactory) -> None:
    from haltgate.sidecar.pipeline_state import PipelineSettings

    sc = await sidecar_factory(pipeline=PipelineSettings(max_buffered_response_bytes=100))
    status, _, body = await post(sc.explicit + "/llm/v1/chat/completions", CHAT)
    assert status == 502
    assert orjson.loads(body)["error"]["code"] == "upstream_response_too_large"


async def test_hourly_budget_says_when_to_retry(sidecar_factory: SidecarFactory) -> None:
    sc = await sidecar_factory(
        {"spec": {"budgets": {"calls": {"limit": 1, "period": "hour", "window": "rolling"}}}}
    )
    status, _, _ = await post(sc.explicit + "/llm/v1/chat/completions", CHAT)
    assert status == 200
    status, headers, body = await post(sc.explicit + "/llm/v1/chat/completions", CHAT)
    assert status == 429
    assert orjson.loads(body)["error"]["code"] == "calls_exhausted"
    assert 1 <= int(headers["Retry-After"]) <= 3660  # about an hour (rolling window)


async def test_proxy_refuses_this_pod(sidecar_factory: SidecarFactory) -> None:
    """The sidecar's UID may reach the admin API and OPA; the agent must not through it."""
    sc = await sidecar_factory(
        {"spec": {"tools": {"rules": [{"name": "any-http", "action": "allow", "kind": "http"}]}}}
    )
    admin_port = sc.admin.rsplit(":", 1)[1]
    async with aiohttp.ClientSession() as s:
        for url in (
            f"http://127.0.0.1:{admin_port}/status",
            f"http://localhost:{admin_port}/status",
            f"http://[::ffff:127.0.0.1]:{admin_port}/status",
            "http://169.254.169.254/latest/meta-data/",
        ):
            async with s.get(url, proxy=sc.explicit) as r:
                assert r.status == 403, url
                error = (await r.json())["error"]
                assert (error["type"], error["code"]) == ("SAFETY", "local_destination"), url
