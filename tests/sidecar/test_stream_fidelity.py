"""Stream fidelity: what the agent receives through the sidecar is what it would receive
directly, apart from what it asked for, and a budget cut mid-stream lands on an event
boundary with the agent holding every event it is charged for."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from haltgate.governance.audit import AuditRecord
from haltgate.sidecar.pipeline_state import PipelineSettings
from haltgate.sidecar.usage import CHARS_PER_TOKEN
from tests.sidecar.conftest import Running, SidecarFactory, Standins


@pytest.fixture
def http_server(both_http_servers: str) -> str:
    """Every test here runs on both explicit-port servers (llhttp and aiohttp)."""
    return both_http_servers


CHAT = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "one two three"}],
    "max_tokens": 6,
    "stream": True,
}
COMPLETION = {"model": "m", "prompt": "x y", "max_tokens": 3, "stream": True}


async def post(url: str, body: Any, **headers: str) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(url, data=orjson.dumps(body), headers=headers) as r,
    ):
        return r.status, await r.read()


async def outcome(sc: Running) -> AuditRecord:
    for _ in range(200):
        found = [rec for rec in sc.audit.records if rec.phase == "outcome"]
        if found:
            return found[-1]
        await asyncio.sleep(0.01)
    raise AssertionError("no outcome record")


def data_of(raw: bytes) -> list[Any]:
    """The data of every event in a stream (JSON decoded, ``[DONE]`` as a string)."""
    out: list[Any] = []
    for block in raw.split(b"\n\n"):
        lines = [line[5:].strip() for line in block.split(b"\n") if line.startswith(b"data:")]
        if lines:
            joined = b"\n".join(lines)
            out.append(joined.decode() if joined == b"[DONE]" else orjson.loads(joined))
    return out


@pytest.mark.parametrize("behavior", ["", "burst"])
@pytest.mark.parametrize(
    ("path", "body"), [("/v1/chat/completions", CHAT), ("/v1/completions", COMPLETION)]
)
async def test_stream_without_usage_is_byte_identical_to_direct(
    sidecar_factory: SidecarFactory,
    standins: Standins,
    path: str,
    body: dict[str, Any],
    behavior: str,
) -> None:
    sc = await sidecar_factory()
    headers = {"x-standin-behavior": behavior} if behavior else {}
    _, direct = await post(standins.llm + path, body, **headers)
    status, via = await post(sc.explicit + "/llm" + path, body, **headers)
    assert status == 200
    # The sidecar asked for usage (the upstream then adds "usage":null to every chunk and
    # a last chunk with empty choices) ...
    sent = orjson.loads(standins.received("llm").requests[-1].body)
    assert sent["stream_options"] == {"include_usage": True}
    _, asked = await post(standins.llm + path, sent, **headers)
    assert b'"usage":null' in asked and b'"choices":[]' in asked
    # ... and the agent, which did not, receives the bytes it gets directly.
    assert via == direct
    record = await outcome(sc)
    assert record.usage is not None and not record.usage["estimated"]
    assert record.usage["output_tokens"] == body["max_tokens"]


async def test_stream_with_usage_asked_is_byte_identical(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory()
    body = {**CHAT, "stream_options": {"include_usage": True}}
    _, direct = await post(standins.llm + "/v1/chat/completions", body)
    _, via = await post(sc.explicit + "/llm/v1/chat/completions", body)
    assert via == direct and b'"usage":null' in via and b'"choices":[]' in via


async def test_openai_sdk_everyday_loop_through_the_sidecar(
    sidecar_factory: SidecarFactory,
) -> None:
    """``for chunk in stream: chunk.choices[0]`` works through the sidecar as it does
    directly (the official SDK, no usage asked)."""
    import openai

    sc = await sidecar_factory()
    client = openai.AsyncOpenAI(base_url=sc.explicit + "/llm/v1", api_key="sk-test", max_retries=0)
    try:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi there"}],
            max_tokens=4,
            stream=True,
        )
        text = ""
        async for chunk in stream:
            assert chunk.usage is None
            text += chunk.choices[0].delta.content or ""
    finally:
        await client.close()
    assert text == "tok0 tok1 tok2 tok3"
    record = await outcome(sc)
    assert record.usage is not None and record.usage["output_tokens"] == 4
    assert not record.usage["estimated"]


async def test_openai_sync_sdk_loop_through_the_sidecar(sidecar_factory: SidecarFactory) -> None:
    """The loop as people write it, with the synchronous client (in a thread: the sidecar
    runs on this test's event loop)."""
    import openai

    sc = await sidecar_factory()

    def consume() -> list[str]:
        with openai.OpenAI(
            base_url=sc.explicit + "/llm/v1", api_key="sk-test", max_retries=0
        ) as client:
            stream = client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "hi"}],
                max_tokens=3,
                stream=True,
            )
            return [c.choices[0].delta.content or "" for c in stream]

    assert "".join(await asyncio.to_thread(consume)) == "tok0 tok1 tok2"


async def test_usage_hidden_under_response_guardrails(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory(
        {
            "spec": {
                "guardrails": {
                    "pii": {"direction": "response", "action": "redact", "entities": ["email"]}
                }
            }
        }
    )
    status, via = await post(sc.explicit + "/llm/v1/chat/completions", CHAT)
    assert status == 200
    events = data_of(via)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks and all(c["choices"] and "usage" not in c for c in chunks)
    record = await outcome(sc)
    assert record.usage is not None and not record.usage["estimated"]


@pytest.mark.parametrize("usage", [False, True])
async def test_burst_cut_charges_only_what_the_agent_received(
    sidecar_factory: SidecarFactory, standins: Standins, usage: bool
) -> None:
    """An unpaced burst (the whole answer in one write): the cut lands right after the
    event that crossed the budget, and the agent received every event it is charged for."""
    body: dict[str, Any] = {
        "model": "m",
        "stream": True,
        "messages": [{"role": "user", "content": "go"}],
    }
    if usage:
        body["stream_options"] = {"include_usage": True}
    raw = orjson.dumps(body)
    reserve, headroom = 100, 300
    sc = await sidecar_factory(
        {"spec": {"budgets": {"tokens": {"limit": len(raw) + reserve + headroom}}}},
        pipeline=PipelineSettings(default_max_output_tokens=reserve),
    )
    status, via = await post(
        sc.explicit + "/llm/v1/chat/completions",
        body,
        **{"x-standin-tokens": "2000", "x-standin-behavior": "burst"},
    )
    assert status == 200
    events = data_of(via)
    error = events[-1]["error"]
    assert error["code"] == "tokens_exhausted"
    received = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert received  # the events before the cut reached the agent
    record = await outcome(sc)
    assert record.decision == "deny" and record.usage is not None
    charged = record.usage["output_tokens"]
    assert charged == -(-len(received) // CHARS_PER_TOKEN)
    # At most one event beyond the budget (an event here is one word, at most 3 tokens).
    assert reserve + headroom < charged <= reserve + headroom + 3
