"""Transparent mode: the 17001 listener that every redirected agent connection arrives at.

iptables (``haltgate iptables apply``) REDIRECTs each TCP connection of the agent to this
listener. For each one it:

1. reads the original destination (``SO_ORIGINAL_DST``, IPv4 and IPv6);
2. peeks at the first bytes (``MSG_PEEK``: nothing consumed, bounded in time and size);
3. decides:
   - plain HTTP: hands the socket to the sidecar's HTTP handler (an aiohttp ``web.Server``),
     which governs each request (``connection_info(request)`` tells it where the agent was
     going);
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
import ipaddress
import logging
import re
import socket
import struct
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from haltgate.governance.policy import GovernancePolicySpec
from haltgate.governance.policy_base import TLSMode
from haltgate.sidecar import clienthello
from haltgate.sidecar.listeners import IdleWatch
from haltgate.sidecar.tlsmint import LeafMinter, TLSMintError

log = logging.getLogger("haltgate.sidecar.transparent")

TRANSPARENT_PORT = 17001
SO_ORIGINAL_DST = 80
"""``SO_ORIGINAL_DST`` (IPv4, level SOL_IP) and ``IP6T_SO_ORIGINAL_DST`` (level SOL_IPV6)."""
SOL_IPV6 = getattr(socket, "SOL_IPV6", 41)

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


# --------------------------------------------------------------------------- public types


@dataclass(frozen=True, slots=True)
class OriginalDestination:
    """Where a redirected connection was going, as the agent addressed it."""

    ip: str
    port: int
    tls: bool
    sni: str | None


@dataclass(frozen=True, slots=True)
class TransparentUpstream:
    """An upstream as transparent mode sees it: a host and port, and what to do with TLS."""

    name: str
    host: str
    port: int
    scheme: str
    tls: TLSMode


_INDEX_CACHE: dict[str, tuple[GovernancePolicySpec, UpstreamIndex]] = {}


class UpstreamIndex:
    """The policy's upstreams by host name (lower case). Built once per policy version.

    When several upstreams share a host (two aliases on one API), ``inspect`` wins over
    ``passthrough``: the stricter reading of an ambiguous policy.
    """

    def __init__(self, upstreams: Iterable[TransparentUpstream] = ()) -> None:
        self._by_host: dict[str, TransparentUpstream] = {}
        for up in upstreams:
            known = self._by_host.get(up.host)
            if known is None or (known.tls is TLSMode.PASSTHROUGH and up.tls is TLSMode.INSPECT):
                self._by_host[up.host] = up

    @classmethod
    def from_spec(cls, spec: GovernancePolicySpec) -> UpstreamIndex:
        """The index of ``spec`` (cached for the current spec object: policies are immutable
        and replaced whole on reload, so callers may ask once per connection)."""
        cached = _INDEX_CACHE.get("last")
        if cached is not None and cached[0] is spec:
            return cached[1]
        index = cls._build(spec)
        _INDEX_CACHE["last"] = (spec, index)
        return index

    @classmethod
    def _build(cls, spec: GovernancePolicySpec) -> UpstreamIndex:
        out = []
        for up in spec.upstreams:
            url = urlsplit(up.url)
            if url.hostname is None:
                continue
            port = url.port or (443 if url.scheme == "https" else 80)
            out.append(TransparentUpstream(up.name, url.hostname.lower(), port, url.scheme, up.tls))
        return cls(out)

    def lookup(self, host: str) -> TransparentUpstream | None:
        return self._by_host.get(host.lower().rstrip("."))


@dataclass(frozen=True, slots=True)
class TunnelEvent:
    """A passed-through TLS connection, reported when it opens and again when it closes."""

    connection_id: str
    destination: OriginalDestination
    upstream: TransparentUpstream
    phase: str
    """``opened`` or ``closed``."""
    bytes_up: int = 0
    bytes_down: int = 0
    duration_seconds: float = 0.0


class ConnectionGate(Protocol):
    """The sidecar's say on passthrough connections (audit ``connection`` records, halts)."""

    async def opened(self, event: TunnelEvent) -> bool:
        """Called before dialling; False refuses the connection (e.g. the agent is halted)."""
        ...

    async def closed(self, event: TunnelEvent) -> None:
        """Called once the tunnel has ended, with byte counts."""
        ...

    async def refused(self, code: str, detail: str, host: str, port: int) -> None:
        """A connection refused before any request reached the pipeline (unknown server
        name, not HTTP, a local destination...): the sidecar audits it."""
        ...


