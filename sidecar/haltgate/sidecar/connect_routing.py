"""A ``CONNECT`` on the explicit port, once parsed: refused (halts, pools, the policy), tunnelled
to the upstream the policy names (passthrough, audited as a connection), or terminated with
a minted leaf so that each request inside is governed like any other (inspect)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from aiohttp import web

from haltgate.governance.errors import (
    DeniedError,
    HaltgateError,
    UnavailableError,
    UpstreamError,
)
from haltgate.governance.policy_base import TLSMode
from haltgate.sidecar.connect import ConnectRequest, refusal_for, tunnel, write_refusal
from haltgate.sidecar.connection_audit import ConnectionSource, halt_error, record_connection
from haltgate.sidecar.framing_check import framing_refusal, refuse_framing
from haltgate.sidecar.http_apps import inspected_llhttp_server
from haltgate.sidecar.listeners import ListenerLimits
from haltgate.sidecar.llhttp_server import LlhttpServer
from haltgate.sidecar.startup import HttpServerName
from haltgate.sidecar.target_resolution import resolve_inspected

__all__ = ["ConnectRouter", "ConnectSource"]

log = logging.getLogger("haltgate.sidecar")


class ConnectSource(ConnectionSource, Protocol):
    """What CONNECT handling reads of the running sidecar."""

    minter: Any | None


class ConnectRouter:
    """Handles the explicit port's CONNECT requests (``connect.ExplicitFront`` parses them)."""

    def __init__(
        self, sidecar: ConnectSource, limits: ListenerLimits, http_server: HttpServerName = "llhttp"
    ) -> None:
        self._sidecar = sidecar
        self._limits = limits
        self._http_server = http_server
        """Which server parses the requests of inspected tunnels (``--http-server``)."""
        self.tasks: set[asyncio.Task[None]] = set()
        """CONNECTs being answered and refusals being audited (the connection cap counts them)."""
        self.inspected: set[web.Server | LlhttpServer] = set()
        """HTTP servers of inspected CONNECT tunnels (one per tunnel; the connection cap
        counts their connections)."""

    def refuse(self, transport: asyncio.Transport, err: HaltgateError) -> None:
        assert self._sidecar.pipeline is not None
        decision_id = self._sidecar.pipeline.identify().decision_id
        write_refusal(transport, err, decision_id)
        # A malformed CONNECT is a refusal too: audited (without a target it could name).
        task = asyncio.get_running_loop().create_task(
            record_connection(
                self._sidecar,
                decision_id,
                "",
                0,
                "deny" if isinstance(err, DeniedError) else "error",
                err,
            )
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def on_connect(
        self, transport: asyncio.Transport, request: ConnectRequest, version: str
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        pipeline = self._sidecar.pipeline
        assert pipeline is not None
        controls = pipeline.controls
        upstream = controls.upstreams.for_host(request.host, request.port)
        halted = pipeline.budget.halted(time.time())
        err = (
            halt_error(halted)
            if not halted.allowed
            else refusal_for(upstream, self._sidecar.minter is not None, request.host, request.port)
        )
        if err is None and pipeline.pool is not None:
            err = pipeline.pool.refusal()  # a halted pool refuses tunnels too
        if err is not None or upstream is None:
            assert err is not None
            call = pipeline.identify()
            pipeline.metrics.requests.labels("connection", "deny", err.code).inc()
            await record_connection(
                self._sidecar, call.decision_id, request.host, request.port, "deny", err
            )
            write_refusal(transport, err, call.decision_id)
            return
        if upstream.tls is TLSMode.PASSTHROUGH:
            await self._passthrough(transport, request, upstream, version)
            return
        await self._inspect(transport, request, upstream, version)

    async def _passthrough(
        self, transport: asyncio.Transport, request: ConnectRequest, upstream: Any, version: str
    ) -> None:
        """Tunnel to the upstream the policy names, audited as a connection."""
        assert self._sidecar.pipeline is not None
        decision_id = self._sidecar.pipeline.identify().decision_id
        await record_connection(
            self._sidecar, decision_id, upstream.host, upstream.port, "allow", None
        )
        started = time.perf_counter()
        self._sidecar.pipeline.metrics.requests.labels("connection", "allow", "").inc()
        try:
            up, down = await tunnel(
                transport, upstream, version, idle_timeout=self._limits.tunnel_idle_timeout
            )
        except (OSError, TimeoutError) as e:
            err = UpstreamError(
                f"cannot reach {upstream.host}:{upstream.port}: {type(e).__name__}",
                code="upstream_unreachable",
            )
            write_refusal(transport, err, decision_id)
            await record_connection(
                self._sidecar, decision_id, upstream.host, upstream.port, "error", err
            )
            return
        await record_connection(
            self._sidecar,
            decision_id,
            upstream.host,
            upstream.port,
            "allow",
            None,
            bytes_up=up,
            bytes_down=down,
            seconds=time.perf_counter() - started,
        )

    async def _inspect(
        self, transport: asyncio.Transport, request: ConnectRequest, upstream: Any, version: str
    ) -> None:
        """Terminate TLS with a minted leaf; govern each request inside like any other."""
        loop = asyncio.get_running_loop()
        minter = self._sidecar.minter
        assert minter is not None  # refusal_for() refused inspection without a CA
        try:
            ctx = await loop.run_in_executor(None, minter.server_context, request.host)
        except Exception as e:
            assert self._sidecar.pipeline is not None
            self.refuse(
                transport,
                UnavailableError(
                    f"cannot mint a certificate for {request.host}: {e}", code="tls_mint_failed"
                ),
            )
            return
        server = self._inspected_server(request.host, request.port)
        proto = server()
        transport.write(f"{version} 200 Connection Established\r\n\r\n".encode())
        transport.resume_reading()
        try:
            async with asyncio.timeout(10):
                tls = await loop.start_tls(transport, proto, ctx, server_side=True)
        except (OSError, TimeoutError, ConnectionError) as e:
            log.info("TLS handshake with the agent failed for %s: %r", request.host, e)
            transport.close()
            return
        if tls is None:
            transport.close()
            return
        proto.connection_made(tls)
        self.inspected.add(server)

    def _inspected_server(self, host: str, port: int) -> web.Server | LlhttpServer:
        """The HTTP server of one inspected tunnel to ``host:port`` (its requests are
        governed with that authority as their target)."""
        idle = self._limits.idle_timeout
        if self._http_server == "llhttp":
            return inspected_llhttp_server(self._sidecar, host, port, idle)

        async def handler(req: web.BaseRequest) -> web.StreamResponse:
            pipeline = self._sidecar.pipeline
            assert pipeline is not None
            if (err := framing_refusal(req)) is not None:
                return await refuse_framing(pipeline, req, err)
            return await pipeline.handle(req, resolve_inspected(req, pipeline.controls, host, port))

        return web.Server(handler, access_log=None, keepalive_timeout=idle)
