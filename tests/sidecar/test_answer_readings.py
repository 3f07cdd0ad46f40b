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
import base64
import gzip
import os
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import brotli
import orjson
import pytest
import zstandard

from tests.sidecar.answer_variants import RawAnswer, RawUpstream, client_readings, raw_upstream
from tests.sidecar.conftest import SidecarFactory, Standins, base_policy

SECRET = "AKIA2E3MBFQXKZ7VJ4NA"
ESCAPED = "\\u0041KIA2E3MBFQXKZ7VJ4NA"
"""The secret as a JSON string escape: only a JSON reading shows it."""
SPLIT = "\\ud835\\udc00 AKIA2E3M\\u0042FQXKZ7VJ4NA"
"""A surrogate pair before it, an escape inside it."""

TYPED = {
    "guardrail_secrets",
    "guardrail_prompt_injection",
    "guardrails_unscannable",
    "guardrails_error",
    "upstream_truncated",
    "sse_event_too_large",
}

JSON = "application/json"


def doc(value: str = ESCAPED) -> bytes:
    """A JSON answer carrying ``value`` as written (escapes stay escapes)."""
    return ('{"id": 7, "note": "the key is ' + value + '"}').encode()


def mcp_result(result: str) -> bytes:
    return ('{"jsonrpc": "2.0", "id": 1, "result": ' + result + "}").encode()


def sse(*events: str, end: str = "\n") -> bytes:
    return "".join(e.replace("\n", end) + end + end for e in events).encode()


@dataclass(frozen=True)
class Variant:
    name: str
    answer: RawAnswer
    via: str = "raw"
    """Upstream kind it is asked through: ``raw`` (HTTP tool), ``rawmcp``, ``rawllm``."""
    live: bool = True
    """Some client reads the secret straight from the stand-in (``False``: none does,
    kept to show the sidecar does not make it readable either)."""


def _v(name: str, headers: list[tuple[str, str]], body: bytes, **kw: Any) -> Variant:
    via = kw.pop("via", "raw")
    live = kw.pop("live", True)
    return Variant(name, RawAnswer(headers, body, **kw), via, live)


def _ct(value: str) -> list[tuple[str, str]]:
    return [("Content-Type", value)]


_PLAIN = doc(SECRET)
_ZSTD = zstandard.ZstdCompressor().compress(_PLAIN)


def _raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-15)
    return c.compress(data) + c.flush()


CHARSETS = [
    _v("json-utf8", _ct(JSON), doc()),
    _v("json-surrogate-pair-split", _ct(JSON), doc(SPLIT)),
    _v("json-utf8-bom", _ct(JSON), b"\xef\xbb\xbf" + doc()),
    _v("json-nan", _ct(JSON), b'{"n": NaN, "note": "' + ESCAPED.encode() + b'"}'),
    _v("json-lone-surrogate", _ct(JSON), b'{"s": "\\ud800", "note": "' + ESCAPED.encode() + b'"}'),
    _v("json-utf16le-bom", _ct(JSON), _PLAIN.decode().encode("utf-16")),
    _v("json-utf16be", _ct(JSON), _PLAIN.decode().encode("utf-16-be")),
    _v("json-utf32le", _ct(JSON), _PLAIN.decode().encode("utf-32-le")),
    _v("json-utf32-bom", _ct(JSON), _PLAIN.decode().encode("utf-32")),
    _v("json-declared-utf16-body-utf8", _ct(JSON + "; charset=utf-16"), doc() + b" "),
    _v(
        "json-declared-utf8-body-utf16",
        _ct(JSON + "; charset=utf-8"),
        _PLAIN.decode().encode("utf-16-le"),
    ),
    _v("json-declared-latin1", _ct(JSON + "; charset=iso-8859-1"), doc()),
    _v("text-plain-json", _ct("text/plain"), doc()),
    _v("no-content-type-json", [], doc()),
    _v("vnd-json", _ct("application/vnd.x+json"), doc()),
    _v("text-utf16-bom", _ct("text/plain"), ("the key is " + SECRET).encode("utf-16")),
    _v(
        "text-utf8-bom-declared-utf16",
        _ct("text/plain; charset=utf-16"),
        b"\xef\xbb\xbfthe key is " + SECRET.encode() + b" ",
    ),
    _v(
        "two-content-types",
        [*_ct("text/plain"), *_ct("text/plain; charset=utf-16-le")],
        ("the key is " + SECRET).encode("utf-16-le"),
    ),
    _v("ndjson", _ct("application/x-ndjson"), b'{"a": 1}\n' + doc() + b"\n"),
    _v("ndjson-untyped", [], b'{"a": 1}\n' + doc() + b"\n"),
    _v(
        "ndjson-llm",
        _ct("application/x-ndjson"),
        b'{"a": 1}\n' + doc() + b"\n",
        **{"via": "rawllm"},
    ),
    _v("xml-reference", _ct("application/xml"), b"<r><k>&#65;KIA2E3MBFQXKZ7VJ4NA</k></r>"),
    _v(
        "rss-attribute",
        _ct("application/rss+xml"),
        b'<rss><i t="&#x41;KIA2E3MBFQXKZ7VJ4NA"/></rss>',
    ),
    _v("form", _ct("application/x-www-form-urlencoded"), b"token=%41KIA2E3MBFQXKZ7VJ4NA&t=bearer"),
    _v(
        "form-plus",
        _ct("application/x-www-form-urlencoded"),
        b"note=the+key+%41KIA2E3MBFQXKZ7VJ4NA",
    ),
    _v("text-latin1", _ct("text/plain; charset=latin-1"), b"the key is " + SECRET.encode()),
    _v("html-references", _ct("text/html"), b"<p>the key is &#65;KIA2E3MBFQXKZ7VJ4NA</p>"),
]