class LoggingConnectionGate:
    """Default gate: allows, logs and counts. The sidecar replaces it with its audited one."""

    def __init__(self) -> None:
        self.opened_total = 0
        self.closed_total = 0
        self.refused_total = 0
        self.events: list[TunnelEvent] = []

    async def opened(self, event: TunnelEvent) -> bool:
        self.opened_total += 1
        self._keep(event)
        log.info(
            "passthrough %s -> %s:%d (sni %s)",
            event.connection_id,
            event.upstream.host,
            event.upstream.port,
            event.destination.sni,
        )
        return True

    async def closed(self, event: TunnelEvent) -> None:
        self.closed_total += 1
        self._keep(event)
        log.info(
            "passthrough %s closed: %d bytes up, %d down, %.3fs",
            event.connection_id,
            event.bytes_up,
            event.bytes_down,
            event.duration_seconds,
        )

    async def refused(self, code: str, detail: str, host: str, port: int) -> None:
        self.refused_total += 1

    def _keep(self, event: TunnelEvent) -> None:
        if len(self.events) >= 1000:
            del self.events[0]
        self.events.append(event)


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


# --------------------------------------------------------------------------- registry

# Connections handed to the HTTP handler, by (local ip, local port, peer ip, peer port).
# Keyed by addresses because uvloop's TLS transports cannot be weakly referenced; the key is
# unique among live connections and registered before the handler can see a request.
_REGISTRY: dict[tuple[str, int, str, int], tuple[OriginalDestination, Any, float]] = {}
_SWEEP_EVERY = 256


def _key(sockname: Any, peername: Any) -> tuple[str, int, str, int] | None:
    try:
        return (str(sockname[0]), int(sockname[1]), str(peername[0]), int(peername[1]))
    except (TypeError, IndexError, ValueError):
        return None


def _register(key: tuple[str, int, str, int], od: OriginalDestination) -> None:
    if len(_REGISTRY) % _SWEEP_EVERY == _SWEEP_EVERY - 1:
        _sweep()
    _REGISTRY[key] = (od, None, time.monotonic())


def _attach(key: tuple[str, int, str, int], transport: Any) -> None:
    entry = _REGISTRY.get(key)
    if entry is not None:
        _REGISTRY[key] = (entry[0], transport, entry[2])


def _sweep(max_unattached_age: float = 120.0) -> None:
    """Forget connections that have closed (bounded memory without per-connection hooks)."""
    now = time.monotonic()
    for key, (_od, transport, since) in list(_REGISTRY.items()):
        if transport is None:
            if now - since > max_unattached_age:
                del _REGISTRY[key]
        elif transport.is_closing():
            del _REGISTRY[key]


def connection_info(request: web.BaseRequest) -> OriginalDestination | None:
    """The original destination of the connection ``request`` arrived on (17001 only)."""
    transport = request.transport
    if transport is None:
        return None
    key = _key(transport.get_extra_info("sockname"), transport.get_extra_info("peername"))
    if key is None:
        return None
    entry = _REGISTRY.get(key)
    return entry[0] if entry is not None else None


# --------------------------------------------------------------------------- destination rule


