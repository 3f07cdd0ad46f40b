"""Transparent mode: the 17001 listener that every redirected agent connection arrives at.

iptables (``haltgate iptables apply``) REDIRECTs each TCP connection of the agent to this
listener. For each one it:

1. reads the original destination (``SO_ORIGINAL_DST``, IPv4 and IPv6);
2. peeks at the first bytes (``MSG_PEEK``: nothing consumed, bounded in time and size);
3. decides:
   - plain HTTP: hands the socket to the sidecar's HTTP server, which governs each request
     (``connection_info(request)`` tells it where the agent was going): the llhttp server's
     connection is made with the original destination and gives it to each request; for
     aiohttp's (``--http-server aiohttp``) it is registered by the connection's addresses;
   - TLS with a server name (SNI) the policy **inspects**: terminates TLS with a leaf minted
     by the haltgate CA for that name and hands the decrypted stream to the same handler;
   - TLS with a server name the policy **passes through**: asks the connection gate (audit,
     halts), then tunnels the bytes to the upstream the policy names, counting them;
   - anything else (unknown server name, no SNI, non-HTTP protocols, silence): refused, the
     connection is closed.

The destination rule (docs/enforcement.md): upstreams are dialled by the host and port the
policy names, never by the address the agent connected to. On top of that, a connection whose
original address is not one the named host resolves to, or whose port is not the upstream's,
is refused outright (SNI/Host spoofing is treated as an attack, not routed around), and for
handed-over connections ``destination_guard`` refuses requests whose Host header disagrees
with the SNI or the original address.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from haltgate.governance.policy_base import TLSMode
from haltgate.sidecar import clienthello
from haltgate.sidecar.destination_check import (
    DestinationMismatch,
    DestinationVerifier,
    is_local_address,
    parse_ip,
)
from haltgate.sidecar.first_bytes import http_verdict, peek_first_bytes
from haltgate.sidecar.listeners import IdleWatch
from haltgate.sidecar.llhttp_server import LlhttpServer
from haltgate.sidecar.original_destination import (
    OriginalDestination,
    attach,
    connection_key,
    forget,
    original_destination,
    register,
)
from haltgate.sidecar.tlsmint import LeafMinter, TLSMintError
from haltgate.sidecar.transparent_gate import (
    NOTHING_TRIED,
    ConnectionGate,
    LoggingConnectionGate,
    Refused,
    TunnelEvent,
)
from haltgate.sidecar.transparent_upstreams import TransparentUpstream, UpstreamIndex

log = logging.getLogger("haltgate.sidecar.transparent")

TRANSPARENT_PORT = 17001


@dataclass(frozen=True, slots=True)
class TransparentSettings:
    """Bounds of the listener. Times in seconds, sizes in bytes."""

    peek_timeout: float = 10.0
    """How long a client may take to send its first bytes (server-first protocols and silent
    clients are refused after this)."""
    max_peek_bytes: int = 64 * 1024 + 5
    """Most bytes peeked to find a complete ClientHello."""
    tls_handshake_timeout: float = 10.0
    connect_timeout: float = 10.0
    """Dialling a passthrough upstream."""
    tunnel_idle_timeout: float = 300.0
    """A passthrough tunnel with no bytes in either direction for this long is closed (one
    direction silent while the other moves is not idle)."""
    max_pending: int = 1024
    """Connections still being classified; more are refused at once (bounded memory)."""
    max_connections: int = 2048
    """Live connections (classified, handed over or tunnelled); more are refused at once."""
    dns_cache_seconds: float = 30.0
    """How long the addresses of an upstream host are reused for the destination check."""
    check_destination_address: bool = True
    """Refuse connections whose original address is not one the named host resolves to."""


# --------------------------------------------------------------------------- the listener


@dataclass
class TransparentStats:
    """Counters for metrics and tests: connections by outcome."""

    outcomes: Counter[str] = field(default_factory=Counter)

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] += 1


class TransparentListener:
    """Accepts redirected connections and classifies, hands over, tunnels or refuses them."""

    def __init__(
        self,
        *,
        protocol_factory: Callable[[], asyncio.BaseProtocol] | LlhttpServer,
        upstreams: Callable[[], UpstreamIndex],
        minter: LeafMinter | None,
        gate: ConnectionGate | None = None,
        settings: TransparentSettings | None = None,
        verifier: DestinationVerifier | None = None,
    ) -> None:
        self._factory = protocol_factory
        self._upstreams = upstreams
        self._minter = minter
        self._gate: ConnectionGate = gate or LoggingConnectionGate()
        self.settings = settings or TransparentSettings()
        self.verifier = verifier or DestinationVerifier(self.settings.dns_cache_seconds)
        self.stats = TransparentStats()
        self._sockets: list[socket.socket] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending = 0
        self._tunnels = 0
        self.live_handed_over: Callable[[], int] = lambda: 0
        """Connections the HTTP server holds (set by the sidecar: its live count)."""
        self.addresses: list[tuple[str, int]] = []

    async def start(
        self, hosts: Iterable[str] = ("127.0.0.1", "::1"), port: int = TRANSPARENT_PORT
    ) -> None:
        """Listen on each host (loopback: REDIRECT delivers there). IPv6 may be absent."""
        for host in hosts:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            try:
                sock = socket.socket(family, socket.SOCK_STREAM)
            except OSError as e:
                log.warning("transparent listener: no %s socket (%s); skipped", host, e)
                continue
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind((host, port))
            except OSError as e:
                sock.close()
                if family == socket.AF_INET6 and e.errno in (99, 97):  # no IPv6 address
                    log.warning("transparent listener: %s unavailable (%s); skipped", host, e)
                    continue
                raise
            sock.listen(1024)
            sock.setblocking(False)
            self._sockets.append(sock)
            self.addresses.append(sock.getsockname()[:2])
            self._spawn(self._accept_loop(sock))
        if not self._sockets:
            raise OSError("transparent listener could not bind any address")

    async def close(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept_loop(self, lsock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _peer = await loop.sock_accept(lsock)
            except asyncio.CancelledError:
                raise
            except OSError as e:  # EMFILE and friends: back off, keep serving
                if lsock.fileno() < 0:
                    return
                log.warning("transparent accept failed: %s", e)
                await asyncio.sleep(0.1)
                continue
            if self._pending >= self.settings.max_pending or (
                self._pending + self._tunnels + self.live_handed_over()
                >= self.settings.max_connections
            ):
                self.stats.count("refused_overload")
                conn.close()
                continue
            conn.setblocking(False)
            self._spawn(self._handle(conn))

    async def _handle(self, sock: socket.socket) -> None:
        handed_over = False
        self._pending += 1
        try:
            handed_over = await self._classify_and_route(sock)
        except Refused as e:
            self.stats.count(f"refused_{e.code}")
            # The detail can quote names the agent chose (a server name): not logged.
            log.info("transparent: refused %s", e.code)
            if e.code not in NOTHING_TRIED:
                await self._gate.refused(e.code, str(e), e.host, e.port)
        except (OSError, TimeoutError, TLSMintError) as e:
            self.stats.count("refused_error")
            log.info("transparent: connection failed: %r", e)
        finally:
            self._pending -= 1
            if not handed_over:
                with contextlib.suppress(OSError):
                    sock.close()

    async def _classify_and_route(self, sock: socket.socket) -> bool:
        try:
            ip, port = original_destination(sock)
        except OSError as e:
            raise Refused("no_original_destination", str(e)) from e
        try:
            return await self._route(sock, ip, port)
        except Refused as e:
            if not e.host:
                e.host, e.port = ip, port
            raise

    async def _route(self, sock: socket.socket, ip: str, port: int) -> bool:
        local = sock.getsockname()
        original = parse_ip(ip)
        if original is None or original.is_loopback or (ip, port) == tuple(local[:2]):
            raise Refused("not_redirected", f"original destination {ip}:{port} is local")
        if is_local_address(original):
            # The pod's own address: the sidecar's admin, metrics, OPA or the agent's own
            # servers. Forwarding there as the sidecar UID would launder the agent's access.
            raise Refused("local_destination", f"{ip}:{port} is an address of this pod")
        try:
            data = await peek_first_bytes(
                sock, self.settings.peek_timeout, self.settings.max_peek_bytes
            )
        except TimeoutError as e:
            raise Refused("peek_timeout", "client sent nothing") from e
        if clienthello.looks_like_tls(data):
            return await self._route_tls(sock, ip, port, clienthello.parse_client_hello(data))
        if http_verdict(data):
            od = OriginalDestination(ip, port, tls=False, sni=None)
            await self.hand_over(sock, od, None)
            self.stats.count("http")
            return True
        raise Refused("not_http", "neither HTTP nor TLS")

    async def _route_tls(
        self, sock: socket.socket, ip: str, port: int, hello: clienthello.ClientHello
    ) -> bool:
        if hello.status is not clienthello.Status.COMPLETE:
            raise Refused("tls_malformed", hello.reason)
        if hello.sni is None:
            raise Refused("tls_no_sni", f"TLS to {ip}:{port} without a server name")
        upstream = self._upstreams().lookup(hello.sni)
        if upstream is None or upstream.scheme != "https":
            refused = Refused(
                "tls_unknown_host", f"{hello.sni} is not a TLS upstream of the policy"
            )
            refused.host, refused.port = hello.sni, port
            raise refused
        od = OriginalDestination(ip, port, tls=True, sni=hello.sni)
        await self._check_destination(od, upstream)
        if upstream.tls is TLSMode.INSPECT:
            if self._minter is None:
                raise Refused("tls_inspection_unavailable", "no haltgate CA configured")
            # Minting a leaf (an RSA/EC signature) takes milliseconds: off the event loop.
            ctx = await asyncio.get_running_loop().run_in_executor(
                None, self._minter.server_context, hello.sni
            )
            await self.hand_over(sock, od, ctx)
            self.stats.count("tls_inspect")
            return True
        await self._tunnel(sock, od, upstream)
        return True  # the tunnel's transport owned (and closed) the socket

    async def _check_destination(
        self, od: OriginalDestination, upstream: TransparentUpstream
    ) -> None:
        try:
            if self.settings.check_destination_address:
                await self.verifier.check(od, upstream.host, upstream.port)
            elif od.port != upstream.port:
                raise DestinationMismatch("destination_port_mismatch", "port differs")
        except DestinationMismatch as e:
            raise Refused(e.code, str(e)) from e

    async def hand_over(
        self, sock: socket.socket, od: OriginalDestination, ctx: Any | None
    ) -> None:
        """Give a classified connection to the HTTP server, with where it was going (TLS
        terminated with ``ctx`` first when given). Its first bytes are still in the socket
        (only peeked), so the server parses them first."""
        loop = asyncio.get_running_loop()
        server = self._factory
        factory: Callable[[], asyncio.BaseProtocol]
        key = None
        if isinstance(server, LlhttpServer):
            factory = partial(server.connection, od)  # the connection carries it
        else:
            key = connection_key(sock.getsockname(), sock.getpeername())
            if key is None:
                raise Refused("no_peer", "cannot identify the connection")
            register(key, od)
            factory = server
        try:
            if ctx is None:
                transport, _ = await loop.connect_accepted_socket(factory, sock)
            else:
                transport, _ = await loop.connect_accepted_socket(
                    factory,
                    sock,
                    ssl=ctx,
                    ssl_handshake_timeout=self.settings.tls_handshake_timeout,
                )
        except BaseException:
            if key is not None:
                forget(key)
            raise
        if key is not None:
            attach(key, transport)

    async def _tunnel(
        self, sock: socket.socket, od: OriginalDestination, upstream: TransparentUpstream
    ) -> None:
        connection_id = uuid.uuid4().hex
        opened = TunnelEvent(connection_id, od, upstream, "opened")
        if not await self._gate.opened(opened):
            raise Refused("passthrough_denied", f"the sidecar refused {upstream.host}")
        started = time.monotonic()
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(upstream.host, upstream.port),
                self.settings.connect_timeout,
            )
        except (OSError, TimeoutError) as e:
            await self._gate.closed(TunnelEvent(connection_id, od, upstream, "closed"))
            raise Refused("upstream_unreachable", f"{upstream.host}:{upstream.port}: {e}") from e
        self.stats.count("tls_passthrough")
        self._tunnels += 1
        try:
            await self._relay(sock, up_reader, up_writer, connection_id, od, upstream, started)
        finally:
            self._tunnels -= 1

    async def _relay(
        self,
        sock: socket.socket,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
        connection_id: str,
        od: OriginalDestination,
        upstream: TransparentUpstream,
        started: float,
    ) -> None:
        client_reader, client_writer = await asyncio.open_connection(sock=sock)
        counts = [0, 0]

        def idle() -> None:  # no byte either way for tunnel_idle_timeout: end the tunnel
            for writer in (up_writer, client_writer):
                writer.close()

        watch = IdleWatch(self.settings.tunnel_idle_timeout, idle)
        try:
            await asyncio.gather(
                self._pump(client_reader, up_writer, counts, 0, watch),
                self._pump(up_reader, client_writer, counts, 1, watch),
            )
        finally:
            watch.cancel()
            for writer in (up_writer, client_writer):
                writer.close()
            await self._gate.closed(
                TunnelEvent(
                    connection_id,
                    od,
                    upstream,
                    "closed",
                    bytes_up=counts[0],
                    bytes_down=counts[1],
                    duration_seconds=time.monotonic() - started,
                )
            )

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        counts: list[int],
        index: int,
        watch: IdleWatch,
    ) -> None:
        # No timeout per direction: a silent client downloading a long answer is not idle
        # (the IdleWatch ends the tunnel when neither direction moves).
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                watch.touch()
                counts[index] += len(chunk)
                writer.write(chunk)
                await writer.drain()
        except (OSError, TimeoutError):
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                if writer.can_write_eof():
                    writer.write_eof()
