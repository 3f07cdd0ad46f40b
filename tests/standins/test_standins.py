"""The stand-ins answer deterministically: others' tests rely on these properties."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from haltgate.testbed.standins import http_api, llm, mcp, serve


@pytest.fixture
async def urls() -> AsyncIterator[dict[str, str]]:
    apps = {"llm": llm.create_app(), "mcp": mcp.create_app(), "http": http_api.create_app()}
    runners, out = [], {}
    for name, app in apps.items():
        runner, url = await serve(app)
        runners.append(runner)
        out[name] = url
    yield out
    for runner in runners:
        await runner.cleanup()


async def test_chat_is_deterministic_with_usage(urls: dict[str, str]) -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "a b c"}], "max_tokens": 4}
    async with aiohttp.ClientSession() as s:
        answers = []
        for _ in range(2):
            async with s.post(urls["llm"] + "/v1/chat/completions", json=body) as r:
                answers.append(await r.read())
    assert answers[0] == answers[1]
    usage = orjson.loads(answers[0])["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (3, 4)


async def test_stream_usage_only_when_asked(urls: dict[str, str]) -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "max_tokens": 2,
        "stream": True,
    }
    async with aiohttp.ClientSession() as s:
        async with s.post(urls["llm"] + "/v1/chat/completions", json=body) as r:
            plain = await r.read()
        body["stream_options"] = {"include_usage": True}
        async with s.post(urls["llm"] + "/v1/chat/completions", json=body) as r:
            with_usage = await r.read()
    assert b'"usage"' not in plain and plain.endswith(b"data: [DONE]\n\n")
    assert b'"completion_tokens":2' in with_usage


async def test_mcp_batch_and_notification(urls: dict[str, str]) -> None:
    batch = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "add", "arguments": {"a": 1, "b": 2}},
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
    ]
    async with aiohttp.ClientSession() as s:
        async with s.post(urls["mcp"] + "/mcp", json=batch) as r:
            answer = await r.json()
        async with s.post(urls["mcp"] + "/mcp", json=batch[1]) as r:
            assert r.status == 202
    assert answer == [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "result": {"content": [{"type": "text", "text": "3"}], "isError": False},
        }
    ]


async def test_truncate_cuts_the_stream(urls: dict[str, str]) -> None:
    body = {"model": "m", "messages": [], "max_tokens": 5, "stream": True}
    async with aiohttp.ClientSession() as s:
        async with s.post(
            urls["llm"] + "/v1/chat/completions",
            json=body,
            headers={"x-standin-behavior": "truncate"},
        ) as r:
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()


async def test_requests_are_recorded(urls: dict[str, str]) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(urls["http"] + "/items/1") as r:
            assert r.status == 200
        async with s.get(urls["http"] + "/_standin/requests") as r:
            seen = await r.json()
    assert [(x["method"], x["path"]) for x in seen] == [("GET", "/items/1")]