class DestinationMismatch(Exception):
    """The connection's address, port, SNI and Host do not name the same place."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class DestinationVerifier:
    """Checks that the agent's original address belongs to the host it names."""

    def __init__(
        self, cache_seconds: float = 30.0, max_entries: int = 1024, resolve_timeout: float = 5.0
    ) -> None:
        self._cache: dict[tuple[str, int], tuple[float, frozenset[str]]] = {}
        self._ttl = cache_seconds
        self._max = max_entries
        self._timeout = resolve_timeout

    async def addresses(self, host: str, port: int) -> frozenset[str]:
        """The addresses ``host`` resolves to (cached); empty when it does not resolve."""
        literal = _ip(host)
        if literal is not None:
            return frozenset({str(literal)})
        now = time.monotonic()
        hit = self._cache.get((host, port))
        if hit is not None and hit[0] > now:
            return hit[1]
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), self._timeout
            )
        except (OSError, TimeoutError):
            infos = []
        found = frozenset(str(a) for a in (_ip(str(info[4][0])) for info in infos) if a is not None)
        if len(self._cache) >= self._max:
            self._cache.clear()
        self._cache[(host, port)] = (now + self._ttl, found)
        return found

    async def check(self, od: OriginalDestination, host: str, port: int) -> None:
        """Raise DestinationMismatch unless ``od`` is ``host:port`` as the agent's DNS says."""
        if od.port != port:
            raise DestinationMismatch(
                "destination_port_mismatch",
                f"{host} is served on port {port}, the connection went to port {od.port}",
            )
        original = _ip(od.ip)
        if original is None or str(original) not in await self.addresses(host, port):
            raise DestinationMismatch(
                "destination_address_mismatch",
                f"{od.ip} is not an address of {host}",
            )


def _host_and_port(host_header: str, default_port: int) -> tuple[str, int] | None:
    """Split a Host header (``name``, ``name:port``, ``[v6]:port``); None if malformed."""
    host_header = host_header.strip()
    if host_header.startswith("["):
        end = host_header.find("]")
        if end < 0:
            return None
        host, rest = host_header[1:end], host_header[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:]
    else:
        host, _, port_text = host_header.partition(":")
    if not host:
        return None
    if not port_text:
        return host.lower().rstrip("."), default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None
    return host.lower().rstrip("."), int(port_text)


