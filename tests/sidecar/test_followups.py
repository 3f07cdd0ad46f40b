"""Refusal details, worst-case reservations, stream cuts and OPA wiring of the sidecar."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from haltgate.governance.engine.decision import LazyBudget
from haltgate.testbed.standins import serve
from tests.sidecar.conftest import SidecarFactory, Standins, base_policy

HANG_GUARD_SECONDS = 20.0
"""How long a blocked step may wait: a guard against a hang, never a speed figure."""
CHAT = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "one two three"}],
    "max_tokens": 5,
}


async def post(url: str, body: Any, **headers: str) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(url, data=orjson.dumps(body), headers=headers) as r,
    ):
        return r.status, dict(r.headers), await r.read()


async def test_missing_max_tokens_reserves_the_models_maximum(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    # gpt-4o-mini can answer 16,384 tokens: a call without max_tokens may cost that much,
    # so 10,000 output tokens of budget cannot cover it (a 4,096 default would).
    sc = await sidecar_factory({"spec": {"budgets": {"tokens": {"output": 10_000}}}})
    body = {k: v for k, v in CHAT.items() if k != "max_tokens"}
    status, _, raw = await post(sc.explicit + "/llm/v1/chat/completions", body)
    assert status == 429, raw
    assert orjson.loads(raw)["error"]["code"] == "output_tokens_exhausted"
    assert standins.received("llm").requests == []
    status, _, _ = await post(sc.explicit + "/llm/v1/chat/completions", CHAT)
    assert status == 200


async def test_reserve_and_settle_do_not_build_the_budget_report(
    sidecar_factory: SidecarFactory,
) -> None:
    sc = await sidecar_factory({"spec": {"budgets": {"calls": {"limit": 100}}}})
    status, _, _ = await post(sc.explicit + "/llm/v1/chat/completions", CHAT)
    assert status == 200
    pipeline = sc.sidecar.pipeline
    assert pipeline is not None
    last = pipeline._last_budget
    assert isinstance(last, LazyBudget)
    assert "value" not in last.__dict__  # never read on the hot path
    assert last["calls"]["used"] == 1  # and correct when read


async def test_refusal_of_a_halted_run_has_the_budget_and_says_do_not_retry(
    sidecar_factory: SidecarFactory,
) -> None:
    sc = await sidecar_factory({"spec": {"budgets": {"calls": {"limit": 1}}}})
    url = sc.explicit + "/llm/v1/chat/completions"
    assert (await post(url, CHAT))[0] == 200
    statuses = []
    for _ in range(2):  # the call that halts, then a call refused because halted
        status, headers, raw = await post(url, CHAT)
        statuses.append(status)
        error = orjson.loads(raw)["error"]
        assert error["budget"] is not None and error["budget"]["calls"]["used"] == 1, error
        assert headers.get("x-should-retry") == "false"
        assert "Retry-After" not in headers
    assert statuses == [429, 429]


async def test_period_budget_refusal_keeps_retry_after(sidecar_factory: SidecarFactory) -> None:
    sc = await sidecar_factory(
        {"spec": {"budgets": {"calls": {"limit": 1, "period": "hour", "window": "rolling"}}}}
    )
    url = sc.explicit + "/llm/v1/chat/completions"
    assert (await post(url, CHAT))[0] == 200
    status, headers, raw = await post(url, CHAT)
    assert status == 429, raw
    assert 1 <= int(headers["Retry-After"]) <= 3600 + 60
    assert "x-should-retry" not in headers


# ------------------------------------------------------------------------- stream cuts


@pytest.fixture
async def half_event_upstream() -> AsyncIterator[str]:
    """An SSE upstream that fails in the middle of its second event."""

    async def stream(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n')
        await resp.write(b'data: {"choices":[{"index":0,"delta":')
        await asyncio.sleep(0.05)  # let the sidecar relay what it has
        assert request.transport is not None
        request.transport.close()
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", stream)
    runner, url = await serve(app)
    yield url
    await runner.cleanup()


def _events(raw: bytes) -> list[Any]:
    """What an SSE client makes of the stream: every event's data parsed as JSON."""
    out = []
    for block in raw.split(b"\n\n"):
        data = [line[5:].strip() for line in block.split(b"\n") if line.startswith(b"data:")]
        if data:
            out.append(orjson.loads(b"\n".join(data)))
    return out


async def test_stream_cut_mid_event_never_relays_half_an_event(
    sidecar_factory: SidecarFactory, standins: Standins, half_event_upstream: str
) -> None:
    upstreams = [
        *base_policy(standins)["spec"]["upstreams"],
        {"name": "half", "url": half_event_upstream, "kind": "llm", "provider": "openai"},
    ]
    sc = await sidecar_factory({"spec": {"upstreams": upstreams}})
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    status, _, raw = await post(sc.explicit + "/half/v1/chat/completions", body)
    assert status == 200
    events = _events(raw)  # raises if any event is broken
    assert events[0]["choices"][0]["delta"]["content"] == "a"
    assert events[-1]["error"]["code"] == "upstream_truncated"
    assert len(events) == 2


def test_event_boundary_with_any_line_ending() -> None:
    from haltgate.sidecar.sse import event_boundary as _event_boundary

    for nl in (b"\n", b"\r\n", b"\r"):
        one = b"data: 1" + nl + nl
        assert _event_boundary(one + b"data: 2") == len(one)
        assert _event_boundary(one) == len(one)
        assert _event_boundary(b"data: 1" + nl) == 0


