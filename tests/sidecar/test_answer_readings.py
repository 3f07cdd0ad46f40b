"""One reading of every answer: what the agent's client reads is what the guardrails scan.

A differential matrix through a real sidecar (response guardrails: secrets and prompt
injection, ``block``, ``failMode: closed``) and a stand-in upstream answering a secret in
a variant a real client still reads (charsets, content types, codings, SSE framing, JSON
oddities, MCP result shapes, HTTP framing). For each variant:

1. straight from the stand-in, some real client (httpx, aiohttp, requests, the OpenAI SDK's
   SSE decoder, a browser's BOM sniffing) reads the secret: the variant is live;
2. through the sidecar, the answer is refused with a typed error, or no client reads the
   secret any more (scanned and blocked or redacted). Never passed unscanned.
"""

from __future__ import annotations

import asyncio
import gzip
import os
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from tests.sidecar.answer_matrix import (
    JSON,
    SECRET,
    TYPED,
    VARIANTS,
    Variant,
    chat_chunk,
    ct,
    sse,
    variant,
)
from tests.sidecar.answer_variants import RawAnswer, RawUpstream, client_readings, raw_upstream
from tests.sidecar.conftest import SidecarFactory, Standins, base_policy


def _request(v: Variant, base: str) -> tuple[str, dict[str, Any]]:
    key = v.name
    if v.via == "rawllm":
        body: dict[str, Any] = {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "hi"}],
        }
        if v.stream or "event-stream" in dict(v.answer.headers).get("Content-Type", ""):
            body["stream"] = True
        return f"{base}/rawllm/v1/chat/completions", {"json": body}
    if v.via == "rawmcp":
        call = {"name": "echo", "arguments": {"text": "hi"}}
        return f"{base}/rawmcp/{key}", {
            "json": {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call},
            "headers": {"Accept": "application/json, text/event-stream"},
        }
    if v.via == "rawmcp-list":
        return f"{base}/rawmcp/{key}", {
            "json": {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            "headers": {"Accept": "application/json, text/event-stream"},
        }
    return f"{base}/raw/{key}", {"json": {"q": 1}}


@pytest.fixture
async def upstream() -> AsyncIterator[RawUpstream]:
    async with raw_upstream() as u:
        yield u


def guarded_policy(standins: Standins, raw: str) -> dict[str, Any]:
    spec = base_policy(standins)["spec"]
    return {
        "spec": {
            "upstreams": [
                *spec["upstreams"],
                {"name": "raw", "url": raw, "kind": "http"},
                {"name": "rawllm", "url": raw, "kind": "llm", "provider": "openai"},
                {"name": "rawmcp", "url": raw + "/mcp", "kind": "mcp"},
            ],
            "tools": {
                **spec["tools"],
                "rules": [
                    *spec["tools"]["rules"],
                    {"name": "raw", "action": "allow", "kind": "http", "methods": ["POST"]},
                ],
            },
            "guardrails": {
                "failMode": "closed",
                "secrets": {"action": "block", "direction": "response"},
                "promptInjection": {"enabled": True, "action": "block", "direction": "response"},
            },
        }
    }


def _reads_secret(texts: list[str]) -> bool:
    return any(SECRET in t for t in texts)


def _error_code(texts: list[str]) -> str | None:
    for t in texts:
        try:
            obj = orjson.loads(t)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("error"), dict):
            error = obj["error"]
            data = error.get("data")  # JSON-RPC: haltgate's code is in data
            code = data.get("code") if isinstance(data, dict) else error.get("code")
            if isinstance(code, str):
                return code
    for t in texts:  # an SSE error event
        for code in TYPED:
            if f'"code":"{code}"' in t.replace(" ", ""):
                return code
    return None


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
async def test_answer_is_scanned_as_the_client_reads_it(
    sidecar_factory: SidecarFactory, standins: Standins, upstream: RawUpstream, variant: Variant
) -> None:
    upstream.answers = {variant.name: variant.answer, "*": variant.answer}
    url, kwargs = _request(variant, upstream.url)
    _, direct = await client_readings(
        url.replace("/raw/", "/").replace("/rawllm/", "/").replace("/rawmcp/", "/mcp/"), **kwargs
    )
    assert _reads_secret(direct) is variant.live, f"{variant.name}: live is {not variant.live}"

    sc = await sidecar_factory(guarded_policy(standins, upstream.url))
    url, kwargs = _request(variant, sc.explicit)
    status, relayed = await client_readings(url, **kwargs)
    # Scanned (blocked, redacted) or refused with a typed error: never read unscanned.
    assert not _reads_secret(relayed), f"{variant.name}: read through the sidecar ({status})"
    if table := os.environ.get("HALTGATE_ANSWER_TABLE"):  # docs/guardrails.md's table
        line = f"{variant.name}\t{status}\t{_error_code(relayed) or 'scanned'}\n"
        await asyncio.to_thread(_append, table, line)


