"""The sidecar's upstream leg: HTTP/1.1 over asyncio protocols, answers parsed by llhttp
(``httptools``), keep-alive connections pooled per origin.

It replaces aiohttp's client for forwarded calls (issue 18, items 2 and 6: the client leg
was most of the bare relay's cost). It does what the sidecar needs and nothing more:

- the request goes out exactly as the pipeline decided it: the method, the target (path
  and query) byte for byte as given, ``Host`` first, then the given headers in their
  order, then ``Content-Length`` (for a body, and ``0`` for a body-less method that
  defines one, as aiohttp did); no ``User-Agent``, ``Accept`` or ``Accept-Encoding`` of
  its own, nothing compressed or decompressed;
- the answer: ``Content-Length``, chunked (trailers read and ignored) or close-delimited
  bodies; nothing read after a ``HEAD`` head, nor for ``204``/``304``; interim ``1xx``
  answers (``100 Continue``, ``103 Early Hints``) skipped; ``101`` refused (nothing here
  speaks another protocol); a head over ``max_head_bytes`` or anything llhttp cannot frame
  refused as :class:`~.upstream_response.UpstreamProtocolError`;
- a pool of idle connections per origin (scheme, host, port; one TLS context per client:
  the default trust store, or ``upstream_ca_file``; SNI and the host name checked), at most
  ``limit`` connections in use at once (callers wait for a slot within the connect
  timeout), idle ones closed after ``keepalive`` seconds. A connection is reused only after
  an answer read to its end: one released partly read, or that failed, is closed;
- a pooled connection closed before any byte of its answer arrived is retried once on a
  new connection **only when the request may be repeated**: an idempotent method (``GET``,
  ``HEAD``, ``OPTIONS``, ``TRACE``, ``PUT``, ``DELETE``) or a request carrying an
  ``Idempotency-Key`` header. From the sidecar's side an upstream that closed an idle
  connection as the request arrived cannot be told from one that took the request (an LLM
  completion, a tool's side effect) and died before answering; repeating a ``POST`` would
  run it twice while the budget and the audit count it once. Such a call fails as
  ``upstream_unreachable`` instead (the agent's SDK may retry it as a new, governed call).
  An idle connection whose upstream closed it is noticed at once and dropped from the pool,
  so this window is the instant between the upstream's close and the request.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Iterable
from typing import Final

import httptools
from multidict import CIMultiDict

from haltgate.sidecar.upstream_response import (
    UpstreamProtocolError,
    UpstreamResponse,
    UpstreamTimeout,
)
from haltgate.sidecar.upstream_target import Origin, repeatable, request_head, split_url

__all__ = ["UpstreamClient", "UpstreamConnection"]

MAX_HEAD_BYTES: Final = 64 * 1024
"""Default bound of an answer's head (status line, headers, interim answers)."""
_ORIGIN_CACHE: Final = 1024
_ROUTE_URL_MAX: Final = 1024
"""URLs longer than this are split again on every request, not kept."""


class _StaleConnection(ConnectionResetError):
    """A reused connection closed before any byte of the answer arrived."""


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


