"""The first bytes of a redirected connection, peeked without consuming them: enough to tell
a TLS ClientHello from an HTTP/1 request line (anything else is refused)."""

from __future__ import annotations

import asyncio
import re
import socket

from haltgate.sidecar import clienthello
from haltgate.sidecar.transparent_gate import Refused

_HTTP_METHODS = (
    b"GET",
    b"POST",
    b"PUT",
    b"DELETE",
    b"PATCH",
    b"HEAD",
    b"OPTIONS",
    b"CONNECT",
    b"TRACE",
)
_HTTP_START = re.compile(rb"^(" + b"|".join(_HTTP_METHODS) + rb") [^\s]")


def http_verdict(data: bytes) -> bool | None:
    """True: an HTTP/1 request line starts here; False: it cannot; None: need more bytes."""
    if _HTTP_START.match(data):
        return True
    head = data[:8]
    if any(m.startswith(head) or head.startswith(m + b" ") for m in _HTTP_METHODS):
        return None if len(data) < 9 else False
    return False


async def _wait_readable(sock: socket.socket) -> None:
    """Wait until ``sock`` has bytes (or EOF) to read; the caller bounds the wait."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def peek_first_bytes(sock: socket.socket, wait_seconds: float, max_bytes: int) -> bytes:
    """First bytes of the connection, left in the socket; enough to classify it (at most
    ``max_bytes``, within ``wait_seconds`` seconds; :class:`Refused` otherwise)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    delay = 0.001
    await asyncio.wait_for(_wait_readable(sock), wait_seconds)
    while True:
        try:
            data = sock.recv(max_bytes, socket.MSG_PEEK)
        except BlockingIOError:
            data = None
        if data == b"":
            raise Refused("closed_early", "client closed before sending anything")
        if data:
            if clienthello.looks_like_tls(data):
                hello = clienthello.parse_client_hello(data)
                if hello.status is not clienthello.Status.NEED_MORE:
                    return data
                if len(data) >= max_bytes:
                    raise Refused("tls_malformed", "ClientHello larger than the peek bound")
            elif http_verdict(data) is not None:
                return data
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise Refused("peek_timeout", "client too slow to send its first bytes")
        # Level-triggered readiness would spin while unread bytes wait: poll, backing off.
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.05)