def _append(path: str, line: str) -> None:
    with open(path, "a") as f:
        f.write(line)


async def test_mcp_answer_compressed_under_a_repeated_header_is_refused(
    sidecar_factory: SidecarFactory, standins: Standins, upstream: RawUpstream
) -> None:
    """``Content-Encoding: identity`` then ``Content-Encoding: gzip``: a client undoes the
    gzip; the sidecar must see the coding too, or a sampling request (denied by default)
    in it would pass the server-request filter, which reads plain bytes."""
    request = b'{"jsonrpc": "2.0", "id": 9, "method": "sampling/createMessage", "params": {}}'
    upstream.answers["*"] = RawAnswer(
        [*ct(JSON), ("Content-Encoding", "identity"), ("Content-Encoding", "gzip")],
        gzip.compress(request),
    )
    sc = await sidecar_factory(guarded_policy(standins, upstream.url))
    url, kwargs = _request(variant("mcp-sampling", [], b"", via="rawmcp"), sc.explicit)
    status, relayed = await client_readings(url, **kwargs)
    assert not any("sampling/createMessage" in t for t in relayed)
    assert _error_code(relayed) == "mcp_answer_encoded", (status, relayed[:1])


_SAMPLING = (
    '{"jsonrpc": "2.0", "id": 9, "method": "sampling/createMessage", "params": {"marker_q7": NaN}}'
)
_TOOLS = (
    '{"jsonrpc": "2.0", "id": 1, "n": NaN, "result": {"tools": ['
    '{"name": "echo", "inputSchema": {}}, {"name": "delete_file", "inputSchema": {}}]}}'
)
FILTERED = [
    ("sampling-json-nan", "tools/call", JSON, _SAMPLING.encode(), "marker_q7"),
    ("sampling-json-bom", "tools/call", JSON, b"\xef\xbb\xbf" + _SAMPLING.encode(), "marker_q7"),
    (
        "sampling-json-utf16",
        "tools/call",
        JSON,
        _SAMPLING.replace("NaN", "1").encode("utf-16-le"),
        "marker_q7",
    ),
    ("sampling-sse-nan", "tools/call", "text/event-stream", sse("data: " + _SAMPLING), "marker_q7"),
    ("tools-list-nan", "tools/list", JSON, _TOOLS.encode(), "delete_file"),
    (
        "tools-list-sse-nan",
        "tools/list",
        "text/event-stream",
        sse("data: " + _TOOLS),
        "delete_file",
    ),
]