CODINGS = [
    _v("gzip", [*_ct(JSON), ("Content-Encoding", "gzip")], gzip.compress(_PLAIN)),
    _v("deflate-zlib", [*_ct(JSON), ("Content-Encoding", "deflate")], zlib.compress(_PLAIN)),
    _v("deflate-raw", [*_ct(JSON), ("Content-Encoding", "deflate")], _raw_deflate(_PLAIN)),
    _v("br", [*_ct(JSON), ("Content-Encoding", "br")], brotli.compress(_PLAIN)),
    _v("zstd", [*_ct(JSON), ("Content-Encoding", "zstd")], _ZSTD),
    _v(
        "gzip-gzip",
        [*_ct(JSON), ("Content-Encoding", "gzip, gzip")],
        gzip.compress(gzip.compress(_PLAIN)),
    ),
    _v(
        "gzip-twice-two-headers",
        [*_ct(JSON), ("Content-Encoding", "gzip"), ("Content-Encoding", "gzip")],
        gzip.compress(gzip.compress(_PLAIN)),
    ),
    _v("gzip-upper", [*_ct(JSON), ("Content-Encoding", "GZIP")], gzip.compress(_PLAIN)),
    _v("unknown-coding", [*_ct(JSON), ("Content-Encoding", "x-custom")], _PLAIN),
    _v(
        "identity-gzip", [*_ct(JSON), ("Content-Encoding", "identity, gzip")], gzip.compress(_PLAIN)
    ),
]

FRAMING = [
    _v("chunked", _ct(JSON), _PLAIN, framing="chunked", pieces=7),
    _v("status-500", _ct(JSON), _PLAIN, status=500),
    _v("status-404-html", _ct("text/html"), b"<p>" + SECRET.encode() + b"</p>", status=404),
    _v("llm-error-400", _ct(JSON), _PLAIN, status=400, via="rawllm"),
    _v("close-delimited", _ct(JSON), _PLAIN, framing="close"),
    _v(
        "length-shorter",
        [*_ct("text/plain"), ("Content-Length", "31")],
        b"the key is " + SECRET.encode() + b" and more text after it",
        framing="raw",
    ),
    _v(
        "length-longer",
        [*_ct("text/plain"), ("Content-Length", "400")],
        b"the key is " + SECRET.encode(),
        framing="raw",
        live=False,  # every client refuses the truncated body
    ),
]

_EV = 'data: {"note": "the key is ' + ESCAPED + '"}'
SSE_HTTP = [
    _v("sse-lf", _ct("text/event-stream"), sse(_EV)),
    _v("sse-crlf", _ct("text/event-stream"), sse(_EV, end="\r\n")),
    _v("sse-cr", _ct("text/event-stream"), sse(_EV, end="\r")),
    _v("sse-no-space", _ct("text/event-stream"), sse(_EV.replace("data: ", "data:"))),
    _v("sse-comment", _ct("text/event-stream"), sse(": hello\n" + _EV)),
    _v("sse-bom", _ct("text/event-stream"), b"\xef\xbb\xbf" + sse(_EV)),
    _v("sse-bytewise", _ct("text/event-stream"), sse("event: x\n" + _EV), pieces=1),
    _v("sse-no-final-blank", _ct("text/event-stream"), sse(_EV)[:-1], live=False),
    _v("sse-event-name", _ct("text/event-stream"), sse("event: tool_output\n" + _EV)),
    _v("sse-secret-in-event-name", _ct("text/event-stream"), sse(f"event: {SECRET}\ndata: ok")),
    _v("sse-plain-data", _ct("text/event-stream"), sse(f"data: the key is {SECRET}")),
    _v("sse-unframed", _ct("text/event-stream"), f"the key is {SECRET}".encode()),
    _v("sse-nan", _ct("text/event-stream"), sse('data: {"n": NaN, "note": "' + ESCAPED + '"}')),
    _v(
        "sse-gzip",
        [*_ct("text/event-stream"), ("Content-Encoding", "gzip")],
        gzip.compress(sse(_EV)),
    ),
]


