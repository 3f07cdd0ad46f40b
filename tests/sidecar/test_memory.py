"""Bounded memory (issue 16, item 4): a sidecar-wide budget of body bytes, SSE events held
within a bound in every relay path, and audit records that always fit a readable frame.

The peak-RSS figures under concurrent large bodies are measured by bench/memory.py (not
here: no timing or size-of-process assertions in tests)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from haltgate.governance.audit import SpoolAuditSink
from haltgate.governance.audit.spool import iter_frames, list_segments, segment_path
from haltgate.sidecar.pipeline_state import PipelineSettings
from haltgate.sidecar.sse import EventHold, SSEParser
from haltgate.testbed.standins import serve
from tests.audit.helpers import make_record
from tests.sidecar.conftest import SidecarFactory, Standins, merge

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


def host_port(url: str) -> tuple[str, int]:
    host, _, port = url.split("//", 1)[1].rpartition(":")
    return host, int(port)


# ---------------------------------------------------------------------- body budget


async def test_body_budget_refuses_past_it_and_frees_at_the_end(
    sidecar_factory: SidecarFactory,
) -> None:
    sc = await sidecar_factory(pipeline=PipelineSettings(body_memory_budget=1024 * 1024))
    pipeline = sc.sidecar.pipeline
    assert pipeline is not None
    big = orjson.dumps({**CHAT, "messages": [{"role": "user", "content": "x " * 300_000}]})
    # Call A announces 600 kB and sends only half: it holds its share while it waits.
    reader, writer = await asyncio.open_connection(*host_port(sc.explicit))
    writer.write(
        b"POST /llm/v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: "
        + str(len(big)).encode()
        + b"\r\n\r\n"
        + big[: len(big) // 2]
    )
    await writer.drain()
    for _ in range(200):
        if pipeline.memory.held:
            break
        await asyncio.sleep(0.01)
    assert pipeline.memory.held == len(big)
    # Call B does not fit next to A: a typed 503 with Retry-After, before its body is read.
    async with aiohttp.ClientSession() as s:
        # The gauge reads what is held when scraped.
        async with s.get(sc.metrics + "/metrics") as r:
            assert f"haltgate_body_bytes_in_flight {float(len(big))}" in await r.text()
        async with s.post(sc.explicit + "/llm/v1/chat/completions", data=big) as r:
            assert r.status == 503
            assert r.headers["x-haltgate-code"] == "memory_budget_exhausted"
            assert r.headers["Retry-After"] == "1"
            err = (await r.json())["error"]
            assert err["code"] == "memory_budget_exhausted"
        # A small call still fits.
        async with s.post(sc.explicit + "/llm/v1/chat/completions", json=CHAT) as r:
            assert r.status == 200
        # A finishes; its share comes back and B goes through.
        writer.write(big[len(big) // 2 :])
        await writer.drain()
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        writer.close()
        for _ in range(200):
            if not pipeline.memory.held:
                break
            await asyncio.sleep(0.01)
        assert pipeline.memory.held == 0
        async with s.post(sc.explicit + "/llm/v1/chat/completions", data=big) as r:
            assert r.status == 200
        async with s.get(sc.metrics + "/metrics") as r:
            text = await r.text()
    assert 'haltgate_body_budget_refusals_total{direction="request"' in text
    assert "haltgate_body_bytes_in_flight 0.0" in text
    assert pipeline.memory.held == 0


async def test_a_lone_body_larger_than_the_budget_is_served(
    sidecar_factory: SidecarFactory,
) -> None:
    sc = await sidecar_factory(pipeline=PipelineSettings(body_memory_budget=4096))
    big = orjson.dumps({**CHAT, "messages": [{"role": "user", "content": "y " * 10_000}]})
    async with (
        aiohttp.ClientSession() as s,
        s.post(sc.explicit + "/llm/v1/chat/completions", data=big) as r,
    ):
        assert r.status == 200
    assert sc.sidecar.pipeline is not None and sc.sidecar.pipeline.memory.held == 0


# ---------------------------------------------------------------------- SSE bounds


def sse_upstream(parts: list[bytes]) -> web.Application:
    """An OpenAI-shaped upstream answering every chat call with ``parts`` as a stream."""

    async def chat(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for part in parts:
            try:
                await resp.write(part)
            except ConnectionError:
                break
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


@pytest.fixture
async def upstream_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    runner, url = await serve(sse_upstream(request.param))
    yield url
    await runner.cleanup()


FIRST = b'data: {"choices":[{"delta":{"content":"ok"}}]}\n\n'
NO_BLANK_LINE = [FIRST] + [b"data: " + b"z" * 65536] * 32  # 2 MiB, never a blank line
HUGE_EVENT = [FIRST, b"data: " + b'"' + b"w" * (1 << 20) + b'"' + b"\n\n", b"data: [DONE]\n\n"]


async def stream_via(sc: Any) -> tuple[int, bytes]:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    async with (
        aiohttp.ClientSession() as s,
        s.post(sc.explicit + "/up/v1/chat/completions", json=body) as r,
    ):
        return r.status, await r.read()


def error_events(raw: bytes) -> list[dict[str, Any]]:
    out = []
    for event in SSEParser(1 << 22).feed(raw + b"\n\n"):
        try:
            doc = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            continue
        if isinstance(doc, dict) and "error" in doc:
            out.append(doc["error"])
    return out


def _policy_with(url: str, standins: Standins, guardrails: bool) -> dict[str, Any]:
    extra: dict[str, Any] = {
        "spec": {
            "upstreams": [
                {"name": "llm", "url": standins.llm, "kind": "llm", "provider": "openai"},
                {"name": "up", "url": url, "kind": "llm", "provider": "openai"},
            ]
        }
    }
    if guardrails:
        extra = merge(
            extra,
            {
                "spec": {
                    "guardrails": {
                        "secrets": {"enabled": True, "direction": "response", "action": "block"}
                    }
                }
            },
        )
    return extra


@pytest.mark.parametrize("upstream_url", [NO_BLANK_LINE], indirect=True)
@pytest.mark.parametrize("guardrails", [False, True])
async def test_stream_that_never_ends_an_event_is_cut_with_a_typed_event(
    sidecar_factory: SidecarFactory, standins: Standins, upstream_url: str, guardrails: bool
) -> None:
    """Unbounded before: the relay held the whole answer (and re-searched it per chunk)."""
    sc = await sidecar_factory(
        _policy_with(upstream_url, standins, guardrails),
        pipeline=PipelineSettings(max_sse_event_bytes=256 * 1024),
    )
    status, raw = await stream_via(sc)
    assert status == 200
    assert raw.startswith(b"data: ")  # the first, complete event was relayed
    assert len(raw) < 300 * 1024  # the 2 MiB event was never relayed (nor held whole)
    (err,) = error_events(raw)
    assert err["code"] == "sse_event_too_large"


@pytest.mark.parametrize("upstream_url", [HUGE_EVENT], indirect=True)
async def test_oversized_event_under_guardrails_is_a_typed_error_not_an_empty_200(
    sidecar_factory: SidecarFactory, standins: Standins, upstream_url: str
) -> None:
    """With response guardrails the parser skipped the oversized event: the agent got
    the rest of the stream as if the event had never been sent."""
    sc = await sidecar_factory(
        _policy_with(upstream_url, standins, True),
        pipeline=PipelineSettings(max_sse_event_bytes=256 * 1024),
    )
    status, raw = await stream_via(sc)
    assert status == 200
    (err,) = error_events(raw)
    assert err["code"] == "sse_event_too_large"
    assert b"[DONE]" not in raw
    outcome = [r for r in sc.audit.records if r.phase == "outcome"]
    for _ in range(100):
        if outcome:
            break
        await asyncio.sleep(0.02)
        outcome = [r for r in sc.audit.records if r.phase == "outcome"]
    assert outcome[0].code == "sse_event_too_large" and outcome[0].decision == "error"


def test_event_hold_is_bounded_and_keeps_event_boundaries() -> None:
    hold = EventHold(max_event_bytes=100)
    assert hold.feed(b"data: 1\n\ndata: 2") == b"data: 1\n\n"
    assert hold.feed(b"2\n") == b""
    assert hold.feed(b"\ndata: 3") == b"data: 22\n\n"
    assert hold.rest() == b"data: 3"
    assert hold.feed(b"data: x\r\n") == b""
    assert hold.feed(b"\r\n") == b"data: x\r\n\r\n"
    for _ in range(20):
        hold.feed(b"y" * 10)
    assert hold.overflow


# ---------------------------------------------------------------------- audit frames


def test_oversized_payload_is_truncated_with_a_marker_and_reads_back(tmp_path: Any) -> None:
    """A record over the reader's 16 MiB frame bound used to be written anyway: unreadable
    by the shipper, set aside as torn at the next start."""
    spool = tmp_path / "spool"
    sink = SpoolAuditSink(spool)
    payload = {"messages": [{"role": "user", "content": "p" * (17 * 1024 * 1024)}]}
    big = make_record(1, payload_mode="full", payload=payload)
    sink.append_blocking(big)
    sink.append_blocking(make_record(2, payload_mode="full", payload={"small": True}))
    sink.close_blocking()
    frames = []
    for number in list_segments(spool):
        found, _, reason = iter_frames(segment_path(spool, number).read_bytes(), number)
        assert reason is None
        frames += [f for f in found if not f.is_checkpoint]
    first, second = (orjson.loads(f.data) for f in frames)
    marker = first["payload"]
    assert marker["truncated"] is True
    assert marker["bytes"] > 17 * 1024 * 1024
    assert len(marker["sha256"]) == 64 and marker["preview"].startswith('{"messages"')
    assert second["payload"] == {"small": True}
    assert second["seq"] == first["seq"] + 1  # no gap in the chain
    # A restart finds nothing torn.
    SpoolAuditSink(spool).close_blocking()
    assert not list(spool.glob("*.torn-*"))


def test_record_that_cannot_fit_is_refused_without_a_gap(tmp_path: Any) -> None:
    from haltgate.governance.audit import InvalidRecordError

    sink = SpoolAuditSink(tmp_path / "spool")
    huge_findings = tuple({"detector": "pii", "note": "n" * 1024} for _ in range(20_000))
    with pytest.raises(InvalidRecordError, match="frame bound"):
        sink.append_blocking(make_record(1, findings=huge_findings))
    sink.append_blocking(make_record(2))
    heads = sink.chain_heads
    sink.close_blocking()
    assert [h.seq for h in heads.values()] == [1]


async def test_streams_holding_unfinished_events_share_the_body_budget(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    """Each stream may hold up to 4 MiB of an unfinished event: without a shared bound,
    a hundred such streams would hold 400 MiB. Past the first 64 KiB those bytes are
    charged to the body memory budget like bodies are."""
    release = asyncio.Event()

    async def chat(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            await resp.write(FIRST)
            await resp.write(b'data: "' + b"q" * (300 * 1024))  # an event not ended yet
            async with asyncio.timeout(20):
                await release.wait()
            await resp.write(b'"\n\ndata: [DONE]\n\n')
        except (ConnectionError, TimeoutError):
            pass
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner, url = await serve(app)
    try:
        sc = await sidecar_factory(
            _policy_with(url, standins, False),
            pipeline=PipelineSettings(body_memory_budget=400 * 1024),
        )
        pipeline = sc.sidecar.pipeline
        assert pipeline is not None
        first = asyncio.ensure_future(stream_via(sc))
        for _ in range(500):  # the relay holds the partial event (one copy, read once)
            if pipeline.memory.held >= 300 * 1024:
                break
            await asyncio.sleep(0.01)
        assert pipeline.memory.held >= 300 * 1024
        status, raw = await stream_via(sc)  # a second one does not fit next to it
        assert status == 200
        (err,) = error_events(raw)
        assert err["code"] == "memory_budget_exhausted"
        release.set()
        status, raw = await first
        assert status == 200 and raw.endswith(b"data: [DONE]\n\n")
        assert not error_events(raw)
        for _ in range(200):
            if not pipeline.memory.held:
                break
            await asyncio.sleep(0.01)
        assert pipeline.memory.held == 0
    finally:
        release.set()
        await runner.cleanup()
