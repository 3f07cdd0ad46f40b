"""An upstream answer as the relays read it: status, reason, headers, then the body as it
arrives (see :mod:`.upstream_pool`, which parses it with llhttp and fills it in).

The interface is the small one the relays use: ``status``, ``reason``, ``headers`` (a
case-insensitive multidict, values as the upstream sent them), ``content_type``,
``content_length``, the body by ``readany()`` / ``read()`` / ``async for``, then
``release()`` (the connection goes back to the pool only when the answer was read to its
end) or ``close()``. Nothing is decoded: a compressed answer is relayed compressed.

Errors, all of them ``OSError`` or ``TimeoutError`` (what the pipeline maps to
``upstream_unreachable``, ``upstream_truncated`` and ``upstream_timeout``):
:class:`UpstreamProtocolError` for an answer that cannot be framed, ``ConnectionError``
for a connection lost before the answer ended, ``TimeoutError`` for a silence longer than
the call's read timeout.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from multidict import CIMultiDict, CIMultiDictProxy

if TYPE_CHECKING:
    from haltgate.sidecar.upstream_pool import UpstreamConnection

__all__ = [
    "UpstreamProtocolError",
    "UpstreamResponse",
    "UpstreamTimeout",
]

_HIGH_WATER: Final = 256 * 1024
"""Unread body bytes past which the connection stops reading (the relay is slower)."""
_LOW_WATER: Final = 64 * 1024


class UpstreamProtocolError(ConnectionError):
    """The upstream's answer cannot be framed (malformed, a head too large, a protocol
    switch): an upstream fault, and the connection is closed."""


@dataclass(frozen=True, slots=True)
class UpstreamTimeout:
    """The bounds of one upstream call. ``connect``: opening a connection (waiting for a
    pool slot, TCP, TLS); ``read``: the wait for the answer's head and every silence inside
    its body (a stream that keeps sending is never cut). ``None``: unbounded."""

    connect: float | None = 10.0
    read: float | None = None


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class UpstreamResponse:
    """One upstream answer (filled in by its connection as bytes arrive)."""

    __slots__ = (
        "_buffered",
        "_chunks",
        "_conn",
        "_done",
        "_error",
        "_head",
        "_loop",
        "_paused",
        "_read_timeout",
        "_waiter",
        "got_bytes",
        "headers",
        "reason",
        "status",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, read_timeout: float | None) -> None:
        self._loop = loop
        self._read_timeout = read_timeout
        self._head: asyncio.Future[None] = loop.create_future()
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._conn: UpstreamConnection | None = None
        self.got_bytes = False
        """Whether any byte of the answer arrived (a stale connection sent none)."""
        self.status = 0
        self.reason = ""
        self.headers: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())

    # ------------------------------------------------------------------ the relays' side

    @property
    def content_type(self) -> str:
        """The media type, lower case, without parameters (``application/octet-stream``
        when the answer names none)."""
        raw = self.headers.get("Content-Type")
        if not raw:
            return "application/octet-stream"
        return raw.split(";", 1)[0].strip().lower()

    @property
    def content_length(self) -> int | None:
        raw = self.headers.get("Content-Length")
        return None if raw is None else int(raw)  # llhttp accepted it: digits only

    async def readany(self) -> bytes:
        """What arrived since the last read (waiting for some); ``b""`` at the end."""
        while not self._chunks:
            if self._done:
                if self._error is not None:
                    raise self._error
                return b""
            await self._wait()
        chunks = self._chunks
        if len(chunks) == 1:
            data = chunks.popleft()
        else:
            data = b"".join(chunks)
            chunks.clear()
        self._buffered = 0
        if self._paused:
            self._paused = False
            if self._conn is not None:
                self._conn.resume_reading()
        return data

    @property
    def at_end(self) -> bool:
        """The whole answer arrived, none of it is left to read, and it ended cleanly:
        the next read returns ``b""`` at once."""
        return self._done and self._error is None and not self._chunks

    async def read(self) -> bytes:
        """The whole body."""
        parts = []
        while chunk := await self.readany():
            parts.append(chunk)
        return b"".join(parts)

    def __aiter__(self) -> UpstreamResponse:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self.readany()
        if not chunk:
            raise StopAsyncIteration
        return chunk

    def release(self) -> None:
        """Done with the answer: its connection is reused if the answer was read to its
        end, closed otherwise (nothing of a partly read answer is left on a pooled one)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.abandon()
        self._finish(ConnectionResetError("the upstream answer was released"))

    def close(self) -> None:
        """Drop the answer unread (its connection is closed)."""
        self.release()

    # ------------------------------------------------------------ the connection's side

    def _attach(self, conn: UpstreamConnection) -> None:
        self._conn = conn

    def _started(self, status: int, reason: str, headers: CIMultiDict[str]) -> None:
        self.status = status
        self.reason = reason
        self.headers = CIMultiDictProxy(headers)
        if not self._head.done():
            self._head.set_result(None)

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > _HIGH_WATER and not self._paused and self._conn is not None:
            self._paused = True
            self._conn.pause_reading()
        self._wake()

    def _ended(self) -> None:
        """The answer arrived in full (the connection has already let go of it)."""
        self._conn = None
        self._finish(None)

    def _failed(self, error: BaseException) -> None:
        self._conn = None
        if not self._head.done():
            self._head.set_exception(error)
            self._head.exception()  # retrieved: a head nobody awaits any more is no warning
        self._finish(error)

    def _finish(self, error: BaseException | None) -> None:
        if self._done:
            return
        self._done = True
        self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        waiter = self._waiter = self._loop.create_future()
        timer = (
            None
            if self._read_timeout is None
            else self._loop.call_later(self._read_timeout, _expire, waiter)
        )
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    async def _wait_head(self) -> None:
        """Until the head arrived (``TimeoutError`` past the read timeout)."""
        head = self._head
        if head.done():
            head.result()
            return
        timer = (
            None
            if self._read_timeout is None
            else self._loop.call_later(self._read_timeout, _expire, head)
        )
        try:
            await head
        finally:
            if timer is not None:
                timer.cancel()
