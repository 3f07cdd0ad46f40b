"""The destination rule of transparent mode: the original address, port, SNI and Host of a
connection must name the same place (DNS of the named host, local addresses, the 421 guard)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from haltgate.sidecar.original_destination import OriginalDestination, connection_info
from haltgate.sidecar.pipeline_request import PipelineRequest


class DestinationMismatch(Exception):
    """The connection's address, port, SNI and Host do not name the same place."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
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
        literal = parse_ip(host)
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
        found = frozenset(
            str(a) for a in (parse_ip(str(info[4][0])) for info in infos) if a is not None
        )
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
        original = parse_ip(od.ip)
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


async def destination_refusal(
    request: PipelineRequest, verifier: DestinationVerifier
) -> web.Response | None:
    """The 421 for a request whose Host disagrees with its connection, else ``None``.

    Applies to connections from the transparent listener only (others have no original
    destination). Over inspected TLS the Host must be the SNI; over plain HTTP it must
    resolve to the original address and port."""
    od = connection_info(request)
    if od is None:
        return None
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
    return None


def destination_guard(verifier: DestinationVerifier) -> Any:
    """aiohttp middleware of :func:`destination_refusal` (the transparent application's
    under ``--http-server aiohttp``; the llhttp server's handler calls it directly)."""

    @web.middleware
    async def guard(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        refusal = await destination_refusal(request, verifier)
        if refusal is not None:
            return refusal
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


def is_local_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``address`` belongs to this network namespace (binding to it succeeds)."""
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((str(address), 0))
        except OSError:
            return False
    return True
