"""One request as the llhttp server (:mod:`.llhttp_server`) parsed it: the head as it came
on the wire, the body as it arrives (bounded in memory), and the writer its answer goes
out through. Satisfies :class:`~haltgate.sidecar.pipeline_request.PipelineRequest`."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Protocol, TypeGuard

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import HttpVersion, HttpVersion10, HttpVersion11
from multidict import CIMultiDict, CIMultiDictProxy

if TYPE_CHECKING:
    from haltgate.sidecar.original_destination import OriginalDestination

__all__ = ["AnswerWriter", "RequestBody", "WireRequest", "WriteSide", "writes_whole"]


class WriteSide(Protocol):
    """What an answer needs of its connection (the server's protocol)."""

    transport: asyncio.Transport | None
    closing: bool

    async def drain(self) -> None: ...


class RequestBody:
    """The request body's bytes as the parser delivers them; read by the pipeline.

    What is buffered and not read yet is reported to ``on_buffered`` (the connection pauses
    reading above its high-water mark, so a client cannot make the sidecar hold more than
    that of a body nobody reads yet)."""

    __slots__ = ("_buffer", "_eof", "_error", "_on_buffered", "_size", "_waiter")

    def __init__(self, on_buffered: Callable[[int], None]) -> None:
        self._buffer: deque[bytes] = deque()
        self._size = 0
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._on_buffered = on_buffered

    @property
    def at_eof(self) -> bool:
        """The whole body arrived (what is buffered may be unread)."""
        return self._eof

    def feed(self, data: bytes) -> None:
        self._buffer.append(data)
        self._size += len(data)
        self._on_buffered(len(data))
        self._wake()

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        """The connection ended before the body did."""
        if not self._eof:
            self._error = exc
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _take(self, n: int) -> bytes:
        """Up to ``n`` buffered bytes (all of them when ``n`` < 0)."""
        buf = self._buffer
        if n < 0 or n >= self._size:
            data = buf[0] if len(buf) == 1 else b"".join(buf)
            buf.clear()
        else:
            parts: list[bytes] = []
            need = n
            while need:
                head = buf[0]
                if len(head) <= need:
                    parts.append(buf.popleft())
                    need -= len(head)
                else:
                    parts.append(head[:need])
                    buf[0] = head[need:]
                    need = 0
            data = b"".join(parts)
        self._size -= len(data)
        self._on_buffered(-len(data))
        return data

    def discard(self) -> None:
        """Drop what is buffered and unread (the answer is out)."""
        if self._size:
            self._take(-1)

    def read_nowait(self, n: int = -1) -> bytes:
        if not self._size:
            return b""
        return self._take(n)

    async def _wait(self) -> None:
        if self._error is not None:
            raise self._error
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        await waiter

    async def readexactly(self, n: int) -> bytes:
        parts: list[bytes] = []
        need = n
        while need:
            if self._size:
                part = self._take(need)
                parts.append(part)
                need -= len(part)
                continue
            if self._eof:
                got = b"".join(parts)
                raise asyncio.IncompleteReadError(got, n)
            await self._wait()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def iter_any(self) -> AsyncIterator[bytes]:
        while True:
            if self._size:
                yield self._take(-1)
                continue
            if self._eof:
                return
            await self._wait()


class AnswerWriter(AbstractStreamWriter):
    """Writes one answer on its connection for aiohttp's response objects: the head is held
    until the first body bytes (one socket write for a whole answer), the body is framed by
    length (never more than declared) or chunked."""

    def __init__(self, conn: WriteSide) -> None:
        self._conn = conn
        self._head: bytes | None = None
        self._chunked = False
        self.length: int | None = None
        self.output_size = 0
        self.buffer_size = 0
        self.done = False

    async def write_headers(self, status_line: str, headers: CIMultiDict[str]) -> None:
        lines = [status_line]
        for name, value in headers.items():
            if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
                raise ValueError(f"header {name[:64]!r}: line breaks are not allowed")
            lines.append(f"{name}: {value}")
        lines.append("\r\n")
        self._head = "\r\n".join(lines).encode("utf-8", "surrogateescape")

    def send_headers(self) -> None:
        if self._head is not None:
            self._send(b"")

    def send_continue(self) -> None:
        """``100 Continue`` (``Expect: 100-continue``), before anything of the answer."""
        if self._head is None and not self.output_size and not self.done:
            self._send(b"HTTP/1.1 100 Continue\r\n\r\n")

    def enable_chunking(self) -> None:
        self._chunked = True

    def enable_compression(self, encoding: str = "deflate", strategy: int | None = None) -> None:
        raise RuntimeError("the sidecar does not compress answers")

    def _send(self, data: bytes) -> None:
        transport = self._conn.transport
        if self._conn.closing or transport is None or transport.is_closing():
            raise ConnectionResetError("the client closed the connection")
        if self._head is not None:
            data = self._head + data
            self._head = None
        if data:
            transport.write(data)

    def _frame(self, chunk: bytes) -> bytes:
        if self.length is not None:
            room = self.length - self.output_size
            if len(chunk) > room:
                chunk = chunk[: max(room, 0)]  # never past the declared length
        self.output_size += len(chunk)
        if self._chunked and chunk:
            return b"%x\r\n%b\r\n" % (len(chunk), chunk)
        return chunk

    async def write(self, chunk: bytes | bytearray | memoryview) -> None:
        data = self._frame(bytes(chunk))
        if not data:
            return  # an empty chunk would end a chunked body
        self._send(data)
        await self.drain()

    async def write_eof(self, chunk: bytes = b"") -> None:
        if self.done:
            return
        data = self._frame(bytes(chunk))
        if self._chunked:
            data += b"0\r\n\r\n"
        self.done = True
        self._send(data)

    async def drain(self) -> None:
        await self._conn.drain()

    def write_whole(self, response: web.Response, request: WireRequest) -> bool:
        """Send a complete ``web.Response`` (bytes body, nothing streamed) in one write,
        framed as aiohttp's ``prepare`` frames it, without its machinery; the connection's
        keep-alive after it. ``False`` from :func:`writes_whole` sends the others through
        ``prepare``."""
        status = response.status
        method = request.method
        body = response.body
        assert body is None or isinstance(body, bytes)
        headers = response.headers
        keep = response.keep_alive
        if keep is None:
            keep = request.keep_alive
        version = request.version
        lines = [f"HTTP/{version[0]}.{version[1]} {status} {response.reason}"]
        no_body = method == "HEAD" or status < 200 or status in (204, 304)
        length = len(body) if body else 0
        for name, value in headers.items():
            if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
                raise ValueError(f"header {name[:64]!r}: line breaks are not allowed")
            lower = name.lower()
            if lower in ("content-length", "transfer-encoding"):
                continue  # framing is computed here
            lines.append(f"{name}: {value}")
        if not (status < 200 or status in (204, 304)) and (length or method != "HEAD"):
            lines.append(f"Content-Length: {length}")
            if length and "Content-Type" not in headers:
                lines.append("Content-Type: application/octet-stream")
        if "Date" not in headers:
            lines.append(f"Date: {rfc822_formatted_time()}")
        if "Connection" not in headers:
            if keep and version == HttpVersion10:
                lines.append("Connection: keep-alive")
            elif not keep and version == HttpVersion11:
                lines.append("Connection: close")
        lines.append("\r\n")
        head = "\r\n".join(lines).encode("utf-8", "surrogateescape")
        self.done = True
        self.output_size = 0 if no_body else length
        self._send(head if no_body or not body else head + body)
        return keep


def writes_whole(response: web.StreamResponse) -> TypeGuard[web.Response]:
    """A response :meth:`AnswerWriter.write_whole` sends: a plain ``web.Response`` not
    started, its body bytes, no cookie, compression or chunking asked for."""
    return (
        type(response) is web.Response
        and not response.prepared
        and (response.body is None or type(response.body) is bytes)
        and not response.chunked
        and not response.compression
        and not response._cookies  # the sidecar sets none; the upstream's are headers
    )


_DEFAULT_TYPE = "application/octet-stream"


class WireRequest:
    """A parsed request head, its body and the writer of its answer."""

    __slots__ = (
        "_content_length",
        "_payload_writer",
        "body_exists",
        "content",
        "destination",
        "expect",
        "headers",
        "keep_alive",
        "method",
        "raw_path",
        "transport",
        "version",
    )

    def __init__(
        self,
        method: str,
        raw_path: str,
        version: HttpVersion,
        headers: CIMultiDictProxy[str],
        *,
        chunked: bool,
        keep_alive: bool,
        body: RequestBody,
        writer: AnswerWriter,
        transport: asyncio.Transport | None,
        destination: OriginalDestination | None = None,
    ) -> None:
        self.method = method
        self.raw_path = raw_path
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive
        self.content = body
        self.transport = transport
        self.destination = destination
        """Where the agent was connecting (transparent listener); ``None`` elsewhere."""
        self._payload_writer = writer
        length = headers.get("Content-Length")
        # llhttp has checked it (digits only, one value, not with Transfer-Encoding).
        self._content_length = int(length) if length is not None and not chunked else None
        self.body_exists = chunked or bool(self._content_length)
        self.expect = headers.get("Expect")

    @property
    def content_length(self) -> int | None:
        return self._content_length

    @property
    def content_type(self) -> str:
        raw = self.headers.get("Content-Type")
        if not raw:
            return _DEFAULT_TYPE
        return raw.partition(";")[0].strip().lower() or _DEFAULT_TYPE

    @property
    def writer(self) -> AnswerWriter:
        return self._payload_writer

    async def _prepare_hook(self, response: web.StreamResponse) -> None:
        """aiohttp's response calls this before the head goes out (no signals here)."""
        return None

    def __repr__(self) -> str:
        return f"<WireRequest {self.method} {self.raw_path[:64]!r}>"
