"""The variants of the answer-readings matrix (``test_answer_readings``): one secret, an
AWS key, answered every way a real client still reads it: charsets, content types,
codings, HTTP framing, SSE framing, model streams, JSON oddities and MCP result shapes.
"""

from __future__ import annotations

import base64
import gzip
import zlib
from dataclasses import dataclass
from typing import Any

import brotli
import orjson
import zstandard

from tests.sidecar.answer_variants import RawAnswer

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
    stream: bool = False
    """Ask a model for a stream (``stream: true``) whatever the answer's type."""
    live: bool = True
    """Some client reads the secret straight from the stand-in (``False``: none does,
    kept to show the sidecar does not make it readable either)."""


def variant(name: str, headers: list[tuple[str, str]], body: bytes, **kw: Any) -> Variant:
    via = kw.pop("via", "raw")
    live = kw.pop("live", True)
    stream = kw.pop("stream", False)
    return Variant(name, RawAnswer(headers, body, **kw), via, stream, live)


def ct(value: str) -> list[tuple[str, str]]:
    return [("Content-Type", value)]


_PLAIN = doc(SECRET)
_ZSTD = zstandard.ZstdCompressor().compress(_PLAIN)


def _raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-15)
    return c.compress(data) + c.flush()


CHARSETS = [
    variant("json-utf8", ct(JSON), doc()),
    variant("json-surrogate-pair-split", ct(JSON), doc(SPLIT)),
    variant("json-utf8-bom", ct(JSON), b"\xef\xbb\xbf" + doc()),
    variant(
        "json-repeated-key-first-value",
        ct(JSON),
        b'{"id": 7, "note": "the key is ' + ESCAPED.encode() + b'", "note": "nothing here"}',
    ),
    variant("json-nan", ct(JSON), b'{"n": NaN, "note": "' + ESCAPED.encode() + b'"}'),
    variant(
        "json-lone-surrogate", ct(JSON), b'{"s": "\\ud800", "note": "' + ESCAPED.encode() + b'"}'
    ),
    variant("json-utf16le-bom", ct(JSON), _PLAIN.decode().encode("utf-16")),
    variant("json-utf16be", ct(JSON), _PLAIN.decode().encode("utf-16-be")),
    variant("json-utf32le", ct(JSON), _PLAIN.decode().encode("utf-32-le")),
    variant("json-utf32-bom", ct(JSON), _PLAIN.decode().encode("utf-32")),
    variant("json-declared-utf16-body-utf8", ct(JSON + "; charset=utf-16"), doc() + b" "),
    variant(
        "json-declared-utf8-body-utf16",
        ct(JSON + "; charset=utf-8"),
        _PLAIN.decode().encode("utf-16-le"),
    ),
    variant("json-declared-latin1", ct(JSON + "; charset=iso-8859-1"), doc()),
    variant("text-plain-json", ct("text/plain"), doc()),
    variant("no-content-type-json", [], doc()),
    variant("vnd-json", ct("application/vnd.x+json"), doc()),
    variant("text-utf16-bom", ct("text/plain"), ("the key is " + SECRET).encode("utf-16")),
    variant(
        "text-utf8-bom-declared-utf16",
        ct("text/plain; charset=utf-16"),
        b"\xef\xbb\xbfthe key is " + SECRET.encode() + b" ",
    ),
    variant(
        "two-content-types",
        [*ct("text/plain"), *ct("text/plain; charset=utf-16-le")],
        ("the key is " + SECRET).encode("utf-16-le"),
    ),
    variant("ndjson", ct("application/x-ndjson"), b'{"a": 1}\n' + doc() + b"\n"),
    variant("ndjson-untyped", [], b'{"a": 1}\n' + doc() + b"\n"),
    variant(
        "ndjson-llm",
        ct("application/x-ndjson"),
        b'{"a": 1}\n' + doc() + b"\n",
        **{"via": "rawllm"},
    ),
    variant("xml-reference", ct("application/xml"), b"<r><k>&#65;KIA2E3MBFQXKZ7VJ4NA</k></r>"),
    variant(
        "rss-attribute",
        ct("application/rss+xml"),
        b'<rss><i t="&#x41;KIA2E3MBFQXKZ7VJ4NA"/></rss>',
    ),
    variant(
        "form", ct("application/x-www-form-urlencoded"), b"token=%41KIA2E3MBFQXKZ7VJ4NA&t=bearer"
    ),
    variant(
        "form-plus",
        ct("application/x-www-form-urlencoded"),
        b"note=the+key+%41KIA2E3MBFQXKZ7VJ4NA",
    ),
    variant("text-latin1", ct("text/plain; charset=latin-1"), b"the key is " + SECRET.encode()),
    variant("html-references", ct("text/html"), b"<p>the key is &#65;KIA2E3MBFQXKZ7VJ4NA</p>"),
]

