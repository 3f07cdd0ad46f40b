"""What becomes of connections the transparent listener does not hand to the HTTP handler:
passthrough tunnels reported to the sidecar's gate, refusals with their codes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from haltgate.sidecar.original_destination import OriginalDestination
from haltgate.sidecar.transparent_upstreams import TransparentUpstream

log = logging.getLogger("haltgate.sidecar.transparent")


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


class Refused(Exception):
    """A connection is refused; ``code`` is counted and audited (see `ConnectionGate`)."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(detail or code)
        self.code = code
        self.host = ""
        """Where the agent tried to go (server name or original address), when known."""
        self.port = 0


NOTHING_TRIED = frozenset({"closed_early", "peek_timeout", "passthrough_denied"})
"""Refusals not audited as connections: nothing was sent (the client closed or stayed
silent), or the gate already wrote the record (a denied passthrough)."""