def destination_guard(verifier: DestinationVerifier) -> Any:
    """aiohttp middleware: refuse (421) requests whose Host disagrees with the connection.

    Applies to connections from the transparent listener only. Over inspected TLS the Host
    must be the SNI; over plain HTTP it must resolve to the original address and port.
    """

    @web.middleware
    async def guard(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        od = connection_info(request)
        if od is None:
            return await handler(request)
        default_port = 443 if od.tls else 80
        parsed = _host_and_port(request.headers.get("Host", ""), default_port)
        try:
            if request.method == "CONNECT":
                # A redirected connection already has its destination; CONNECT would switch it.
                raise DestinationMismatch(
                    "connect_not_allowed",
                    "CONNECT on a redirected connection; use the explicit proxy port",
                )
            if parsed is None:
                raise DestinationMismatch("host_header_invalid", "missing or malformed Host")
            host, port = parsed
            if od.tls:
                if host != od.sni or port != od.port:
                    raise DestinationMismatch(
                        "sni_host_mismatch",
                        f"Host {host}:{port} differs from the TLS server name {od.sni}",
                    )
            else:
                await verifier.check(od, host, port)
        except DestinationMismatch as e:
            return refusal_response(e.code, str(e))
        return await handler(request)

    return guard


def refusal_response(code: str, message: str) -> web.Response:
    """A typed 421 error body in the sidecar's error format."""
    decision_id = uuid.uuid4().hex
    body = {
        "error": {
            "type": "SAFETY",
            "code": code,
            "message": message,
            "decision_id": decision_id,
            "budget": None,
        }
    }
    response = web.Response(
        status=421,
        body=orjson.dumps(body),
        content_type="application/json",
        headers={"x-haltgate-decision-id": decision_id},
    )
    # A connection that disagrees about where it goes is not reused for another request.
    response.force_close()
    return response


# --------------------------------------------------------------------------- socket helpers


def original_destination(sock: socket.socket) -> tuple[str, int]:
    """The pre-NAT destination of an accepted, REDIRECTed connection (OSError if none)."""
    if sock.family == socket.AF_INET6:
        raw = sock.getsockopt(SOL_IPV6, SO_ORIGINAL_DST, 28)
        port = struct.unpack_from("!H", raw, 2)[0]
        address = socket.inet_ntop(socket.AF_INET6, raw[8:24])
    else:
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
        port = struct.unpack_from("!H", raw, 2)[0]
        address = socket.inet_ntop(socket.AF_INET, raw[4:8])
    return address, port


def is_local_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``address`` belongs to this network namespace (binding to it succeeds)."""
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((str(address), 0))
        except OSError:
            return False
    return True


class Refused(Exception):
    """A connection is refused; ``code`` is counted and audited (see `ConnectionGate`)."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(detail or code)
        self.code = code
        self.host = ""
        """Where the agent tried to go (server name or original address), when known."""
        self.port = 0


_NOTHING_TRIED = frozenset({"closed_early", "peek_timeout", "passthrough_denied"})
"""Refusals not audited as connections: nothing was sent (the client closed or stayed
silent), or the gate already wrote the record (a denied passthrough)."""


def _http_verdict(data: bytes) -> bool | None:
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
        protocol_factory: Callable[[], asyncio.BaseProtocol],
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
        """Connections the HTTP handler holds (set by the sidecar: aiohttp's count)."""
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
            if e.code not in _NOTHING_TRIED:
                await self._gate.refused(e.code, str(e), e.host, e.port)
        except (OSError, TimeoutError, TLSMintError) as e:
            self.stats.count("refused_error")
            log.info("transparent: connection failed: %r", e)
        finally:
            self._pending -= 1
            if not handed_over:
                with contextlib.suppress(OSError):
                    sock.close()

    async def _peek(self, sock: socket.socket) -> bytes:
        """First bytes of the connection, left in the socket; enough to classify it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.peek_timeout
        delay = 0.001
        await asyncio.wait_for(_wait_readable(sock), self.settings.peek_timeout)
        while True:
            try:
                data = sock.recv(self.settings.max_peek_bytes, socket.MSG_PEEK)
            except BlockingIOError:
                data = None
            if data == b"":
                raise Refused("closed_early", "client closed before sending anything")
            if data:
                if clienthello.looks_like_tls(data):
                    hello = clienthello.parse_client_hello(data)
                    if hello.status is not clienthello.Status.NEED_MORE:
                        return data
                    if len(data) >= self.settings.max_peek_bytes:
                        raise Refused("tls_malformed", "ClientHello larger than the peek bound")
                elif _http_verdict(data) is not None:
                    return data
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise Refused("peek_timeout", "client too slow to send its first bytes")
            # Level-triggered readiness would spin while unread bytes wait: poll, backing off.
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.05)

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
        original = _ip(ip)
        if original is None or original.is_loopback or (ip, port) == tuple(local[:2]):
            raise Refused("not_redirected", f"original destination {ip}:{port} is local")
        if is_local_address(original):
            # The pod's own address: the sidecar's admin, metrics, OPA or the agent's own
            # servers. Forwarding there as the sidecar UID would launder the agent's access.
            raise Refused("local_destination", f"{ip}:{port} is an address of this pod")
        try:
            data = await self._peek(sock)
        except TimeoutError as e:
            raise Refused("peek_timeout", "client sent nothing") from e
        if clienthello.looks_like_tls(data):
            return await self._route_tls(sock, ip, port, clienthello.parse_client_hello(data))
        if _http_verdict(data):
            od = OriginalDestination(ip, port, tls=False, sni=None)
            await self._hand_over(sock, od, None)
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
            await self._hand_over(sock, od, ctx)
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

    async def _hand_over(
        self, sock: socket.socket, od: OriginalDestination, ctx: Any | None
    ) -> None:
        loop = asyncio.get_running_loop()
        key = _key(sock.getsockname(), sock.getpeername())
        if key is None:
            raise Refused("no_peer", "cannot identify the connection")
        _register(key, od)
        try:
            if ctx is None:
                transport, _ = await loop.connect_accepted_socket(self._factory, sock)
            else:
                transport, _ = await loop.connect_accepted_socket(
                    self._factory,
                    sock,
                    ssl=ctx,
                    ssl_handshake_timeout=self.settings.tls_handshake_timeout,
                )
        except BaseException:
            _REGISTRY.pop(key, None)
            raise
        _attach(key, transport)

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