CODINGS = [
    variant("gzip", [*ct(JSON), ("Content-Encoding", "gzip")], gzip.compress(_PLAIN)),
    variant("deflate-zlib", [*ct(JSON), ("Content-Encoding", "deflate")], zlib.compress(_PLAIN)),
    variant("deflate-raw", [*ct(JSON), ("Content-Encoding", "deflate")], _raw_deflate(_PLAIN)),
    variant("br", [*ct(JSON), ("Content-Encoding", "br")], brotli.compress(_PLAIN)),
    variant("zstd", [*ct(JSON), ("Content-Encoding", "zstd")], _ZSTD),
    variant(
        "gzip-gzip",
        [*ct(JSON), ("Content-Encoding", "gzip, gzip")],
        gzip.compress(gzip.compress(_PLAIN)),
    ),
    variant(
        "gzip-twice-two-headers",
        [*ct(JSON), ("Content-Encoding", "gzip"), ("Content-Encoding", "gzip")],
        gzip.compress(gzip.compress(_PLAIN)),
    ),
    variant("gzip-upper", [*ct(JSON), ("Content-Encoding", "GZIP")], gzip.compress(_PLAIN)),
    variant("unknown-coding", [*ct(JSON), ("Content-Encoding", "x-custom")], _PLAIN),
    variant(
        "identity-gzip", [*ct(JSON), ("Content-Encoding", "identity, gzip")], gzip.compress(_PLAIN)
    ),
]

FRAMING = [
    variant("chunked", ct(JSON), _PLAIN, framing="chunked", pieces=7),
    variant(
        "chunked-trailer",
        [*ct("text/plain"), ("Trailer", "X-Note")],
        b"nothing here",
        framing="chunked",
        trailers=[("X-Note", SECRET)],
        live=False,  # no client hands trailers to its caller
    ),
    variant("status-500", ct(JSON), _PLAIN, status=500),
    variant("status-404-html", ct("text/html"), b"<p>" + SECRET.encode() + b"</p>", status=404),
    variant("llm-error-400", ct(JSON), _PLAIN, status=400, via="rawllm"),
    variant("close-delimited", ct(JSON), _PLAIN, framing="close"),
    variant(
        "length-shorter",
        [*ct("text/plain"), ("Content-Length", "31")],
        b"the key is " + SECRET.encode() + b" and more text after it",
        framing="raw",
    ),
    variant(
        "length-longer",
        [*ct("text/plain"), ("Content-Length", "400")],
        b"the key is " + SECRET.encode(),
        framing="raw",
        live=False,  # every client refuses the truncated body
    ),
]

_EV = 'data: {"note": "the key is ' + ESCAPED + '"}'
SSE_HTTP = [
    variant("sse-lf", ct("text/event-stream"), sse(_EV)),
    variant("sse-crlf", ct("text/event-stream"), sse(_EV, end="\r\n")),
    variant("sse-cr", ct("text/event-stream"), sse(_EV, end="\r")),
    variant("sse-no-space", ct("text/event-stream"), sse(_EV.replace("data: ", "data:"))),
    variant("sse-comment", ct("text/event-stream"), sse(": hello\n" + _EV)),
    variant("sse-bom", ct("text/event-stream"), b"\xef\xbb\xbf" + sse(_EV)),
    variant("sse-bytewise", ct("text/event-stream"), sse("event: x\n" + _EV), pieces=1),
    variant("sse-no-final-blank", ct("text/event-stream"), sse(_EV)[:-1], live=False),
    variant("sse-event-name", ct("text/event-stream"), sse("event: tool_output\n" + _EV)),
    variant("sse-secret-in-event-name", ct("text/event-stream"), sse(f"event: {SECRET}\ndata: ok")),
    variant("sse-plain-data", ct("text/event-stream"), sse(f"data: the key is {SECRET}")),
    variant("sse-unframed", ct("text/event-stream"), f"the key is {SECRET}".encode()),
    variant("sse-nan", ct("text/event-stream"), sse('data: {"n": NaN, "note": "' + ESCAPED + '"}')),
    variant(
        "sse-gzip",
        [*ct("text/event-stream"), ("Content-Encoding", "gzip")],
        gzip.compress(sse(_EV)),
    ),
]


