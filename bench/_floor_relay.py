"""Prototype of a leaner HTTP hop (issue 18 item 6): a relay on raw asyncio protocols with
llhttp (``httptools``) parsing on both legs. Benchmark material, not product code.

What it does, and only that: an HTTP/1.1 server (keep-alive, pipelined requests answered in
order, ``Content-Length`` and chunked request bodies, read whole as the sidecar must) that
strips the first path segment (the ``/<alias>`` of the explicit port) and forwards to one
upstream (HTTP or HTTPS) over a pool of persistent connections. The answer is relayed as it
arrives: a ``Content-Length`` answer byte for byte, a chunked or close-delimited one
re-chunked piece by piece (so an SSE stream passes through with no buffering). Hop-by-hop
headers are dropped on both legs; ``Host`` names the upstream.

Framing is llhttp's strict mode (no lenient flags: it refuses duplicate or malformed
``Content-Length``, ``Content-Length`` with ``Transfer-Encoding``, obs-fold, bad chunk sizes,
bare LF) plus the checks llhttp leaves to its embedder, each answered ``400`` with
``Connection: close``: line and head size limits, a repeated ``Host``, an HTTP version
other than 1.0 and 1.1, ``Transfer-Encoding`` in an HTTP/1.0 request (the last two are
accepted by aiohttp today). A framing error refuses everything parsed from the same read,
after the answers owed for earlier reads. What a product version would still need (not
built here): timeouts (idle, head, body, upstream), a retry of an idempotent request on a
pooled connection the upstream closed, ``Expect: 100-continue`` behind a pipelined request,
``CONNECT``, TLS on the client leg.

``bench/_floor_variants.py`` runs it (and its variants: other upstream clients, other
servers); ``bench/http_floor.py`` measures them.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from http import HTTPStatus
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

import httptools

Headers = list[tuple[bytes, bytes]]
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
        b"expect",  # answered here (100 Continue); the body is whole when it is forwarded
    }
)
MAX_LINE = 8190  # aiohttp's default max_line_size / max_field_size
MAX_HEAD = 65536
MAX_BODY = 10 * 1024 * 1024
MAX_QUEUED = 16  # pipelined requests parsed ahead before reading pauses
STATUS_LINES = {int(s): f"HTTP/1.1 {int(s)} {s.phrase}\r\n".encode("latin-1") for s in HTTPStatus}
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
BAD_GATEWAY = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
TOO_LARGE = b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class FramingError(Exception):
    """A request the relay refuses to frame (answered 400, connection closed)."""


class Sink(Protocol):
    """Where an upstream answer goes, as it is parsed."""

    def head(self, status: int, headers: Headers, length: int | None, conn: Any) -> None: ...
    def body(self, data: bytes) -> None: ...
    def end(self) -> None: ...
    def fail(self, exc: BaseException | None) -> None: ...
    def flush(self) -> None: ...


# ------------------------------------------------------------------ upstream leg


class UpstreamConn(asyncio.Protocol):
    """One persistent connection to the upstream; parses answers with llhttp."""

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.sink: Sink | None = None
        self.headers: Headers = []
        self.closed = False
        self.bodiless = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        sink = self.sink
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._abort(exc)
        if sink is not None:
            sink.flush()  # what this read produced goes out in one write

    def eof_received(self) -> bool | None:
        if self.sink is not None:
            try:  # a close-delimited answer ends here
                self.parser.feed_data(b"")
            except httptools.HttpParserError as exc:
                self._abort(exc)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.fail(exc or ConnectionResetError("upstream closed"))

    def _abort(self, exc: BaseException) -> None:
        sink, self.sink = self.sink, None
        self.close()
        if sink is not None:
            sink.fail(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def send(self, data: bytes, sink: Sink) -> None:
        assert self.transport is not None
        self.sink = sink
        self.headers = []
        self.bodiless = data.startswith(b"HEAD ")  # its answer has a head only
        self.transport.write(data)

    # llhttp callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        length = None
        kept: Headers = []
        for name, value in self.headers:
            low = name.lower()
            if low == b"content-length":
                length = int(value)
            elif low not in HOP_BY_HOP:
                kept.append((name, value))
        if self.sink is not None:
            self.sink.head(self.parser.get_status_code(), kept, length, self)
        if self.bodiless:
            # llhttp would wait for the body its Content-Length announces: the answer ends
            # here, and the next one gets a fresh parser.
            keep = self.parser.should_keep_alive()
            self.parser = httptools.HttpResponseParser(self)
            self._complete(keep)

    def on_body(self, body: bytes) -> None:
        if self.sink is not None:
            self.sink.body(body)

    def on_message_complete(self) -> None:
        self._complete(self.parser.should_keep_alive())

    def _complete(self, keep: bool) -> None:
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.end()
        if keep and not self.closed:
            self.pool.release(self)
        else:
            self.close()


class UpstreamPool:
    """Idle keep-alive connections to one upstream (``http://`` or ``https://host:port``;
    HTTPS verifies against the default trust store, ``SSL_CERT_FILE`` included)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        tls = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if tls else 80)
        self.host_header = parts.netloc.encode()
        self.ssl = ssl.create_default_context() if tls else None
        self.idle: list[UpstreamConn] = []

    def release(self, conn: UpstreamConn) -> None:
        self.idle.append(conn)

    def request_bytes(self, method: bytes, target: bytes, headers: Headers, body: bytes) -> bytes:
        out = [method, b" ", target, b" HTTP/1.1\r\nHost: ", self.host_header, b"\r\n"]
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP:
                out += (name, b": ", value, b"\r\n")
        out += (b"Content-Length: ", str(len(body)).encode(), b"\r\n\r\n", body)
        return b"".join(out)

    def send(self, data: bytes, sink: Sink) -> None:
        """Send one request; its answer goes to ``sink`` (connecting first if none is idle)."""
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                conn.send(data, sink)
                return
        asyncio.get_running_loop().create_task(self._connect_then(data, sink))

    async def _connect_then(self, data: bytes, sink: Sink) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(
                lambda: UpstreamConn(self),
                self.host,
                self.port,
                ssl=self.ssl,
                server_hostname=self.host if self.ssl else None,
            )
        except OSError as exc:
            sink.fail(exc)
            return
        conn.send(data, sink)


