"""A stand-in upstream that answers exactly the bytes a test gives it, and the ways real
clients read an answer: the differential half of ``test_answer_readings``.

:class:`RawUpstream` is a bare asyncio HTTP/1.1 server (outside the product: a fake of an
upstream): each request path ``/<prefix>/<key>`` is answered with the status line, headers
and body registered under ``key``, written in the pieces given (so an SSE event can be
split at every byte), then the connection is closed. Nothing is normalised: repeated
headers, wrong lengths and odd line endings go out as written.

:func:`client_readings` is what the agent's client libraries make of an answer: httpx
(``.text`` and ``.json()``, which is :func:`json.loads` on the bytes, detecting UTF-16/32
and a BOM), aiohttp (``.text()`` in the declared charset), requests, and the OpenAI SDK's
own SSE decoder for event streams. A variant is live when one of them reads the needle.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import html
import json
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree

import aiohttp
import httpx
import requests
from openai._streaming import SSEDecoder


@dataclass
class RawAnswer:
    headers: Sequence[tuple[str, str]]
    body: bytes
    status: int = 200
    pieces: int = 0
    """Write the body in pieces of this many bytes (0: at once)."""
    trailers: Sequence[tuple[str, str]] = ()
    """Trailer fields after the last chunk (``chunked`` framing)."""
    framing: str = "length"
    """``length`` (Content-Length: len(body)), ``close`` (none, ends at close),
    ``chunked`` (one chunk per piece), or ``raw`` (the headers say it all)."""


@dataclass
class RawUpstream:
    answers: dict[str, RawAnswer] = field(default_factory=dict)
    url: str = ""
    requests: list[bytes] = field(default_factory=list)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            body = await reader.readexactly(length) if length else b""
            self.requests.append(head + body)
            path = head.split(b" ", 2)[1].decode()
            key = path.rsplit("/", 1)[-1].split("?")[0]
            answer = self.answers.get(key) or self.answers["*"]
            out = [f"HTTP/1.1 {answer.status} X\r\n".encode()]
            out += [f"{k}: {v}\r\n".encode("latin-1") for k, v in answer.headers]
            if answer.framing == "length":
                out.append(f"Content-Length: {len(answer.body)}\r\n".encode())
            elif answer.framing == "chunked":
                out.append(b"Transfer-Encoding: chunked\r\n")
            out.append(b"Connection: close\r\n\r\n")
            writer.write(b"".join(out))
            step = answer.pieces or max(1, len(answer.body))
            for i in range(0, len(answer.body), step):
                piece = answer.body[i : i + step]
                if answer.framing == "chunked":
                    piece = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
                writer.write(piece)
                await writer.drain()
            if answer.framing == "chunked":
                fields = b"".join(f"{k}: {v}\r\n".encode() for k, v in answer.trailers)
                writer.write(b"0\r\n" + fields + b"\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, KeyError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@contextlib.asynccontextmanager
async def raw_upstream() -> AsyncIterator[RawUpstream]:
    upstream = RawUpstream()
    server = await asyncio.start_server(upstream._handle, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    upstream.url = f"http://{host}:{port}"
    try:
        yield upstream
    finally:
        server.close()
        await server.wait_closed()


_BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))


def _sse_data(body: bytes) -> list[str]:
    """Each event's name and data, as the OpenAI SDK's SSE decoder reads them."""
    return [s for e in SSEDecoder().iter_bytes(iter([body])) for s in (e.event or "", e.data)]


def _strings(obj: Any) -> list[str]:
    """Every key and string value of a JSON document (what a model reads of it), MCP
    ``blob`` values decoded, JSON held in strings parsed (as a framework parses an MCP
    text result)."""
    if isinstance(obj, str):
        if obj.lstrip()[:1] in ("{", "["):  # a JSON text inside (an MCP text result)
            with contextlib.suppress(ValueError, RecursionError):
                return [obj, *_strings(json.loads(obj))]
        return [obj]
    if isinstance(obj, dict):
        out = [s for k, v in obj.items() for s in [str(k), *_strings(v)]]
        if isinstance(obj.get("blob"), str):
            with contextlib.suppress(ValueError):
                out.append(base64.b64decode(obj["blob"]).decode("utf-8", "replace"))
        return out
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    return []


def readings_of(body: bytes, text: str, content_type: str | None) -> list[str]:
    """Texts a client derives from an already decoded answer: the text itself, its JSON
    strings when it parses (``json.loads`` of the bytes, as httpx's ``.json()``), and each
    SSE event's data (and its JSON strings)."""
    out = [text]
    for bom, codec in _BOMS:
        if body.startswith(bom):  # a browser (WHATWG decode) reads the BOM first
            out.append(body[len(bom) :].decode(codec, "replace"))
            break
    for source in (body, text):
        with contextlib.suppress(ValueError, RecursionError):
            out += _strings(json.loads(source))
        with contextlib.suppress(ValueError, RecursionError):  # a first-wins parser
            out += _strings(json.loads(source, object_pairs_hook=_first_wins))
    if b"\n" in body.strip():  # NDJSON / JSON lines: each line parsed on its own
        for line in text.splitlines():
            with contextlib.suppress(ValueError, RecursionError):
                out += _strings(json.loads(line))
    if content_type is not None and "xml" in content_type:
        with contextlib.suppress(ElementTree.ParseError):  # a feed or API client's parse
            root = ElementTree.fromstring(body)
            out += list(root.itertext())
            out += [v for e in root.iter() for v in e.attrib.values()]
    if content_type is not None and "form-urlencoded" in content_type:
        out += [s for pair in urllib.parse.parse_qsl(text, keep_blank_values=True) for s in pair]
    if content_type is not None and "html" in content_type:
        out.append(html.unescape(text))  # what a browser shows
    if content_type is None or "event-stream" in content_type or b"data:" in body:
        # The SDK's decoder as is, and an EventSource (which drops a leading BOM first).
        for stream in {body, body.removeprefix(b"\xef\xbb\xbf")}:
            deltas: list[str] = []
            for data in _sse_data(stream):
                out.append(data)
                with contextlib.suppress(ValueError, RecursionError):
                    obj = json.loads(data)
                    out += _strings(obj)
                    deltas += _chat_delta(obj)
            out.append("".join(deltas))  # a chat stream's text, as the SDK assembles it
    return out


def _first_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object as a first-wins parser reads it (simdjson's on-demand API, several Java
    and Go libraries): of a repeated key, the first value."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        obj.setdefault(key, value)
    return obj


def _chat_delta(obj: Any) -> list[str]:
    if not isinstance(obj, dict) or not isinstance(obj.get("choices"), list):
        return []
    return [
        c["delta"]["content"]
        for c in obj["choices"]
        if isinstance(c, dict)
        and isinstance(c.get("delta"), dict)
        and isinstance(c["delta"].get("content"), str)
    ]


async def client_readings(url: str, **kwargs: Any) -> tuple[int, list[str]]:
    """(status, every text the client libraries read) of a POST to ``url``."""
    texts: list[str] = []
    status = 0
    async with httpx.AsyncClient(timeout=10) as client:
        with contextlib.suppress(httpx.HTTPError):
            r = await client.post(url, **kwargs)
            status = r.status_code
            try:
                text = r.text
            except UnicodeError:  # a declared charset the body is not in
                text = ""
            texts += readings_of(r.content, text, r.headers.get("content-type"))
    async with aiohttp.ClientSession() as s:
        with contextlib.suppress(aiohttp.ClientError, UnicodeError, LookupError):
            async with s.post(url, **kwargs) as ar:
                raw = await ar.read()
                texts.append(await ar.text())
                texts += readings_of(raw, texts[-1], ar.headers.get("content-type"))

    def with_requests() -> list[str]:
        try:
            rr = requests.post(url, timeout=10, **kwargs)
        except requests.RequestException:
            return []
        return readings_of(rr.content, rr.text, rr.headers.get("content-type"))

    texts += await asyncio.to_thread(with_requests)
    return status, texts