def chat_chunk(content: str, **delta: Any) -> str:
    chunk = {"id": "c1", "object": "chat.completion.chunk", "model": "gpt-4o-mini"}
    return (
        "data: "
        + orjson.dumps(
            {**chunk, "choices": [{"index": 0, "delta": {"content": content, **delta}}]}
        ).decode()
    )


_LLM = {"via": "rawllm"}
SSE_LLM = [
    variant(
        "chat-content-split",
        ct("text/event-stream"),
        sse(chat_chunk("key AKIA2E3MBF"), chat_chunk("QXKZ7VJ4NA ok"), "data: [DONE]"),
        **_LLM,
    ),
    variant(
        "chat-refusal",
        ct("text/event-stream"),
        sse(chat_chunk("", refusal=f"the key is {SECRET}"), "data: [DONE]"),
        **_LLM,
    ),
    variant(
        "responses-completed",
        ct("text/event-stream"),
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
    variant(
        "chat-unknown-event",
        ct("text/event-stream"),
        sse('data: {"type": "x.custom", "text": "the key is ' + ESCAPED + '"}'),
        **_LLM,
    ),
    variant(
        "chat-nan",
        ct("text/event-stream"),
        sse(
            'data: {"id": "c1", "x": NaN, "choices": [{"index": 0, "delta": '
            '{"content": "the key is ' + ESCAPED + '"}}]}'
        ),
        **_LLM,
    ),
    variant(
        "chat-gzip-twice-two-headers",
        [*ct("text/event-stream"), ("Content-Encoding", "gzip"), ("Content-Encoding", "gzip")],
        gzip.compress(gzip.compress(sse(chat_chunk(f"the key is {SECRET} ok"), "data: [DONE]"))),
        **_LLM,
    ),
    variant(
        "chat-json-answer",
        ct(JSON),
        b'{"choices": [{"message": {"content": "the key is ' + ESCAPED.encode() + b'"}}]}',
        **_LLM,
    ),
]

_STREAM_BODY = sse(chat_chunk("the key is " + "\x00"), "data: [DONE]").replace(
    b"\\u0000", ESCAPED.encode()
)
"""A chat stream whose delta holds the escaped key."""
STREAM_TYPES = [
    variant(
        f"llm-stream-as-{name}",
        ct(value) if value else [],
        _STREAM_BODY,
        stream=True,
        **_LLM,
    )
    for name, value in (("json", JSON), ("text", "text/plain"), ("untyped", ""))
]
"""The OpenAI SDK reads a streamed call's answer as SSE whatever its Content-Type."""

_MCP = {"via": "rawmcp"}
_B64 = base64.b64encode(f"the key is {SECRET}".encode()).decode()
_B64_LONG = base64.b64encode(("garden notes. " * 3000 + f"the key is {SECRET}").encode()).decode()
"""A resource past the detectors' own base64 spans (16 KiB): the client decodes it all."""
MCP = [
    variant(
        "mcp-text",
        ct(JSON),
        mcp_result('{"content": [{"type": "text", "text": "' + ESCAPED + '"}]}'),
        **_MCP,
    ),
    variant(
        "mcp-resource-text",
        ct(JSON),
        mcp_result(
            '{"content": [{"type": "resource", "resource": {"uri": "file:///k", "text": "'
            + ESCAPED
            + '"}}]}'
        ),
        **_MCP,
    ),
    variant(
        "mcp-resource-blob",
        ct(JSON),
        mcp_result(
            '{"content": [{"type": "resource", "resource": '
            '{"uri": "file:///k", "mimeType": "text/plain", "blob": "' + _B64 + '"}}]}'
        ),
        **_MCP,
    ),
    variant(
        "mcp-resource-blob-long",
        ct(JSON),
        mcp_result(
            '{"contents": [{"uri": "file:///k", "mimeType": "text/plain", "blob": "'
            + _B64_LONG
            + '"}]}'
        ),
        **_MCP,
    ),
    variant(
        "mcp-sse-resource-blob-long",
        ct("text/event-stream"),
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
    variant(
        "mcp-text-holding-json",
        ct(JSON),
        mcp_result(
            '{"content": [{"type": "text", "text": '
            + orjson.dumps('{"rows": [{"k": "' + ESCAPED + '"}]}').decode()
            + "}]}"
        ),
        **_MCP,
    ),
    variant(
        "mcp-structured",
        ct(JSON),
        mcp_result('{"content": [], "structuredContent": {"k": "' + ESCAPED + '"}}'),
        **_MCP,
    ),
    variant(
        "mcp-sse-key",
        ct("text/event-stream"),
        sse(
            "data: "
            + mcp_result('{"content": [], "structuredContent": {"' + SECRET + '": 1}}').decode()
        ),
        **_MCP,
    ),
    variant(
        "mcp-structured-key",
        ct(JSON),
        mcp_result('{"content": [], "structuredContent": {"' + SECRET + '": 1}}'),
        **_MCP,
    ),
    variant(
        "mcp-sse-nan",
        ct("text/event-stream"),
        sse(
            'data: {"jsonrpc": "2.0", "id": 1, "n": NaN, "result": {"content": [{"type": "text", '
            '"text": "' + ESCAPED + '"}]}}'
        ),
        **_MCP,
    ),
    variant(
        "mcp-meta",
        ct(JSON),
        mcp_result('{"content": [], "_meta": {"note": "' + ESCAPED + '"}}'),
        **_MCP,
    ),
    variant(
        "mcp-error-data",
        ct(JSON),
        b'{"jsonrpc": "2.0", "id": 1, "error": {"code": -1, "message": "x", "data": "'
        + ESCAPED.encode()
        + b'"}}',
        **_MCP,
    ),
    variant(
        "mcp-image-annotation",
        ct(JSON),
        mcp_result(
            '{"content": [{"type": "image", "data": "iVBORw0KGgo=", "mimeType": "image/png", '
            '"annotations": {"alt": "' + ESCAPED + '"}}]}'
        ),
        **_MCP,
    ),
    variant(
        "mcp-sse",
        ct("text/event-stream"),
        sse(
            "event: message\ndata: "
            + mcp_result('{"content": [{"type": "text", "text": "' + ESCAPED + '"}]}').decode()
        ),
        **_MCP,
    ),
    variant(
        "mcp-duplicate-key",
        ct(JSON),
        mcp_result('{"content": [{"type": "text", "text": "' + ESCAPED + '", "text": "ok"}]}'),
        **_MCP,  # live: a first-wins parser reads the first "text"
    ),
    variant(
        "mcp-deep",
        ct(JSON),
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
    variant(
        "mcp-numbers-as-strings",
        ct(JSON),
        mcp_result('{"content": [], "structuredContent": {"n": "2", "m": "' + ESCAPED + '"}}'),
        **_MCP,
    ),
]

_LISTING = {"via": "rawmcp-list"}
MCP_LIST = [
    variant(
        "tools-list-sse-bom",
        ct("text/event-stream"),
        b"\xef\xbb\xbf"
        + sse(
            "data: "
            + mcp_result(
                '{"tools": [{"name": "echo", "description": "' + ESCAPED + '", "inputSchema": {}}]}'
            ).decode()
        ),
        **_LISTING,
    ),
    variant(
        "tools-list-sse-comment",
        ct("text/event-stream"),
        sse(f": the key is {SECRET}\ndata: " + mcp_result('{"tools": []}').decode()),
        **_LISTING,
    ),
]

VARIANTS = CHARSETS + CODINGS + FRAMING + SSE_HTTP + SSE_LLM + STREAM_TYPES + MCP + MCP_LIST
