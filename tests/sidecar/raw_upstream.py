"""A stand-in upstream on raw asyncio streams that can misbehave: each test scripts what it
answers, byte for byte, per request (and may close, stall or send garbage). It records every
request's raw bytes and the connection it came on."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

Answer = Callable[["Exchange"], Awaitable[None]]
"""Writes (or withholds) the answer to one request; ``Exchange.writer`` is the connection."""


@dataclass
class Exchange:
    conn: int
    """Which connection (0, 1, ...) the request came on."""
    index: int
    """Which request overall (0, 1, ...)."""
    raw: bytes
    """The request as received: head and body."""
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


@dataclass
class RawUpstream:
    answer: Answer
    port: int = 0
    exchanges: list[Exchange] = field(default_factory=list)
    connections: int = 0
    open_now: int = 0
    most_open: int = 0
    server_names: list[str | None] = field(default_factory=list)

    @property
    def requests(self) -> list[bytes]:
        return [e.raw for e in self.exchanges]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = self.connections
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                ex = Exchange(conn, len(self.exchanges), head + body, reader, writer)
                self.exchanges.append(ex)
                await self.answer(ex)
                if writer.is_closing():
                    return
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self.open_now -= 1
            writer.close()


@contextlib.asynccontextmanager
async def raw_upstream(
    answer: Answer, tls: ssl.SSLContext | None = None
) -> AsyncIterator[RawUpstream]:
    up = RawUpstream(answer)
    if tls is not None:
        names = up.server_names

        def record(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
            names.append(name)

        tls.sni_callback = record  # type: ignore[assignment]
    server = await asyncio.start_server(up._handle, "127.0.0.1", 0, ssl=tls)
    up.port = server.sockets[0].getsockname()[1]
    try:
        yield up
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)


def send(data: bytes, *, close: bool = False) -> Answer:
    """An answer that writes ``data`` (then closes the connection if ``close``)."""

    async def answer(ex: Exchange) -> None:
        ex.writer.write(data)
        await ex.writer.drain()
        if close:
            ex.writer.close()

    return answer


OK_HI = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nhi"