def _chat(content: str, **delta: Any) -> str:
    chunk = {"id": "c1", "object": "chat.completion.chunk", "model": "gpt-4o-mini"}
    return (
        "data: "
        + orjson.dumps(
            {**chunk, "choices": [{"index": 0, "delta": {"content": content, **delta}}]}
        ).decode()
    )


_LLM = {"via": "rawllm"}
SSE_LLM = [
    _v(
        "chat-content-split",
        _ct("text/event-stream"),
        sse(_chat("key AKIA2E3MBF"), _chat("QXKZ7VJ4NA ok"), "data: [DONE]"),
        **_LLM,
    ),
    _v(
        "chat-refusal",
        _ct("text/event-stream"),
        sse(_chat("", refusal=f"the key is {SECRET}"), "data: [DONE]"),
        **_LLM,
    ),
    _v(
        "responses-completed",
        _ct("text/event-stream"),
        sse(
            "event: response.completed\ndata: "
            + orjson.dumps(
                {
                    "type": "response.completed",
                    "response": {
                        "output": [
                            {"content": [{"type": "output_text", "text": f"the key is {SECRET}"}]}
                        ]
                    },
                }
            ).decode()
        ),
        **_LLM,
    ),
    _v(
        "chat-unknown-event",
        _ct("text/event-stream"),
        sse('data: {"type": "x.custom", "text": "the key is ' + ESCAPED + '"}'),
        **_LLM,
    ),
    _v(
        "chat-nan",
        _ct("text/event-stream"),
        sse(
            'data: {"id": "c1", "x": NaN, "choices": [{"index": 0, "delta": '
            '{"content": "the key is ' + ESCAPED + '"}}]}'
        ),
        **_LLM,
    ),
    _v(
        "chat-json-answer",
        _ct(JSON),
        b'{"choices": [{"message": {"content": "the key is ' + ESCAPED.encode() + b'"}}]}',
        **_LLM,
    ),
]

