"""The sidecar's HTTP/1 server: raw asyncio protocols with llhttp (``httptools``) parsing,
instead of aiohttp's server (issue 18 item 6, the server leg), under ``--http-server llhttp``
(the default) on every proxy path: the explicit port, the transparent listener's plain HTTP
and inspected TLS connections, and inspected ``CONNECT`` tunnels.

One :class:`HttpConnection` per connection, handed over once its first bytes have decided
what it is (``connect.ExplicitFront`` feeds the bytes it read; the transparent listener only
peeked, so the parser reads them from the socket; a TLS stream is decrypted first). A
connection of the transparent listener carries its original destination
(:meth:`LlhttpServer.connection`), given to each of its requests. Requests are parsed as
they arrive, answered one at a time in order (pipelining), the connection kept alive when
both sides allow it. Each request goes to the handler as a
:class:`~haltgate.sidecar.wire_request.WireRequest` as soon as its head is complete (its
body follows through ``request.content``); its answer is an aiohttp response object written
through the request's :class:`~haltgate.sidecar.wire_request.AnswerWriter`.

Framing is llhttp's strict mode (no lenient flag: duplicate or malformed ``Content-Length``,
``Content-Length`` with ``Transfer-Encoding``, obs-fold, bad chunk sizes, bare LF, bare CR
or NUL in values are refused by the parser) plus the checks llhttp leaves to its embedder:
line and head size limits and a repeated ``Host``; version and ``Transfer-Encoding`` in
HTTP/1.0 are ``framing_check``'s, answered by the handler like on aiohttp. A refusal here is
a typed ``400`` (``malformed_request``) with ``Connection: close``; requests parsed from the
same read as the fault are not served (as aiohttp: that whole read is refused), answers owed
for earlier reads go first.

Bounds: a header timeout from when the connection is handed over and after each answer
(keep-alive idle; dribbled bytes do not reset it), at most ``MAX_QUEUED`` pipelined requests
parsed ahead and ``BODY_HIGH_WATER`` bytes of unread body before reading pauses; the body
timeout is the pipeline's. A request whose body was not read to its end when its answer is
complete ends the connection (the rest cannot be framed without reading it).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import cast

import httptools
import orjson
from aiohttp import web
from aiohttp.http import HttpVersion, HttpVersion10, HttpVersion11
from multidict import CIMultiDict, CIMultiDictProxy

from haltgate.sidecar.original_destination import OriginalDestination
from haltgate.sidecar.wire_request import AnswerWriter, RequestBody, WireRequest, writes_whole

__all__ = ["HttpConnection", "LlhttpServer"]

log = logging.getLogger("haltgate.sidecar.llhttp_server")

MAX_LINE = 8190
"""Bytes of the request target, and of one header line (aiohttp's limits)."""
MAX_HEAD = 64 * 1024
"""Bytes of a request head."""
MAX_HEADERS = 128
"""Header lines of a request head."""
MAX_QUEUED = 16
"""Pipelined requests parsed ahead of the one answered before reading pauses."""
BODY_HIGH_WATER = 256 * 1024
"""Unread request body bytes (all requests of a connection) before reading pauses."""
_HEAD_SLACK = 256 * 1024
"""Bytes fed while one head is incomplete, beyond MAX_HEAD, before the connection is
refused (bounds what llhttp and httptools buffer of a head dribbled in many reads)."""

Handler = Callable[[WireRequest], Awaitable[web.StreamResponse]]

_VERSIONS = {"1.1": HttpVersion11, "1.0": HttpVersion10}


class HeadRefused(Exception):
    """A request head the server refuses to frame (answered 400, connection closed)."""


def _error_answer(status: bytes, kind: str, code: str, message: str) -> bytes:
    body = orjson.dumps({"error": {"type": kind, "code": code, "message": message}})
    return (
        b"HTTP/1.1 %b\r\nContent-Type: application/json\r\nx-haltgate-code: %b\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n%b"
        % (status, code.encode(), len(body), body)
    )


def _refusal(message: str) -> bytes:
    return _error_answer(b"400 Bad Request", "invalid_request", "malformed_request", message)


_SERVER_ERROR = _error_answer(
    b"500 Internal Server Error", "internal", "internal_error", "the sidecar failed"
)


class LlhttpServer:
    """Protocol factory of HTTP connections (one handler for all); knows the live ones."""

    def __init__(self, handler: Handler, *, idle_timeout: float) -> None:
        self.handler = handler
        self.idle_timeout = idle_timeout
        self.connections: set[HttpConnection] = set()

    def __call__(self) -> HttpConnection:
        return HttpConnection(self)

    def connection(self, destination: OriginalDestination | None) -> HttpConnection:
        """A connection of the transparent listener: each of its requests carries
        ``destination`` (where the agent was connecting; ``SO_ORIGINAL_DST`` and SNI)."""
        return HttpConnection(self, destination)

    async def shutdown(self, grace: float) -> None:
        """Close idle connections now, the others after their answer (at most ``grace``
        seconds, then the handlers are cancelled)."""
        tasks = []
        for conn in list(self.connections):
            task = conn.close_when_idle()
            if task is not None:
                tasks.append(task)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        for conn in list(self.connections):
            conn.abort()


class HttpConnection(asyncio.Protocol):
    """One client connection: llhttp parsing, requests answered in order."""

    def __init__(
        self, server: LlhttpServer, destination: OriginalDestination | None = None
    ) -> None:
        self._server = server
        self.destination = destination
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.closing = False
        self._queue: deque[WireRequest] = deque()
        self._current: asyncio.Task[None] | None = None
        self._parsing: WireRequest | None = None
        self._stopped = False  # no more requests parsed (an upgrade, a refusal)
        self._refusal: bytes | None = None  # answered after the owed answers, then closed
        self._close_after = False
        self._buffered = 0
        self._reading_paused = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._idle_since: float | None = None
        self._in_head = False
        self._head_fed = 0
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._head_bytes = 0
        self._hosts = 0
        self._early: list[bytes] | None = None

    # asyncio ----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._server.connections.add(self)
        self._arm_timer()
        early, self._early = self._early, None
        for data in early or ():
            self.data_received(data)

    def data_received(self, data: bytes) -> None:
        if self.closing or self._stopped:
            return
        if self.transport is None:
            # After start_tls (inspected CONNECT) the TLS layer can deliver the first
            # decrypted bytes before the caller could call connection_made: kept till then.
            if self._early is None:
                self._early = []
            self._early.append(data)
            return
        before = len(self._queue)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # CONNECT or Upgrade: the request is answered (refused or relayed without its
            # upgrade), then the connection closes; nothing after the head is parsed.
            if self._parsing is not None:
                self._parsing.content.feed_eof()
                self._parsing = None
            self._stopped = True
            self._close_after = True
        except (httptools.HttpParserError, HeadRefused) as exc:
            self._refuse_read(exc, before)
            return
        if self._in_head:
            self._head_fed += len(data)
            if self._head_fed > MAX_HEAD + _HEAD_SLACK:
                self._refuse_read(HeadRefused("request head too large"), before)
                return
        if self._current is None:
            self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self._server.connections.discard(self)
        self._cancel_timer()
        gone = ConnectionResetError("the client closed the connection")
        if self._parsing is not None:
            self._parsing.content.fail(gone)
        for request in self._queue:
            request.content.fail(gone)
        self._queue.clear()
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(gone)
        self._drain_waiter = None

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def drain(self) -> None:
        if self.closing:
            raise ConnectionResetError("the client closed the connection")
        if not self._write_paused:
            return
        waiter = self._drain_waiter
        if waiter is None:
            self._drain_waiter = waiter = self._loop.create_future()
        await asyncio.shield(waiter)

    # llhttp callbacks -------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._in_head = True
        self._head_fed = 0
        self._url = b""
        self._headers = []
        self._head_bytes = 0
        self._hosts = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_LINE:
            raise HeadRefused(f"request target longer than {MAX_LINE} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:
            return  # a trailer of a chunked body: not read (as aiohttp)
        # llhttp hands an obs-folded line over inside the value: refused (RFC 9112 5.2).
        if b"\r" in value or b"\n" in value:
            raise HeadRefused("obsolete line folding in a header")
        if len(name) + len(value) > MAX_LINE:
            raise HeadRefused(f"header line longer than {MAX_LINE} bytes")
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > MAX_HEAD or len(self._headers) >= MAX_HEADERS:
            raise HeadRefused("request head too large")
        text = name.decode("utf-8", "surrogateescape")
        if len(name) == 4 and text.lower() == "host":
            self._hosts += 1
            if self._hosts > 1:
                raise HeadRefused("more than one Host header")
        self._headers.append((text, value.decode("utf-8", "surrogateescape")))

    def on_headers_complete(self) -> None:
        parser = self._parser
        self._in_head = False
        raw_version = parser.get_http_version()
        version = _VERSIONS.get(raw_version)
        if version is None:
            # framing_check refuses it (typed, audited); parsed as what it says it is.
            major, _, minor = raw_version.partition(".")
            version = HttpVersion(int(major or 0), int(minor or 0))
        headers = CIMultiDictProxy(CIMultiDict(self._headers))
        request = WireRequest(
            parser.get_method().decode("ascii"),
            self._url.decode("utf-8", "surrogateescape"),
            version,
            headers,
            chunked="Transfer-Encoding" in headers,
            keep_alive=parser.should_keep_alive(),
            body=RequestBody(self._on_buffered),
            writer=AnswerWriter(self),
            transport=self.transport,
            destination=self.destination,
        )
        self._parsing = request
        self._queue.append(request)
        if len(self._queue) > MAX_QUEUED:
            self._update_reading()

    def on_body(self, body: bytes) -> None:
        if self._parsing is not None:
            self._parsing.content.feed(body)

    def on_message_complete(self) -> None:
        if self._parsing is not None:
            self._parsing.content.feed_eof()
            self._parsing = None

    # serving ----------------------------------------------------------------------------
    def _next(self) -> None:
        """Start answering the next parsed request, or wait for one (idle timer)."""
        if self.closing or self._current is not None:
            return
        if self._queue:
            self._idle_since = None  # busy (see _busy)
            request = self._queue.popleft()
            if self._reading_paused:
                # A shorter queue can only resume reading: nothing to pause here (the
                # queue's and the buffered body's bounds pause where they grow).
                self._update_reading()
            self._current = self._loop.create_task(self._serve(request))
            return
        if self._refusal is not None or self._close_after:
            self._close(self._refusal)
            return
        self._arm_timer()

    async def _serve(self, request: WireRequest) -> None:
        keep = False
        writer = request.writer
        try:
            response = await self._server.handler(request)
            if writes_whole(response):
                keep = writer.write_whole(response, request)  # narrowed: no cast() call
            else:
                await response.prepare(cast(web.BaseRequest, request))
                await response.write_eof()
                keep = bool(response.keep_alive)
            keep = keep and request.keep_alive
        except ConnectionError:
            pass  # the client is gone
        except asyncio.CancelledError:
            self.abort()
            raise
        except Exception:
            log.exception("answering %s %s", request.method, request.raw_path[:128])
            if not self.closing and writer.output_size == 0 and not writer.done:
                self._close(_SERVER_ERROR)
        finally:
            self._current = None
            request.content.discard()
        if not keep or not request.content.at_eof or self.closing:
            self._close(None)
            return
        self._next()

    def _refuse_read(self, exc: Exception, before: int) -> None:
        """A framing fault in the bytes just read: nothing parsed from them is served; the
        request whose body they continued fails; a 400 follows the owed answers."""
        self._stopped = True
        dropped = [self._queue.pop() for _ in range(len(self._queue) - before)]
        cause = exc.__context__ if isinstance(exc, httptools.HttpParserCallbackError) else exc
        message = str(cause) if isinstance(cause, HeadRefused) else "malformed request framing"
        parsing = self._parsing
        self._parsing = None
        if parsing is not None and not any(parsing is d for d in dropped):
            # Its head came in an earlier read: the body it is reading ends in a fault.
            parsing.content.fail(ConnectionResetError(message))
            self._close_after = True
        else:
            self._refusal = _refusal(message)
        if self.transport is not None:
            self.transport.pause_reading()
            self._reading_paused = True
        self._next()

    def _on_buffered(self, delta: int) -> None:
        self._buffered += delta
        if (self._buffered > BODY_HIGH_WATER) != self._reading_paused:
            self._update_reading()

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or self.closing or self._stopped:
            return
        pause = len(self._queue) > MAX_QUEUED or self._buffered > BODY_HIGH_WATER
        if pause and not self._reading_paused:
            transport.pause_reading()
            self._reading_paused = True
        elif not pause and self._reading_paused:
            transport.resume_reading()
            self._reading_paused = False

    # timers and closing -----------------------------------------------------------------
    # The header / idle timer is lazy: one handle per connection, not one per request. A
    # request starting only marks the connection busy; the handle, when it fires, closes the
    # connection if it has been idle for the whole timeout, and else waits again.
    def _arm_timer(self) -> None:
        """The connection is idle (waiting for a complete request head) from now."""
        if self.closing:
            return
        self._idle_since = now = self._loop.time()
        if self._timer is None:
            self._timer = self._loop.call_at(now + self._server.idle_timeout, self._idle)

    def _busy(self) -> None:
        self._idle_since = None

    def _cancel_timer(self) -> None:
        self._idle_since = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _idle(self) -> None:
        self._timer = None
        since = self._idle_since
        if since is None or self.closing:
            return  # busy: armed again when the connection is idle again
        due = since + self._server.idle_timeout
        if self._loop.time() < due:
            self._timer = self._loop.call_at(due, self._idle)
        elif self._current is None and not self._queue:
            self._close(None)  # no complete head in time (silent, slow or idle client)

    def _close(self, last: bytes | None) -> None:
        if self.closing:
            return
        self.closing = True
        self._cancel_timer()
        transport = self.transport
        if transport is not None:
            if last:
                transport.write(last)
            transport.close()  # what is buffered is sent first

    def close_when_idle(self) -> asyncio.Task[None] | None:
        """Shutdown: close now if nothing is being answered; else after the answer (the
        task to wait for)."""
        self._close_after = True
        self._stopped = True
        self._queue.clear()
        if self._current is None:
            self._close(None)
        return self._current

    def abort(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()
