"""Where a redirected connection was going: ``SO_ORIGINAL_DST``, and how the HTTP handler
asks it of the connection a request arrived on (the llhttp server's connection carries it;
for aiohttp's server, a registry by connection addresses)."""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from haltgate.sidecar.pipeline_request import PipelineRequest
from haltgate.sidecar.wire_request import WireRequest

SO_ORIGINAL_DST = 80
"""``SO_ORIGINAL_DST`` (IPv4, level SOL_IP) and ``IP6T_SO_ORIGINAL_DST`` (level SOL_IPV6)."""
SOL_IPV6 = getattr(socket, "SOL_IPV6", 41)


@dataclass(frozen=True, slots=True)
class OriginalDestination:
    """Where a redirected connection was going, as the agent addressed it."""

    ip: str
    port: int
    tls: bool
    sni: str | None


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


# --------------------------------------------------------------------------- registry

# Connections handed to the HTTP handler, by (local ip, local port, peer ip, peer port).
# Keyed by addresses because uvloop's TLS transports cannot be weakly referenced; the key is
# unique among live connections and registered before the handler can see a request.
_REGISTRY: dict[tuple[str, int, str, int], tuple[OriginalDestination, Any, float]] = {}
_SWEEP_EVERY = 256


def connection_key(sockname: Any, peername: Any) -> tuple[str, int, str, int] | None:
    try:
        return (str(sockname[0]), int(sockname[1]), str(peername[0]), int(peername[1]))
    except (TypeError, IndexError, ValueError):
        return None


def register(key: tuple[str, int, str, int], od: OriginalDestination) -> None:
    if len(_REGISTRY) % _SWEEP_EVERY == _SWEEP_EVERY - 1:
        _sweep()
    _REGISTRY[key] = (od, None, time.monotonic())


def attach(key: tuple[str, int, str, int], transport: Any) -> None:
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


def forget(key: tuple[str, int, str, int]) -> None:
    """Drop a connection whose hand-over failed."""
    _REGISTRY.pop(key, None)


def connection_info(request: web.BaseRequest | PipelineRequest) -> OriginalDestination | None:
    """The original destination of the connection ``request`` arrived on (17001 only): the
    llhttp server's request carries it, aiohttp's is looked up by its connection."""
    if type(request) is WireRequest:
        return request.destination
    transport = request.transport
    if transport is None:
        return None
    key = connection_key(transport.get_extra_info("sockname"), transport.get_extra_info("peername"))
    if key is None:
        return None
    entry = _REGISTRY.get(key)
    return entry[0] if entry is not None else None
