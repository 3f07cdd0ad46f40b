"""The sidecar's listening sockets, from bind to close: each front end behind its connection
cap (explicit, transparent, admin, metrics), the addresses bound, and the shutdown order."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from haltgate.sidecar.connect import ExplicitFront
from haltgate.sidecar.connect_routing import ConnectRouter
from haltgate.sidecar.destination_check import DestinationVerifier
from haltgate.sidecar.listeners import ConnectionCap, ListenerLimits, LiveCount
from haltgate.sidecar.llhttp_server import LlhttpServer
from haltgate.sidecar.metrics import SidecarMetrics
from haltgate.sidecar.startup import Listen
from haltgate.sidecar.transparent_gate import ConnectionGate
from haltgate.sidecar.transparent_upstreams import UpstreamIndex

if TYPE_CHECKING:  # imported when a transparent listener starts (it loads the TLS stack)
    from haltgate.sidecar.transparent import TransparentListener

__all__ = ["Listeners"]

log = logging.getLogger("haltgate.sidecar")


class Listeners:
    """Opens the sidecar's listeners (``serve_*``) and closes them all (``close``)."""

    def __init__(self, limits: ListenerLimits, metrics: SidecarMetrics) -> None:
        self._limits = limits
        self._metrics = metrics
        self._runners: list[web.BaseRunner] = []
        self._servers: list[asyncio.AbstractServer] = []
        self._llhttp: list[LlhttpServer] = []
        self.addresses: dict[str, tuple[str, int]] = {}
        """Bound ``(host, port)`` by listener name."""
        self.transparent: TransparentListener | None = None

    async def serve_app(self, name: str, app: web.Application, listen: Listen) -> None:
        """An aiohttp application on its own port (admin, metrics)."""
        http = await self._setup(web.AppRunner(app, **self._runner_options()))
        cap = ConnectionCap(
            name,
            http,
            lambda: len(http.connections),
            self._limits.max_admin_connections,
            self._refused_connection,
        )
        await self._listen(name, cap, listen, backlog=128)

    async def serve_explicit(
        self, listen: Listen, server: web.Server | LlhttpServer, connects: ConnectRouter
    ) -> None:
        """Port 17000: CONNECT is sniffed first (connect.py), all else goes to ``server``."""
        limits = self._limits
        http_factory: web.Server | LlhttpServer
        if isinstance(server, LlhttpServer):
            http_factory = server
            self._llhttp.append(server)
        else:
            http_factory = await self._setup(
                web.ServerRunner(server, handle_signals=False, shutdown_timeout=5)
            )
        fronts = LiveCount()
        tasks = connects.tasks
        inspected = connects.inspected

        def live() -> int:
            gone = [s for s in inspected if not s.connections]
            inspected.difference_update(gone)
            return (
                fronts.n
                + len(http_factory.connections)
                + len(tasks)
                + sum(len(s.connections) for s in inspected)
            )

        cap = ConnectionCap(
            "explicit",
            lambda: ExplicitFront(
                http_factory,
                connects.on_connect,
                connects.refuse,
                head_timeout=limits.idle_timeout,
                live=fronts,
            ),
            live,
            limits.max_connections,
            self._refused_connection,
        )
        await self._listen("explicit", cap, listen, backlog=1024)

    async def serve_transparent(
        self,
        listen: Listen,
        server: web.Application | LlhttpServer,
        *,
        upstreams: Callable[[], UpstreamIndex],
        minter: Any | None,
        gate: ConnectionGate,
        verifier: DestinationVerifier,
    ) -> None:
        """Port 17001: connections redirected by iptables (haltgate.sidecar.transparent);
        ``::1`` on the same port is added to ``127.0.0.1``. Plain HTTP and inspected TLS
        go to ``server``: the llhttp server (each connection made with its original
        destination) or an aiohttp application (``--http-server aiohttp``)."""
        from haltgate.sidecar.transparent import TransparentListener, TransparentSettings

        limits = self._limits
        http: web.Server | LlhttpServer
        if isinstance(server, LlhttpServer):
            http = server
            self._llhttp.append(server)
        else:
            http = await self._setup(web.AppRunner(server, **self._runner_options()))
        self.transparent = transparent = TransparentListener(
            protocol_factory=http,
            upstreams=upstreams,
            minter=minter,
            gate=gate,
            verifier=verifier,
            settings=TransparentSettings(
                max_connections=limits.max_connections,
                tunnel_idle_timeout=limits.tunnel_idle_timeout,
            ),
        )
        transparent.live_handed_over = lambda: len(http.connections)
        hosts = [listen.host] + (["::1"] if listen.host == "127.0.0.1" else [])
        await transparent.start(hosts=hosts, port=listen.port)
        stats = transparent.stats
        self._metrics.watch_transparent(lambda: stats.outcomes)
        self.addresses["transparent"] = transparent.addresses[0]

    async def close(self) -> None:
        """Stop accepting (the transparent listener first), then close the HTTP servers
        (newest first)."""
        if self.transparent is not None:
            await self.transparent.close()
        for server in self._servers:
            server.close()
        self._servers.clear()
        for llhttp in self._llhttp:
            await llhttp.shutdown(5.0)
        self._llhttp.clear()
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()

    def _runner_options(self) -> dict[str, Any]:
        return {
            "access_log": None,
            "handle_signals": False,
            "shutdown_timeout": 5,
            "keepalive_timeout": self._limits.idle_timeout,
        }

    async def _setup(self, runner: web.BaseRunner) -> web.Server:
        """Set ``runner`` up (closed by :meth:`close`); its HTTP protocol factory."""
        await runner.setup()
        self._runners.append(runner)
        http = runner.server
        assert http is not None
        return http

    async def _listen(
        self, name: str, factory: Callable[[], asyncio.BaseProtocol], listen: Listen, backlog: int
    ) -> None:
        server = await asyncio.get_running_loop().create_server(
            factory, listen.host, listen.port, reuse_address=True, backlog=backlog
        )
        self._servers.append(server)
        host, port = server.sockets[0].getsockname()[:2]
        self.addresses[name] = (host, port)
        log.info("%s listening on %s:%s", name, host, port)

    def _refused_connection(self, listener: str) -> None:
        self._metrics.connections_refused.labels(listener).inc()