class UpstreamConnection(asyncio.Protocol):
    """One connection to an upstream, carrying one answer at a time (parsed by llhttp)."""

    def __init__(self, client: UpstreamClient, key: tuple[bool, str, int]) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.in_use = False
        """Holding one of the client's slots (a request is on it)."""
        self.reused = False
        self.idle_since = 0.0
        self._client = client
        self._parser = httptools.HttpResponseParser(self)
        self._resp: UpstreamResponse | None = None
        self._max_head = client.max_head_bytes
        self._paused = False
        """Reading paused: the answer's reader is behind (see UpstreamResponse._feed)."""
        self._reset()

    def _reset(self) -> None:
        self._raw: list[tuple[bytes, bytes]] = []
        self._reason = b""
        self._head_done = False
        self._head_bytes = 0
        """Header bytes of the answer's head so far (interim heads included)."""
        self._raw_bytes = 0
        """Bytes received while the head was not complete."""
        self._interim = False
        self._until_eof = False
        self._complete = False
        self._keep = False
        self._head_only = False
        self._fault: UpstreamProtocolError | None = None

    # ----------------------------------------------------------------- the client's side

    def send(self, data: bytes, body: bytes, resp: UpstreamResponse, head_only: bool) -> None:
        assert self.transport is not None
        self._resp = resp
        self._head_only = head_only
        resp._attach(self)
        try:
            if len(body) <= 65536:
                self.transport.write(data + body if body else data)
            else:
                self.transport.write(data)
                self.transport.write(body)
        except (RuntimeError, OSError):  # the transport went away under the pool
            self._fail(
                _StaleConnection("the pooled upstream connection was closed")
                if self.reused
                else ConnectionResetError("the upstream connection was closed")
            )

    def abandon(self) -> None:
        """The answer was released before its end: the connection cannot carry another."""
        if self._resp is not None:
            self._resp = None
            self.close()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed and not self._paused:
            self._paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed and self._paused:
            self._paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._client._let_go(self)
            if self.transport is not None:
                self.transport.close()

    # ------------------------------------------------------------------------- asyncio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's: no subclass

    def data_received(self, data: bytes) -> None:
        resp = self._resp
        if resp is None:  # bytes while idle: nothing can frame them
            self.close()
            return
        resp.got_bytes = True
        if not self._head_done:
            self._raw_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(
                self._fault or UpstreamProtocolError("the upstream answered with an upgrade")
            )
            return
        except httptools.HttpParserError as e:
            self._fail(self._fault or UpstreamProtocolError(f"malformed upstream answer: {e}"))
            return
        if self._fault is not None:
            self._fail(self._fault)
        elif self._complete:
            self._answered()
        elif not self._head_done and self._raw_bytes > self._max_head:
            self._fail(self._head_too_large())

    def eof_received(self) -> bool | None:
        if self._resp is None:  # closed by the upstream while idle: out of the pool now
            self.close()
        elif self._head_done and self._until_eof and not self._complete:
            self._complete = True  # a close-delimited body ends here
            self._keep = False
            self._answered()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._client._let_go(self)
        resp, self._resp = self._resp, None
        if resp is None:
            return
        if self._head_done and self._until_eof and not self._complete and exc is None:
            resp._ended()  # close-delimited (a TLS transport reports no EOF of its own)
            return
        if not resp.got_bytes and self.reused:
            resp._failed(_StaleConnection("the pooled upstream connection was closed"))
        else:
            resp._failed(
                exc
                if isinstance(exc, OSError)
                else ConnectionResetError("the upstream closed the connection before the end")
            )

    # ----------------------------------------------------------------- llhttp callbacks

    def on_message_begin(self) -> None:
        if self._complete:  # bytes after the answer on the same read: never reused
            self._keep = False

    def on_status(self, data: bytes) -> None:
        self._reason += data

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._head_done:
            return  # trailers (and whatever follows an answer): ignored
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self._max_head:
            self._fault = self._head_too_large()
            raise self._fault
        self._raw.append((name, value))

    def on_headers_complete(self) -> None:
        if self._complete:
            return
        status = self._parser.get_status_code()
        if status < 200:
            if status == 101:
                self._fault = UpstreamProtocolError(
                    "the upstream switched protocols (101): not relayed"
                )
                raise self._fault
            self._interim = True  # 100 Continue, 103 Early Hints: the answer follows
            self._raw = []
            self._reason = b""
            return
        self._head_done = True
        items: list[tuple[str, str]] = []
        length = chunked = False
        for name, value in self._raw:
            low = name.lower()
            if low == b"content-length":
                length = True
            elif low == b"transfer-encoding":
                chunked = value.rstrip().lower().endswith(b"chunked")
            items.append(
                (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
            )
        headers: CIMultiDict[str] = CIMultiDict(items)  # in order, repeated names kept
        bodiless = self._head_only or status in (204, 304)
        self._until_eof = not bodiless and not length and not chunked
        resp = self._resp
        assert resp is not None
        resp._started(status, _text(self._reason.strip()), headers)
        if self._head_only:
            # llhttp would wait for the body the head announces: the answer ends here,
            # and the connection with it (what follows on it cannot be framed).
            self._complete = True
            self._keep = False

    def on_body(self, data: bytes) -> None:
        if not self._complete and data and self._resp is not None:
            self._resp._feed(data)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self._complete:
            return
        self._keep = self._parser.should_keep_alive()
        self._complete = True

    # ------------------------------------------------------------------------- helpers

    def _head_too_large(self) -> UpstreamProtocolError:
        return UpstreamProtocolError(f"the upstream answer's head exceeds {self._max_head} bytes")

    def _answered(self) -> None:
        resp, self._resp = self._resp, None
        keep = self._keep and not self.closed
        self._reset()
        if keep:
            # The end arrived with the reader behind: the next answer is read at once.
            self.resume_reading()
            self._client._idle(self)
        else:
            self.close()
        if resp is not None:
            resp._ended()

    def _fail(self, error: BaseException) -> None:
        resp, self._resp = self._resp, None
        self.close()
        if resp is not None:
            resp._failed(error)


class UpstreamClient:
    """Keep-alive connections to every upstream; see the module docstring."""

    def __init__(
        self,
        *,
        limit: int = 256,
        ssl_context: ssl.SSLContext | None = None,
        keepalive: float = 30.0,
        max_head_bytes: int = MAX_HEAD_BYTES,
    ) -> None:
        if limit < 1:
            raise ValueError("upstream_connections must be at least 1")
        self.limit = limit
        self.keepalive = keepalive
        self.max_head_bytes = max_head_bytes
        if ssl_context is None:
            ssl_context = ssl.create_default_context()
        ssl_context.set_alpn_protocols(["http/1.1"])
        self._ssl = ssl_context
        self._origins: dict[str, Origin] = {}
        self._routes: dict[str, tuple[Origin, str]] = {}
        self._idle_conns: dict[tuple[bool, str, int], list[UpstreamConnection]] = {}
        self._live: set[UpstreamConnection] = set()
        self._in_use = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def in_use(self) -> int:
        """Connections carrying a request now (at most ``limit``)."""
        return self._in_use

    @property
    def idle(self) -> int:
        return sum(len(v) for v in self._idle_conns.values())

    async def request(
        self,
        method: str,
        url: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        bounds: UpstreamTimeout,
    ) -> UpstreamResponse:
        """Send one request and return its answer once the head arrived.

        Raises ``TimeoutError`` (no connection or no head in time), ``OSError`` (cannot
        connect, TLS refused, the connection lost before the head,
        :class:`UpstreamProtocolError` for an answer that cannot be framed) and
        ``ValueError`` for a request that cannot be written (a bad URL or header)."""
        if self._closed:
            raise ConnectionError("the upstream client is closed")
        route = self._routes.get(url)
        if route is None:
            route = self._route(url)
        origin, target = route
        headers = list(headers)
        head = request_head(method, target, origin.host_header, headers, len(body))
        head_only = method == "HEAD"
        try:
            return await self._exchange(origin, head, body, head_only, bounds, fresh=False)
        except _StaleConnection:
            if not repeatable(method, headers):
                raise
            return await self._exchange(origin, head, body, head_only, bounds, fresh=True)

    def _route(self, url: str) -> tuple[Origin, str]:
        """The origin and request target of ``url``; kept by URL (a governed agent calls
        the same few endpoints again and again; bounded, long URLs not kept)."""
        prefix, target = split_url(url)
        origin = self._origins.get(prefix)
        if origin is None:
            scheme, _, netloc = prefix.partition("://")
            origin = Origin(scheme.lower(), netloc)
            if len(self._origins) >= _ORIGIN_CACHE:
                self._origins.clear()
            self._origins[prefix] = origin
        route = (origin, target)
        if len(url) <= _ROUTE_URL_MAX:
            if len(self._routes) >= _ORIGIN_CACHE:
                self._routes.clear()
            self._routes[url] = route
        return route

    async def close(self) -> None:
        """Close every connection (idle and in use); later requests fail."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self._live):
            conn.close()
        self._idle_conns.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(ConnectionError("the upstream client is closed"))

    # ------------------------------------------------------------------------- internals

    async def _exchange(
        self,
        origin: Origin,
        head: bytes,
        body: bytes,
        head_only: bool,
        bounds: UpstreamTimeout,
        *,
        fresh: bool,
    ) -> UpstreamResponse:
        loop = asyncio.get_running_loop()
        if self._in_use < self.limit and not self._waiters:
            self._in_use += 1  # a free slot (the common case): no coroutine to enter
        else:
            await self._acquire(loop, bounds.connect)
        conn = None if fresh else self._pop_idle(origin.key, loop.time())
        if conn is None:
            try:
                conn = await self._connect(loop, origin, bounds.connect)
            except BaseException:
                self._give_slot()
                raise
        resp = UpstreamResponse(loop, bounds.read)
        conn.send(head, body, resp, head_only)
        try:
            await resp._wait_head()
        except BaseException:
            resp.release()  # the connection is closed (and its slot given back)
            raise
        return resp

    async def _connect(
        self, loop: asyncio.AbstractEventLoop, origin: Origin, within: float | None
    ) -> UpstreamConnection:
        tls = self._ssl if origin.tls else None
        async with asyncio.timeout(within):
            _, conn = await loop.create_connection(
                lambda: UpstreamConnection(self, origin.key),
                origin.host,
                origin.port,
                ssl=tls,
                server_hostname=origin.host if tls is not None else None,
            )
        if self._closed:
            conn.close()
            raise ConnectionError("the upstream client is closed")
        conn.in_use = True
        self._live.add(conn)
        return conn

    async def _acquire(self, loop: asyncio.AbstractEventLoop, within: float | None) -> None:
        if self._in_use < self.limit and not self._waiters:
            self._in_use += 1
            return
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(within):
                await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._give_slot()  # handed a slot while leaving: pass it on
            else:
                waiter.cancel()
            raise

    def _give_slot(self) -> None:
        self._in_use -= 1
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_use += 1
                waiter.set_result(None)
                return

    def _pop_idle(self, key: tuple[bool, str, int], now: float) -> UpstreamConnection | None:
        conns = self._idle_conns.get(key)
        while conns:
            conn = conns.pop()
            if conn.closed or conn.transport is None or conn.transport.is_closing():
                conn.close()
                continue
            if now - conn.idle_since > self.keepalive:
                conn.close()
                continue
            conn.in_use = True
            conn.reused = True
            return conn
        return None

    def _idle(self, conn: UpstreamConnection) -> None:
        """An answer was read to its end on ``conn``: it waits for the next request."""
        if conn.in_use:
            conn.in_use = False
            self._give_slot()
        if self._closed:
            conn.close()
            return
        conns = self._idle_conns.setdefault(conn.key, [])
        if len(conns) >= self.limit:
            conn.close()
            return
        loop = asyncio.get_running_loop()
        conn.idle_since = loop.time()
        conns.append(conn)
        if self._sweeper is None:
            self._sweeper = loop.call_later(self.keepalive, self._sweep)

    def _let_go(self, conn: UpstreamConnection) -> None:
        """``conn`` is closed: out of the pool, its slot (if it held one) given back."""
        self._live.discard(conn)
        if conn.in_use:
            conn.in_use = False
            self._give_slot()
        conns = self._idle_conns.get(conn.key)
        if conns and conn in conns:
            conns.remove(conn)

    def _sweep(self) -> None:
        self._sweeper = None
        now = asyncio.get_running_loop().time()
        for key, conns in list(self._idle_conns.items()):
            for conn in [c for c in conns if now - c.idle_since > self.keepalive]:
                conn.close()
            if not conns:
                del self._idle_conns[key]
        if self._idle_conns and not self._closed:
            self._sweeper = asyncio.get_running_loop().call_later(self.keepalive, self._sweep)