_MCP = {"via": "rawmcp"}
_B64 = base64.b64encode(f"the key is {SECRET}".encode()).decode()
_B64_LONG = base64.b64encode(("garden notes. " * 3000 + f"the key is {SECRET}").encode()).decode()
"""A resource past the detectors' own base64 spans (16 KiB): the client decodes it all."""
MCP = [
    _v(
        "mcp-text",
        _ct(JSON),
        mcp_result('{"content": [{"type": "text", "text": "' + ESCAPED + '"}]}'),
        **_MCP,
    ),
    _v(
        "mcp-resource-text",
        _ct(JSON),
        mcp_result(
            '{"content": [{"type": "resource", "resource": {"uri": "file:///k", "text": "'
            + ESCAPED
            + '"}}]}'
        ),
        **_MCP,
    ),
    _v(
        "mcp-resource-blob",
        _ct(JSON),
        mcp_result(
            '{"content": [{"type": "resource", "resource": '
            '{"uri": "file:///k", "mimeType": "text/plain", "blob": "' + _B64 + '"}}]}'
        ),
        **_MCP,
    ),
    _v(
        "mcp-resource-blob-long",
        _ct(JSON),
        mcp_result(
            '{"contents": [{"uri": "file:///k", "mimeType": "text/plain", "blob": "'
            + _B64_LONG
            + '"}]}'
        ),
        **_MCP,
    ),
    _v(
        "mcp-sse-resource-blob-long",
        _ct("text/event-stream"),
        sse(
            "data: "
            + mcp_result(
                '{"content": [{"type": "resource", "resource": {"uri": "file:///k", "blob": "'
                + _B64_LONG
                + '"}}]}'
            ).decode()
        ),
        **_MCP,
    ),
    _v(
        "mcp-text-holding-json",
        _ct(JSON),
        mcp_result(
            '{"content": [{"type": "text", "text": '
            + orjson.dumps('{"rows": [{"k": "' + ESCAPED + '"}]}').decode()
            + "}]}"
        ),
        **_MCP,
    ),
    _v(
        "mcp-structured",
        _ct(JSON),
        mcp_result('{"content": [], "structuredContent": {"k": "' + ESCAPED + '"}}'),
        **_MCP,
    ),
    _v(
        "mcp-structured-key",
        _ct(JSON),
        mcp_result('{"content": [], "structuredContent": {"' + SECRET + '": 1}}'),
        **_MCP,
    ),
    _v(
        "mcp-sse-nan",
        _ct("text/event-stream"),
        sse(
            'data: {"jsonrpc": "2.0", "id": 1, "n": NaN, "result": {"content": [{"type": "text", '
            '"text": "' + ESCAPED + '"}]}}'
        ),
        **_MCP,
    ),
    _v(
        "mcp-meta",
        _ct(JSON),
        mcp_result('{"content": [], "_meta": {"note": "' + ESCAPED + '"}}'),
        **_MCP,
    ),
    _v(
        "mcp-error-data",
        _ct(JSON),
        b'{"jsonrpc": "2.0", "id": 1, "error": {"code": -1, "message": "x", "data": "'
        + ESCAPED.encode()
        + b'"}}',
        **_MCP,
    ),
    _v(
        "mcp-image-annotation",
        _ct(JSON),
        mcp_result(
            '{"content": [{"type": "image", "data": "iVBORw0KGgo=", "mimeType": "image/png", '
            '"annotations": {"alt": "' + ESCAPED + '"}}]}'
        ),
        **_MCP,
    ),
    _v(
        "mcp-sse",
        _ct("text/event-stream"),
        sse(
            "event: message\ndata: "
            + mcp_result('{"content": [{"type": "text", "text": "' + ESCAPED + '"}]}').decode()
        ),
        **_MCP,
    ),
    _v(
        "mcp-duplicate-key",
        _ct(JSON),
        mcp_result('{"content": [{"type": "text", "text": "' + ESCAPED + '", "text": "ok"}]}'),
        live=False,
        **_MCP,
    ),
    _v(
        "mcp-deep",
        _ct(JSON),
        mcp_result(
            '{"content": [], "structuredContent": '
            + "[" * 300
            + '"'
            + ESCAPED
            + '"'
            + "]" * 300
            + "}"
        ),
        **_MCP,
    ),
    _v(
        "mcp-numbers-as-strings",
        _ct(JSON),
        mcp_result('{"content": [], "structuredContent": {"n": "2", "m": "' + ESCAPED + '"}}'),
        **_MCP,
    ),
]

_LISTING = {"via": "rawmcp-list"}
MCP_LIST = [
    _v(
        "tools-list-sse-bom",
        _ct("text/event-stream"),
        b"\xef\xbb\xbf"
        + sse(
            "data: "
            + mcp_result(
                '{"tools": [{"name": "echo", "description": "' + ESCAPED + '", "inputSchema": {}}]}'
            ).decode()
        ),
        **_LISTING,
    ),
    _v(
        "tools-list-sse-comment",
        _ct("text/event-stream"),
        sse(f": the key is {SECRET}\ndata: " + mcp_result('{"tools": []}').decode()),
        **_LISTING,
    ),
]

VARIANTS = CHARSETS + CODINGS + FRAMING + SSE_HTTP + SSE_LLM + MCP + MCP_LIST


def _request(variant: Variant, base: str) -> tuple[str, dict[str, Any]]:
    key = variant.name
    if variant.via == "rawllm":
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        if "event-stream" in dict(variant.answer.headers).get("Content-Type", ""):
            body["stream"] = True
        return f"{base}/rawllm/v1/chat/completions", {"json": body}
    if variant.via == "rawmcp":
        call = {"name": "echo", "arguments": {"text": "hi"}}
        return f"{base}/rawmcp/{key}", {
            "json": {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call},
            "headers": {"Accept": "application/json, text/event-stream"},
        }
    if variant.via == "rawmcp-list":
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
        [*_ct(JSON), ("Content-Encoding", "identity"), ("Content-Encoding", "gzip")],
        gzip.compress(request),
    )
    sc = await sidecar_factory(guarded_policy(standins, upstream.url))
    url, kwargs = _request(_v("mcp-sampling", [], b"", via="rawmcp"), sc.explicit)
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
    upstream.answers["*"] = RawAnswer(_ct(ctype), body)
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
        _ct("text/event-stream"), _responses_stream(f"Write to {email} about the garden.")
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
        _ct("text/event-stream"), sse(_chat(answer[:30]), _chat(answer[30:]), "data: [DONE]")
    )
    sc = await sidecar_factory(guarded_policy(standins, upstream.url))
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    status, relayed = await client_readings(f"{sc.explicit}/rawllm/v1/chat/completions", json=body)
    assert status == 200
    assert answer in relayed