@pytest.mark.parametrize(
    ("name", "method", "ctype", "body", "hidden"), FILTERED, ids=[f[0] for f in FILTERED]
)
async def test_mcp_filters_read_json_as_the_sdks_do(
    sidecar_factory: SidecarFactory,
    standins: Standins,
    upstream: RawUpstream,
    name: str,
    method: str,
    ctype: str,
    body: bytes,
    hidden: str,
) -> None:
    """What the policy hides of an MCP answer (a denied server request, a denied tool in a
    listing) is hidden in every JSON a client parses: the MCP SDKs' parser takes NaN, and
    httpx's .json() a BOM or UTF-16 too. Before, such answers were relayed unfiltered."""
    upstream.answers["*"] = RawAnswer(ct(ctype), body)
    params = {"name": "echo", "arguments": {}} if method == "tools/call" else {}
    url = f"{upstream.url}/mcp/{name}"
    kwargs: dict[str, Any] = {
        "json": {"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
        "headers": {"Accept": "application/json, text/event-stream"},
    }
    _, direct = await client_readings(url, **kwargs)
    assert any(hidden in t for t in direct)
    sc = await sidecar_factory(guarded_policy(standins, upstream.url))
    status, relayed = await client_readings(f"{sc.explicit}/rawmcp/{name}", **kwargs)
    assert not any(hidden in t for t in relayed), (status, relayed[:1])


@pytest.mark.parametrize("piece", [1, 2, 3, 100])
def test_stream_bom_is_dropped_as_clients_drop_it(piece: int) -> None:
    """A stream starting with a BOM: EventSource drops it and reads the first event;
    the sidecar's parser (the scanned relay) did not, and lost the event."""
    from haltgate.sidecar.sse import SSEParser

    stream = b"\xef\xbb\xbfdata: first\n\ndata: second\n\n"
    parser = SSEParser()
    events = [e for i in range(0, len(stream), piece) for e in parser.feed(stream[i : i + piece])]
    assert [e.data for e in events] == ["first", "second"]


def _responses_stream(text: str) -> bytes:
    def ev(obj: dict[str, Any]) -> str:
        return f"event: {obj['type']}\ndata: " + orjson.dumps(obj).decode()

    where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    half = len(text) // 2
    part = {"type": "output_text", "text": text}
    return sse(
        ev({"type": "response.output_text.delta", **where, "delta": text[:half]}),
        ev({"type": "response.output_text.delta", **where, "delta": text[half:]}),
        ev({"type": "response.output_text.done", **where, "text": text}),
        ev({"type": "response.content_part.done", **where, "part": part}),
        ev({"type": "response.completed", "response": {"output": [{"content": [part]}]}}),
    )


async def test_responses_stream_end_events_are_redacted_like_its_deltas(
    sidecar_factory: SidecarFactory, standins: Standins, upstream: RawUpstream
) -> None:
    """The Responses API repeats the whole text in its end events; the SDK's final
    response is read from them. The deltas were redacted, the end events relayed raw."""
    email = "canary.person@example.org"
    upstream.answers["*"] = RawAnswer(
        ct("text/event-stream"), _responses_stream(f"Write to {email} about the garden.")
    )
    policy = guarded_policy(standins, upstream.url)
    policy["spec"]["guardrails"]["pii"] = {
        "action": "redact",
        "direction": "response",
        "entities": ["email"],
    }
    sc = await sidecar_factory(policy)
    body = {"model": "gpt-4o-mini", "input": "hi", "stream": True}
    status, relayed = await client_readings(f"{sc.explicit}/rawllm/v1/responses", json=body)
    assert status == 200
    assert not any(email in t for t in relayed)
    assert any("<EMAIL_1>" in t for t in relayed)


async def test_chat_stream_without_finish_reason_keeps_its_last_text(
    sidecar_factory: SidecarFactory, standins: Standins, upstream: RawUpstream
) -> None:
    """Some OpenAI-compatible servers end with ``[DONE]`` and no ``finish_reason``: the
    text held back for the scan was never released, so the agent lost the answer's end."""
    answer = "The quarterly planning office handles the garden schedule for everyone."
    upstream.answers["*"] = RawAnswer(
        ct("text/event-stream"),
        sse(chat_chunk(answer[:30]), chat_chunk(answer[30:]), "data: [DONE]"),
    )
    sc = await sidecar_factory(guarded_policy(standins, upstream.url))
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    status, relayed = await client_readings(f"{sc.explicit}/rawllm/v1/chat/completions", json=body)
    assert status == 200
    assert answer in relayed


async def test_a_stream_compressed_twice_under_two_headers_reaches_the_client_readable(
    sidecar_factory: SidecarFactory, standins: Standins, upstream: RawUpstream
) -> None:
    """``Content-Encoding: gzip`` twice: a client undoes both layers, so the stream relay
    must too (every header read, not the first): a clean chat stream arrives as the events
    the client would read straight from the upstream, not as a layer of gzip."""
    events = sse(chat_chunk("hello there"), "data: [DONE]")
    upstream.answers["*"] = RawAnswer(
        [*ct("text/event-stream"), ("Content-Encoding", "gzip"), ("Content-Encoding", "gzip")],
        gzip.compress(gzip.compress(events)),
    )
    sc = await sidecar_factory(guarded_policy(standins, upstream.url))
    url, kwargs = _request(
        variant("chat-gzip-twice", ct("text/event-stream"), b"", via="rawllm"), sc.explicit
    )
    status, relayed = await client_readings(url, **kwargs)
    assert status == 200 and any("hello there" in t for t in relayed), (status, relayed[:1])


async def test_a_chat_stream_that_just_closes_keeps_its_last_words(
    sidecar_factory: SidecarFactory, standins: Standins, upstream: RawUpstream
) -> None:
    """No ``finish_reason``, no ``[DONE]``: the text the guard holds back for redaction
    (the last ~256 characters) is scanned and sent at the end, not lost; a secret in it is
    still kept from the client."""
    tail = "and that is the whole story, told to the very last word."
    upstream.answers["*"] = RawAnswer(
        ct("text/event-stream"), sse(chat_chunk("Once upon a time, "), chat_chunk(tail))
    )
    sc = await sidecar_factory(guarded_policy(standins, upstream.url))
    request = variant("chat-no-end", ct("text/event-stream"), b"", via="rawllm")
    url, kwargs = _request(request, sc.explicit)
    status, relayed = await client_readings(url, **kwargs)
    assert status == 200 and any("the very last word" in t for t in relayed), relayed[:1]

    upstream.answers["*"] = RawAnswer(
        ct("text/event-stream"), sse(chat_chunk("Once upon a time, "), chat_chunk(f"{SECRET}"))
    )
    status, relayed = await client_readings(url, **kwargs)
    assert not _reads_secret(relayed), (status, relayed[:1])