class Collected:
    """A sink with an awaitable face: the head, then the body pieces (for RSGI apps)."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.started: asyncio.Future[tuple[int, Headers, int | None]] = loop.create_future()
        self.pieces: deque[bytes] = deque()
        self.done = False
        self.error: BaseException | None = None
        self.wake: asyncio.Future[None] | None = None

    def head(self, status: int, headers: Headers, length: int | None, conn: Any) -> None:
        self.started.set_result((status, headers, length))

    def _wake(self) -> None:
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)

    def body(self, data: bytes) -> None:
        self.pieces.append(data)
        self._wake()

    def end(self) -> None:
        self.done = True
        self._wake()

    def flush(self) -> None:
        pass  # the awaiting side takes the pieces as they come

    def fail(self, exc: BaseException | None) -> None:
        self.error = exc or ConnectionError("upstream failed")
        if not self.started.done():
            self.started.set_exception(self.error)
        self.done = True
        self._wake()

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            while self.pieces:
                yield self.pieces.popleft()
            if self.done:
                if self.error is not None:
                    raise self.error
                return
            self.wake = asyncio.get_running_loop().create_future()
            await self.wake


# ------------------------------------------------------------------ client leg


class Pending:
    __slots__ = ("body", "headers", "keep_alive", "method", "target", "version")

    def __init__(
        self,
        method: bytes,
        target: bytes,
        headers: Headers,
        body: bytes,
        keep_alive: bool,
        version: str,
    ) -> None:
        self.method, self.target, self.headers = method, target, headers
        self.body, self.keep_alive, self.version = body, keep_alive, version


Forward = Callable[["RelayServer", Pending], Coroutine[Any, Any, None]]


class RelayServer(asyncio.Protocol):
    """One client connection: llhttp request parsing, requests answered in order."""

    def __init__(self, pool: UpstreamPool, forward: Forward | None = None) -> None:
        self.pool = pool
        self.forward = forward  # None: the callback path through ``pool``
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.queue: deque[Pending] = deque()
        self.busy = False
        self.closing = False
        self.current: Pending | None = None
        self.upstream: UpstreamConn | None = None
        self.chunked = False
        self.reading_paused = False
        self.refusal: bytes | None = None
        self.pending: list[bytes] = []  # answer bytes not yet written (see flush)
        self.answer_started = False
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: Headers = []
        self.body_parts: list[bytes] = []
        self.head_bytes = 0
        self.body_bytes = 0
        self.hosts = 0

    # asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self.closing or self.refusal is not None:
            return
        before = len(self.queue)
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, FramingError, OverflowError) as exc:
            # Nothing parsed from the bytes that held the error is forwarded (as aiohttp:
            # the whole read is refused); answers owed for earlier reads go first.
            while len(self.queue) > before:
                self.queue.pop()
            cause = exc.__context__ if isinstance(exc, httptools.HttpParserCallbackError) else exc
            self._refuse(TOO_LARGE if isinstance(cause, OverflowError) else BAD_REQUEST)
            return
        if not self.busy:
            self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self.upstream is not None:  # mid-answer: that upstream connection is unusable
            self.upstream.sink = None
            self.upstream.close()

    def pause_writing(self) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.resume_reading()

    def _refuse(self, answer: bytes) -> None:
        """Answer ``answer`` after the answers owed, then close (HttpParserUpgrade, i.e.
        CONNECT and Upgrade, lands here too: not in this prototype)."""
        self.refusal = answer
        assert self.transport is not None
        self.transport.pause_reading()
        if not self.busy and not self.queue:
            self.closing = True
            self.transport.write(answer)
            self.transport.close()

    # llhttp callbacks
    def on_message_begin(self) -> None:
        self._reset()

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > MAX_LINE:
            raise FramingError("request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp hands a folded line (obs-fold) over as part of the value: refuse it
        # (RFC 9112 5.2 allows a server to reject it with 400).
        if b"\r" in value or b"\n" in value or len(name) + len(value) > MAX_LINE:
            raise FramingError("header line")
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > MAX_HEAD:
            raise FramingError("head too large")
        if name.lower() == b"host":
            self.hosts += 1
            if self.hosts > 1:
                raise FramingError("repeated Host")
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        version = self.parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise FramingError("HTTP version")  # aiohttp answers an "HTTP/2.0" line
        if version == "1.0" and any(n.lower() == b"transfer-encoding" for n, _ in self.headers):
            raise FramingError("Transfer-Encoding in HTTP/1.0")  # RFC 9112 6.1: faulty framing
        if (
            version == "1.1"
            and not self.busy
            and not self.queue
            and self.transport is not None
            and any(
                n.lower() == b"expect" and v.lower() == b"100-continue" for n, v in self.headers
            )
        ):
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > MAX_BODY:
            raise OverflowError("body too large")
        self.body_parts.append(body)

    def on_message_complete(self) -> None:
        parser = self.parser
        body = self.body_parts[0] if len(self.body_parts) == 1 else b"".join(self.body_parts)
        self.queue.append(
            Pending(
                parser.get_method(),
                self.url,
                self.headers,
                body,
                parser.should_keep_alive(),
                parser.get_http_version(),
            )
        )
        if len(self.queue) > MAX_QUEUED and self.transport is not None:
            self.transport.pause_reading()
            self.reading_paused = True

    # relaying
    def _next(self) -> None:
        if not self.queue or self.closing:
            return
        req = self.queue.popleft()
        if self.reading_paused and self.refusal is None and len(self.queue) <= MAX_QUEUED // 2:
            assert self.transport is not None
            self.transport.resume_reading()
            self.reading_paused = False
        self.busy = True
        self.current = req
        slash = req.target.find(b"/", 1)
        target = req.target[slash:] if slash > 0 else b"/"  # drop the /<alias> prefix
        req.target = target
        if self.forward is not None:
            asyncio.get_running_loop().create_task(self.forward(self, req))
            return
        self.pool.send(self.pool.request_bytes(req.method, target, req.headers, req.body), self)

    def head(self, status: int, headers: Headers, length: int | None, conn: Any) -> None:
        assert self.transport is not None and self.current is not None
        self.upstream = conn if isinstance(conn, UpstreamConn) else None
        out = [STATUS_LINES.get(status) or b"HTTP/1.1 %d Unknown\r\n" % status]
        for name, value in headers:
            out += (name, b": ", value, b"\r\n")
        keep = self.current.keep_alive
        self.chunked = False
        if length is not None:
            out += (b"Content-Length: ", str(length).encode(), b"\r\n")
        elif not (status < 200 or status in (204, 304) or self.current.method == b"HEAD"):
            if self.current.version == "1.0":
                keep = False  # close-delimited for an HTTP/1.0 client
            else:
                self.chunked = True
                out.append(b"Transfer-Encoding: chunked\r\n")
        if not keep:
            out.append(b"Connection: close\r\n")
            self.current.keep_alive = False
        out.append(b"\r\n")
        self.pending.append(b"".join(out))

    def body(self, data: bytes) -> None:
        if self.chunked:
            self.pending.append(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            self.pending.append(data)

    def flush(self) -> None:
        """Write what the answer produced since the last flush, in one write."""
        if self.pending and self.transport is not None:
            pending, self.pending = self.pending, []
            self.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))
            self.answer_started = True

    def end(self) -> None:
        assert self.transport is not None and self.current is not None
        if self.chunked:
            self.pending.append(b"0\r\n\r\n")
        self.flush()
        self.answer_started = False
        self.upstream = None
        self.busy = False
        if not self.current.keep_alive:
            self.closing = True
            self.transport.close()
            return
        self.current = None
        if self.refusal is not None and not self.queue:
            self._refuse(self.refusal)
            return
        self._next()

    def fail(self, exc: BaseException | None) -> None:
        self.upstream = None
        self.closing = True
        self.pending = []
        if self.transport is not None:
            if self.busy and not self.answer_started:  # else: a cut answer, the client sees it
                self.transport.write(BAD_GATEWAY)
            self.transport.close()


async def serve(port: int, upstream: str, forward: Forward | None = None) -> None:
    """Listen on loopback ``port``; ``forward`` None: the raw pool's callback path."""
    pool = UpstreamPool(upstream)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: RelayServer(pool, forward), "127.0.0.1", port, reuse_address=True
    )
    async with server:
        await server.serve_forever()
