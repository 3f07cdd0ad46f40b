"""Bounds of every listening socket: a connection cap and header / idle timeouts.

Without them a client that opens connections and sends nothing (or one header byte at a
time) holds a file descriptor each until the process runs out and ``/readyz`` stops
answering. Every listener of the sidecar (explicit, transparent, admin, metrics) is built
with a :class:`ConnectionCap` and a header timer of ``idle_timeout`` (aiohttp's keep-alive
timer; on the explicit port, the llhttp server's own, ``llhttp_server.py``):

- **header timeout**: the server arms that timer when a connection opens and after each
  answer, and closes the connection when it fires while no complete request head has
  arrived (a silent client, a slowloris, an idle keep-alive connection alike). The bytes
  read before the HTTP server takes over (the explicit port's ``CONNECT`` sniffing) have
  their own timer, the same length (:class:`HeadTimer`).
- **body timeout**: the pipeline's ``client_body_timeout`` (governed calls) and the admin
  API's own (``MAX_ADMIN_BODY_SECONDS``).
- **connection cap**: past ``max_connections`` live connections a new one is answered
  ``503`` with the typed error ``too_many_connections`` and closed at once; the admin and
  metrics ports have their own, smaller caps so that a flood of the proxy ports never
  takes the probes down with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import orjson

__all__ = [
    "ConnectionCap",
    "HeadTimer",
    "IdleWatch",
    "ListenerLimits",
    "LiveCount",
    "refuse_overload",
]

log = logging.getLogger("haltgate.sidecar.listeners")


@dataclass(frozen=True, slots=True)
class ListenerLimits:
    """Connection bounds of the sidecar's listeners. Validated at construction."""

    idle_timeout: float = 15.0
    """Seconds a connection may stay without a complete request head: from when it opens
    (header timeout) and after each answer (keep-alive idle timeout)."""
    max_connections: int = 2048
    """Live connections per proxy listener (explicit, transparent); more are refused with
    503 ``too_many_connections``. Far below a container's usual file limit."""
    max_admin_connections: int = 64
    """Live connections of the admin and of the metrics port (each)."""
    tunnel_idle_timeout: float = 300.0
    """Seconds a passthrough tunnel (CONNECT or transparent TLS) may move no byte in either
    direction before it is closed."""

    def __post_init__(self) -> None:
        if not self.idle_timeout > 0:
            raise ValueError("listener idle_timeout must be > 0 seconds")
        if self.max_connections < 1:
            raise ValueError("listener max_connections must be at least 1")
        if not self.tunnel_idle_timeout > 0:
            raise ValueError("listener tunnel_idle_timeout must be > 0 seconds")
        if self.max_admin_connections < 1:
            raise ValueError("listener max_admin_connections must be at least 1")


_OVERLOAD_BODY = orjson.dumps(
    {
        "error": {
            "type": "unavailable",
            "code": "too_many_connections",
            "message": "the sidecar has too many open connections; retry later",
        }
    }
)
_OVERLOAD = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"x-haltgate-code: too_many_connections\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: "
    + str(len(_OVERLOAD_BODY)).encode()
    + b"\r\n\r\n"
    + _OVERLOAD_BODY
)


def refuse_overload(transport: asyncio.BaseTransport) -> None:
    """Answer 503 ``too_many_connections`` on a fresh connection and close it."""
    try:
        transport.write(_OVERLOAD)  # type: ignore[attr-defined]
    finally:
        transport.close()


class _Refuser(asyncio.Protocol):
    """The protocol of a connection over the cap: one 503, then closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        refuse_overload(transport)


class ConnectionCap:
    """Wraps a listener's protocol factory: past ``limit`` live connections, refuse.

    ``live`` counts what the listener holds now (aiohttp's handlers plus what is still
    being sniffed or tunnelled), so nothing here needs to see a connection close."""

    def __init__(
        self,
        name: str,
        factory: Callable[[], asyncio.BaseProtocol],
        live: Callable[[], int],
        limit: int,
        on_refuse: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self._factory = factory
        self._live = live
        self.limit = limit
        self._on_refuse = on_refuse
        self.refused = 0

    def __call__(self) -> asyncio.BaseProtocol:
        if self._live() >= self.limit:
            self.refused += 1
            if self._on_refuse is not None:
                self._on_refuse(self.name)
            if self.refused == 1 or self.refused % 1000 == 0:
                log.warning(
                    "%s listener: %d live connections (cap); %d refused so far",
                    self.name,
                    self.limit,
                    self.refused,
                )
            return _Refuser()
        return self._factory()


class LiveCount:
    """A mutable count of connections a listener holds outside aiohttp's bookkeeping
    (being sniffed, tunnelled, or in a TLS hand-over)."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


class HeadTimer:
    """Closes a connection that has not been handed on within ``seconds`` (the part of a
    header timeout that runs before aiohttp owns the connection)."""

    __slots__ = ("_handle",)

    def __init__(self, transport: asyncio.BaseTransport, seconds: float) -> None:
        self._handle: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            seconds, transport.close
        )

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class IdleWatch:
    """Ends a two-way relay (a tunnel) once no byte moved in *either* direction for
    ``seconds``: a long download with a silent client is not idle, nor an upload the
    server does not answer yet. Each relayed chunk calls :meth:`touch` (one clock read)."""

    __slots__ = ("_handle", "_loop", "_on_idle", "_seconds", "last")

    def __init__(self, seconds: float, on_idle: Callable[[], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._seconds = seconds
        self._on_idle = on_idle
        self.last = self._loop.time()
        self._handle: asyncio.TimerHandle | None = self._loop.call_at(
            self.last + seconds, self._check
        )

    def touch(self) -> None:
        self.last = self._loop.time()

    def _check(self) -> None:
        due = self.last + self._seconds
        if self._loop.time() >= due:
            self._handle = None
            self._on_idle()
        else:
            self._handle = self._loop.call_at(due, self._check)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