# ------------------------------------------------------------------------- OPA

HEADERS_REGO = """
package haltgate

import rego.v1

default decision := {"allow": true, "headers": {"x-tenant": "blue"}}

decision := {"allow": false, "reason": "no", "failure_type": "SAFETY",
             "headers": {"x-policy-ref": "deny-42"}} if {
    startswith(input.request.model, "gpt-5")
}
"""

ALLOW_REGO = """
package haltgate

import rego.v1

default decision := {"allow": true}
"""

DENY_REGO = """
package haltgate

import rego.v1

default decision := {"allow": false, "reason": "edited in the ConfigMap",
                     "failure_type": "SAFETY"}
"""


@pytest.mark.opa
async def test_opa_headers_go_upstream_on_allow_and_on_the_refusal_on_deny(
    sidecar_factory: SidecarFactory, standins: Standins, opa_server: str
) -> None:
    sc = await sidecar_factory({"spec": {"opa": {"rego": HEADERS_REGO}}}, opa_url=opa_server)
    url = sc.explicit + "/llm/v1/chat/completions"
    status, headers, _ = await post(url, CHAT)
    assert status == 200
    assert standins.received("llm").requests[-1].headers.get("x-tenant") == "blue"
    assert "x-tenant" not in headers
    status, headers, _ = await post(url, {**CHAT, "model": "gpt-5"})
    assert status == 403
    assert headers.get("x-policy-ref") == "deny-42"


@pytest.mark.opa
async def test_rego_edited_in_its_configmap_reaches_opa(
    sidecar_factory: SidecarFactory, opa_server: str, tmp_path: Path
) -> None:
    rego_dir = tmp_path / "rego"
    rego_dir.mkdir()
    (rego_dir / "policy.rego").write_text(ALLOW_REGO)
    sc = await sidecar_factory(
        {"spec": {"opa": {"configMapRef": {"name": "rego", "key": "policy.rego"}}}},
        opa_url=opa_server,
        rego_dir=rego_dir,
    )
    url = sc.explicit + "/llm/v1/chat/completions"
    assert (await post(url, CHAT))[0] == 200
    (rego_dir / "policy.rego").write_text(DENY_REGO)  # the policy file is unchanged
    for _ in range(100):  # the watcher ticks every 0.1 s here
        status, _, raw = await post(url, CHAT)
        if status != 200:
            break
        await asyncio.sleep(0.05)
    assert status == 403
    assert "ConfigMap" in orjson.loads(raw)["error"]["message"]


# ------------------------------------------------------------------------- lone surrogates
# A str with a lone surrogate cannot be encoded as UTF-8, so it never arrives on the wire;
# what arrives is its bytes in other forms. Each must give a typed answer, never a crash.


def test_sse_parser_reads_surrogate_bytes_as_replacement_characters() -> None:
    from haltgate.sidecar.sse import SSEParser

    (event,) = SSEParser().feed(b"data: a\xed\xa0\x80b\n\n")
    assert event.data.startswith("a") and event.data.endswith("b")
    assert "\ufffd" in event.data
    event.data.encode("utf-8")  # safe to relay, log and audit


async def test_lone_surrogate_escape_in_a_request_body_is_a_typed_error(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory()
    body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\\ud800"}]}'
    async with (
        aiohttp.ClientSession() as s,
        s.post(sc.explicit + "/llm/v1/chat/completions", data=body) as r,
    ):
        assert r.status == 400
        assert (await r.json())["error"]["code"] == "invalid_json"
    assert standins.received("llm").requests == []


# ------------------------------------------------------------------------- hot path


async def test_the_answer_does_not_wait_for_the_outcome_record(
    sidecar_factory: SidecarFactory,
) -> None:
    import threading
    import urllib.request

    sc = await sidecar_factory()
    pipeline = sc.sidecar.pipeline
    assert pipeline is not None
    answered = threading.Event()
    queued: list[tuple[Any, bool]] = []

    def blocked_submit(record: Any, on_error: Any) -> None:
        # An audit queue that cannot take the record until the client has its answer
        # (a slow disk, taken to the limit). It blocks the sidecar's loop: if the answer
        # waited for the record, the client would not get it before the guard runs out.
        queued.append((record, answered.wait(timeout=HANG_GUARD_SECONDS)))

    pipeline._queue_nowait = blocked_submit

    def call() -> None:
        req = urllib.request.Request(
            sc.explicit + "/llm/v1/chat/completions", data=orjson.dumps(CHAT), method="POST"
        )
        with urllib.request.urlopen(req, timeout=2 * HANG_GUARD_SECONDS) as r:
            assert r.status == 200
            r.read()
        answered.set()

    # The client runs in a thread: it reads its answer while the sidecar's loop is blocked.
    await asyncio.to_thread(call)
    for _ in range(100):
        if queued:
            break
        await asyncio.sleep(0.01)
    assert [seen_answer for _, seen_answer in queued] == [True]  # the answer came first
    queued_records = [r for r, _ in queued]
    assert [r.phase for r in queued_records] == ["outcome"]


async def test_expect_100_continue_is_answered_before_the_body(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory()
    host, port = sc.explicit.rsplit("/", 1)[1].split(":")
    body = orjson.dumps(CHAT)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            b"POST /llm/v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        await writer.drain()
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        writer.write(body)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200")
    finally:
        writer.close()
    assert standins.received("llm").requests[-1].body == body
