"""``CONNECT`` on the explicit port (agents using the sidecar as ``HTTPS_PROXY``).

aiohttp parses requests well but cannot hand a connection over to TLS termination after
answering ``CONNECT``. So the explicit port's connections start with :class:`ExplicitFront`,
which looks at the first bytes: anything but ``CONNECT`` is handed to aiohttp untouched
(the same protocol object aiohttp would have used; one extra call per connection, nothing
per request). A ``CONNECT host:port`` is decided here:

- the host is an upstream the policy **inspects** and the haltgate CA is available: answer
  ``200``, terminate TLS with a leaf certificate minted for the host, and hand the
  decrypted stream to the normal request pipeline (every request governed as usual; a
  ``Host`` that differs from the ``CONNECT`` authority is refused);
- an upstream the policy **passes through**: tunnel the bytes to the host and port the
  policy names, audited as a ``connection`` (opened / closed with byte counts);
- anything else (unknown host, inspection without a CA, a halted run, a malformed
  request): refused with a typed JSON error and the connection closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from haltgate.governance.errors import BadRequestError, DeniedError, HaltgateError
from haltgate.governance.policy_base import FailureType, TLSMode
from haltgate.sidecar import responses as r
from haltgate.sidecar.listeners import HeadTimer, IdleWatch, LiveCount
from haltgate.sidecar.upstreams import ResolvedUpstream

__all__ = ["ConnectRequest", "ExplicitFront", "Pipe", "parse_connect_head", "tunnel"]

log = logging.getLogger("haltgate.sidecar.connect")

MAX_HEAD_BYTES = 8 * 1024
_CONNECT = b"CONNECT "


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    host: str
    port: int
    version: str


def parse_connect_head(head: bytes) -> ConnectRequest:
    """Parse ``CONNECT host:port HTTP/1.x`` (headers are read but not needed)."""
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError as e:
        raise BadRequestError("CONNECT request is not ASCII", code="malformed_request") from e
    line = text.split("\r\n", 1)[0]
    parts = line.split(" ")
    if len(parts) != 3 or parts[0] != "CONNECT" or parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadRequestError("malformed CONNECT request line", code="malformed_request")
    authority = parts[1]
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = authority.rpartition(":")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise BadRequestError("CONNECT target must be host:port", code="malformed_request")
    if any(c in host for c in "/@?#% \t"):
        raise BadRequestError("invalid CONNECT host", code="malformed_request")
    return ConnectRequest(host.lower().rstrip("."), int(port_text), parts[2])


ConnectHandler = Callable[[asyncio.Transport, ConnectRequest, str], Coroutine[Any, Any, None]]


class ExplicitFront(asyncio.Protocol):
    """First protocol of every explicit-port connection: CONNECT here, the rest to aiohttp."""

    __slots__ = (
        "_buf",
        "_head_timeout",
        "_http_factory",
        "_live",
        "_on_connect",
        "_on_error",
        "_timer",
        "_transport",
    )

    def __init__(
        self,
        http_factory: Callable[[], asyncio.Protocol],
        on_connect: ConnectHandler,
        on_error: Callable[[asyncio.Transport, HaltgateError], None],
        *,
        head_timeout: float | None = None,
        live: LiveCount | None = None,
    ) -> None:
        self._http_factory = http_factory
        self._on_connect = on_connect
        self._on_error = on_error
        self._buf = b""
        self._transport: asyncio.Transport | None = None
        self._head_timeout = head_timeout
        self._timer: HeadTimer | None = None
        self._live = live
        """Counts this connection until it is handed on (the listener's connection cap)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport: no isinstance check.
        self._transport = transport  # type: ignore[assignment]
        if self._live is not None:
            self._live.n += 1
        if self._head_timeout is not None:
            # Until the first bytes decide what this is, only this timer bounds the wait.
            self._timer = HeadTimer(transport, self._head_timeout)

    def _decided(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._live is not None:
            self._live.n -= 1
            self._live = None

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        assert transport is not None
        buf = self._buf + data if self._buf else data
        if len(buf) < len(_CONNECT) and _CONNECT.startswith(buf):
            self._buf = buf  # could still become CONNECT
            return
        if not buf.startswith(_CONNECT):
            # Plain HTTP: aiohttp takes the connection from here on.
            self._decided()
            proto = self._http_factory()
            transport.set_protocol(proto)
            proto.connection_made(transport)
            proto.data_received(buf)
            return
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD_BYTES:
                self._on_error(
                    transport,
                    BadRequestError("CONNECT request head too large", code="malformed_request"),
                )
                return
            self._buf = buf
            return
        transport.pause_reading()
        self._buf = b""
        self._decided()  # the CONNECT handler's task counts (and times) it from here
        try:
            request = parse_connect_head(buf[: end + 4])
        except BadRequestError as e:
            self._on_error(transport, e)
            return
        rest = buf[end + 4 :]
        if rest:
            # Clients wait for the 200 before sending; bytes already here cannot be
            # attributed safely (they would precede the TLS handshake we terminate).
            self._on_error(
                transport,
                BadRequestError("data sent before the CONNECT answer", code="malformed_request"),
            )
            return
        asyncio.get_running_loop().create_task(
            self._on_connect(transport, request, request.version)
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._decided()


def write_refusal(transport: asyncio.Transport, err: HaltgateError, decision_id: str) -> None:
    """Answer a refused CONNECT with the typed JSON error, then close."""
    body = r.error_body(err, decision_id)
    status = r.http_status(err)
    head = (
        f"HTTP/1.1 {status} Refused\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{r.DECISION_HEADER}: {decision_id}\r\n"
        f"{r.CODE_HEADER}: {err.code}\r\nConnection: close\r\n\r\n"
    ).encode()
    transport.write(head + body)
    transport.close()


class Pipe(asyncio.Protocol):
    """One side of a tunnel: bytes received here are written to the other side.

    A half-close (EOF) is passed on; the tunnel ends when both sides sent EOF or either
    connection is lost, which resolves ``done``.
    """

    def __init__(self, done: asyncio.Future[None], idle: IdleWatch | None = None) -> None:
        self.idle = idle
        self.other: Pipe | None = None
        self.transport: asyncio.Transport | None = None
        self.bytes = 0
        self.eof = False
        self.done = done
        self._pending = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def _peer(self) -> asyncio.Transport | None:
        return self.other.transport if self.other is not None else None

    def data_received(self, data: bytes) -> None:
        self.bytes += len(data)
        if self.idle is not None:
            self.idle.touch()
        peer = self._peer()
        if peer is None:
            self._pending += data
            return
        peer.write(data)

    def join(self, other: Pipe) -> None:
        """Connect the two sides (and flush what arrived before the other side existed)."""
        self.other, other.other = other, self
        for side in (self, other):
            peer = side._peer()
            if side._pending and peer is not None:
                peer.write(side._pending)
                side._pending = b""

    def pause_writing(self) -> None:  # our transport is full: stop reading the other side
        peer = self._peer()
        if peer is not None:
            peer.pause_reading()

    def resume_writing(self) -> None:
        peer = self._peer()
        if peer is not None:
            peer.resume_reading()

    def eof_received(self) -> bool | None:
        self.eof = True
        peer = self._peer()
        if peer is not None and peer.can_write_eof():
            peer.write_eof()
        if self.other is not None and self.other.eof:
            self._finish()
            return None
        return True  # keep the other direction open (half-close)

    def connection_lost(self, exc: Exception | None) -> None:
        peer = self._peer()
        if peer is not None:
            peer.close()
        self._finish()

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def tunnel(
    client: asyncio.Transport,
    upstream: ResolvedUpstream,
    version: str,
    connect_timeout: float = 10.0,
    idle_timeout: float = 300.0,
) -> tuple[int, int]:
    """Answer 200 and relay bytes both ways until the tunnel ends: (bytes up, bytes down).

    The tunnel is closed once no byte moved either way for ``idle_timeout`` seconds."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def idle() -> None:
        if not done.done():
            done.set_result(None)

    watch = IdleWatch(idle_timeout, idle)
    agent_side = Pipe(done, watch)
    client.set_protocol(agent_side)
    agent_side.connection_made(client)
    try:
        async with asyncio.timeout(connect_timeout):
            up_transport, upstream_side = await loop.create_connection(
                lambda: Pipe(done, watch), upstream.host, upstream.port
            )
    except BaseException:
        watch.cancel()
        raise
    agent_side.join(upstream_side)
    client.write(f"{version} 200 Connection Established\r\n\r\n".encode())
    client.resume_reading()
    try:
        await done
    finally:
        watch.cancel()
        client.close()
        up_transport.close()
    return agent_side.bytes, upstream_side.bytes


def refusal_for(
    upstream: ResolvedUpstream | None, minter_ready: bool, host: str, port: int
) -> HaltgateError | None:
    """Why a CONNECT to ``host:port`` is refused, or ``None`` when it may proceed."""
    if upstream is None:
        return DeniedError(
            f"CONNECT to {host}:{port} is not an upstream of the policy",
            code="connect_denied",
            failure_type=FailureType.SAFETY,
        )
    if upstream.tls is TLSMode.INSPECT and not minter_ready:
        return DeniedError(
            f"{host} must be inspected but no inspection CA is configured",
            code="tls_inspection_unavailable",
            failure_type=FailureType.SAFETY,
        )
    return None
