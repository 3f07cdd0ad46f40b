"""The sidecar process: listeners, shared upstream client, policy reload, admin, metrics.

Ports (fixed defaults, configurable for tests):

- 17000 explicit mode: ``http://127.0.0.1:17000/<upstream-alias>/...`` base URLs, and
  ``HTTP(S)_PROXY`` use (absolute-form requests, ``CONNECT``);
- 17001 transparent mode (``haltgate.sidecar.transparent``, started when present);
- 17020 admin API (bearer token);
- 17090 ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import ssl
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from yarl import URL

from haltgate.governance.audit import (
    AuditError,
    AuditRecord,
    AuditSink,
    MemoryAuditSink,
    SpoolAuditSink,
)
from haltgate.governance.audit.metrics import AuditMetrics
from haltgate.governance.audit.redact import AuditScrubber
from haltgate.governance.canonical import CanonicalPath, canonical_path
from haltgate.governance.engine import codes
from haltgate.governance.errors import (
    BadRequestError,
    DeniedError,
    HaltgateError,
    NotFoundError,
    UnavailableError,
    UpstreamError,
)
from haltgate.governance.flows import FlowTaint
from haltgate.governance.governor import Governor, make_engine
from haltgate.governance.policy import (
    FailureType,
    GovernancePolicySpec,
    PayloadCapture,
    TLSMode,
)
from haltgate.governance.pricing import (
    PriceTable,
    PriceTableError,
    ShippedTable,
    load_table_file,
)
from haltgate.governance.request import AgentIdentity
from haltgate.sidecar import self_view
from haltgate.sidecar.admin import TokenFile, create_admin_app
from haltgate.sidecar.budget import Budget
from haltgate.sidecar.classify import Target
from haltgate.sidecar.connect import (
    ConnectRequest,
    ExplicitFront,
    refusal_for,
    tunnel,
    write_refusal,
)
from haltgate.sidecar.controls import Controls
from haltgate.sidecar.listeners import ConnectionCap, ListenerLimits, LiveCount
from haltgate.sidecar.metrics import SidecarMetrics
from haltgate.sidecar.pipeline import Pipeline
from haltgate.sidecar.pipeline_state import PipelineSettings
from haltgate.sidecar.policy_watch import PolicyWatcher, _stat_key
from haltgate.sidecar.upstreams import default_port

__all__ = ["Listen", "Sidecar", "SidecarSettings", "StartupError"]

log = logging.getLogger("haltgate.sidecar")

EXPLICIT_PORT = 17000
TRANSPARENT_PORT = 17001
ADMIN_PORT = 17020
METRICS_PORT = 17090


class StartupError(Exception):
    """The sidecar cannot start with these settings; ``setting`` names the field of
    :class:`SidecarSettings` at fault (the CLI reports it as its flag)."""

    code = "startup_failed"

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting
        self.message = message


@dataclass(frozen=True, slots=True)
class Listen:
    host: str
    port: int

    @classmethod
    def parse(cls, value: str, default_port: int) -> Listen:
        """``host:port``, ``:port``, ``[v6]:port`` or ``host``."""
        if value.startswith("["):
            host, _, rest = value[1:].partition("]")
            return cls(host, _port(rest.lstrip(":") or default_port))
        host, sep, port = value.rpartition(":")
        if not sep:
            return cls(value, default_port)
        return cls(host or "127.0.0.1", _port(port))


def _port(value: str | int) -> int:
    port = int(value)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range 0-65535")
    return port


@dataclass(frozen=True, slots=True)
class SidecarSettings:
    """Process settings of the sidecar (policy is separate: it reloads)."""

    policy_path: Path
    """GovernancePolicy YAML (usually a mounted ConfigMap)."""
    admin_token_file: Path | None = None
    """File with the admin bearer token (a mounted Secret). None: admin API refuses all."""
    state_dir: Path | None = None
    """Where budget state and the run id persist across restarts. None: memory only."""
    audit_dir: Path | None = None
    """Audit spool directory. None: records kept in memory (tests, demos)."""
    explicit: Listen = Listen("127.0.0.1", EXPLICIT_PORT)
    admin: Listen = Listen("127.0.0.1", ADMIN_PORT)
    """Loopback by default; the injected sidecar listens on the pod IP (kubelet probes,
    the operator), never on every address."""
    metrics: Listen = Listen("127.0.0.1", METRICS_PORT)
    limits: ListenerLimits = field(default_factory=ListenerLimits)
    """Connection cap and header/idle timeout of every listener (listeners.py)."""
    transparent: Listen | None = None
    """Transparent listener (17001; ``::1`` on the same port is added). None: off."""
    ca_dir: Path | None = None
    """haltgate CA (``ca.crt``, ``ca.key``) for TLS inspection. None: nothing is inspected
    (CONNECT/TLS to ``inspect`` upstreams is refused)."""
    agent: AgentIdentity = field(default_factory=AgentIdentity)
    reload_interval: float = 1.0
    """Seconds between policy file checks."""
    opa_url: str = "http://127.0.0.1:8181"
    rego_dir: Path = Path("/etc/haltgate/opa")
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    upstream_connections: int = 256
    """Keep-alive pool size (all upstreams together)."""
    upstream_ca_file: Path | None = None
    """Extra CA bundle to trust for https upstreams (private APIs); system CAs otherwise."""
    pool_dsn: str | None = None
    """PostgreSQL URI of the BudgetPool database (needed when the policy names a pool)."""
    pool_fail_mode: str = "closed"
    policy_name: str = ""
    """Name of the GovernancePolicy (the ``policy`` metric label; empty: left out)."""
    price_table: Path | None = None
    """Price table file replacing the one shipped in the image (the chart's pricing.table,
    mounted with the policy). Re-read on each policy reload. None: the shipped table."""
    """Pool database unreachable past the current lease: refuse (closed) or allow (open)."""


def _new_run_id() -> str:
    return uuid.uuid4().hex


class Sidecar:
    """Everything the ``haltgate sidecar`` process runs. ``await start()`` / ``stop()``."""

    def __init__(
        self,
        settings: SidecarSettings,
        *,
        audit: AuditSink | None = None,
        metrics: SidecarMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or SidecarMetrics()
        self.metrics.set_identity(
            namespace=settings.agent.namespace,
            workload=settings.agent.workload,
            policy=settings.policy_name,
        )
        self.watcher = PolicyWatcher(
            settings.policy_path,
            self._apply_controls,
            interval=settings.reload_interval,
            on_result=self._reload_result,
            on_tick=self._refresh_opa,
        )
        self.controls: Controls = self.watcher.initial()
        # Read before anything starts: a malformed table fails the start (PriceTableError).
        self._base_prices: ShippedTable | None = (
            load_table_file(settings.price_table) if settings.price_table is not None else None
        )
        self._audit_given = audit
        with _opening("audit_dir", "cannot open the audit spool"):
            self.audit: AuditSink = audit or (
                SpoolAuditSink(
                    settings.audit_dir,
                    on_full=self.controls.spec.audit.on_spool_full,
                    metrics=AuditMetrics(self.metrics.registry),
                )
                if settings.audit_dir is not None
                else MemoryAuditSink()
            )
        spool_settings = getattr(self.audit, "settings", None)
        if spool_settings is not None:
            self.metrics.spool_limit.set(spool_settings.max_bytes)
        self.tokens = TokenFile(settings.admin_token_file)
        with _opening("state_dir", "cannot keep state"):
            self.run_id = self._load_run_id()
        self.governor: Any | None = None
        self.opa: Any | None = None
        self._rego_key: tuple[int, int, int, int] | None = None
        """``stat`` of the ConfigMap Rego file at the last refresh (see _refresh_opa)."""
        self.session: aiohttp.ClientSession | None = None
        self.pipeline: Pipeline | None = None
        self.pool: Any | None = None
        self._runners: list[web.BaseRunner] = []
        self._servers: list[asyncio.AbstractServer] = []
        self._connect_tasks: set[asyncio.Task[None]] = set()
        self._inspected: set[web.Server] = set()
        """HTTP servers of inspected CONNECT tunnels (one per tunnel; the connection cap
        counts their connections)."""
        self.minter: Any | None = None
        self.transparent: Any | None = None
        self.addresses: dict[str, tuple[str, int]] = {}
        self.started_at = 0.0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open everything and listen. Raises :class:`StartupError` (after closing what
        was opened) for a CA that cannot be used or an address that cannot be bound."""
        self.started_at = time.time()
        try:
            # First: a CA that cannot be used fails the start before anything is opened.
            self.minter = self._make_minter()
            await self._start()
        except StartupError:
            await self.stop()
            raise

    async def _start(self) -> None:
        with _opening(
            "upstream_ca_file", "cannot load the upstream CA bundle", self.settings.upstream_ca_file
        ):
            ssl_context = (
                True
                if self.settings.upstream_ca_file is None
                else ssl.create_default_context(cafile=str(self.settings.upstream_ca_file))
            )
        connector = aiohttp.TCPConnector(
            limit=self.settings.upstream_connections,
            limit_per_host=0,
            ttl_dns_cache=10,
            keepalive_timeout=30,
            ssl=ssl_context,
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )
        with _opening("state_dir", "cannot keep state"):
            self.governor = self._make_governor()
        if hasattr(self.audit, "carry_state"):
            # The state is written in the spool's group commit, off the event loop, before
            # the intent that follows a reservation is confirmed (see governor.py).
            self.governor.persist_with(self.audit)
        self.metrics.watch_governor(lambda: self.governor)
        self.opa = await self._make_opa()
        agent = self._agent()
        self.pool = await self._make_pool(agent)
        self.pipeline = Pipeline(
            controls=self.controls,
            budget=Budget(self.governor),
            audit=self.audit,
            metrics=self.metrics,
            session=self.session,
            agent=agent,
            opa=self.opa,
            settings=self.settings.pipeline,
            pool=self.pool,
            flow_taint=FlowTaint(
                self.settings.state_dir / "flow-taint.json"
                if self.settings.state_dir is not None
                else None
            ),
        )
        settings = self.settings
        with _binding("explicit", settings.explicit):
            await self._serve_explicit(settings.explicit)
        if settings.transparent is not None:
            with _binding("transparent", settings.transparent):
                await self._serve_transparent(settings.transparent)
        with _binding("admin", settings.admin):
            await self._serve("admin", create_admin_app(self, self.tokens), settings.admin)
        with _binding("metrics", settings.metrics):
            await self._serve("metrics", self._metrics_app(), settings.metrics)
        self.watcher.start()

    async def stop(self) -> None:
        await self.watcher.stop()
        if self.transparent is not None:
            await self.transparent.close()
        for server in self._servers:
            server.close()
        self._servers.clear()
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        if self.pipeline is not None:
            await self.pipeline.drain()
        if self.pool is not None:
            await self.pool.close()
        if self.opa is not None:
            await self.opa.close()
        if self.session is not None:
            await self.session.close()
        if self._audit_given is None:
            await self.audit.close()

    async def _serve(self, name: str, app: web.Application, listen: Listen) -> None:
        limits = self.settings.limits
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=5,
            keepalive_timeout=limits.idle_timeout,
        )
        await runner.setup()
        self._runners.append(runner)
        http = runner.server
        assert http is not None
        cap = ConnectionCap(
            name,
            http,
            lambda: len(http.connections),
            limits.max_admin_connections,
            self._refused_connection,
        )
        server = await asyncio.get_running_loop().create_server(
            cap, listen.host, listen.port, reuse_address=True, backlog=128
        )
        self._servers.append(server)
        host, port = server.sockets[0].getsockname()[:2]
        self.addresses[name] = (host, port)
        log.info("%s listening on %s:%s", name, host, port)

    def _refused_connection(self, listener: str) -> None:
        self.metrics.connections_refused.labels(listener).inc()

    async def _serve_explicit(self, listen: Listen) -> None:
        """Port 17000: CONNECT is sniffed first (connect.py), all else goes to aiohttp."""
        limits = self.settings.limits
        runner = web.ServerRunner(self._explicit_server(), handle_signals=False, shutdown_timeout=5)
        await runner.setup()
        self._runners.append(runner)
        http_factory = runner.server
        assert http_factory is not None
        loop = asyncio.get_running_loop()
        fronts = LiveCount()
        tasks = self._connect_tasks
        inspected = self._inspected

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
                self._on_connect,
                self._refuse_connect,
                head_timeout=limits.idle_timeout,
                live=fronts,
            ),
            live,
            limits.max_connections,
            self._refused_connection,
        )
        server = await loop.create_server(
            cap, listen.host, listen.port, reuse_address=True, backlog=1024
        )
        self._servers.append(server)
        host, port = server.sockets[0].getsockname()[:2]
        self.addresses["explicit"] = (host, port)
        log.info("explicit listening on %s:%s", host, port)

    async def _serve_transparent(self, listen: Listen) -> None:
        """Port 17001: connections redirected by iptables (haltgate.sidecar.transparent)."""
        from haltgate.sidecar import transparent

        verifier = transparent.DestinationVerifier()
        limits = self.settings.limits
        app = web.Application(
            client_max_size=2**62, middlewares=[transparent.destination_guard(verifier)]
        )

        async def handler(request: web.Request) -> web.StreamResponse:
            pipeline = self.pipeline
            assert pipeline is not None
            return await pipeline.handle(request, resolve_transparent(request, pipeline.controls))

        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=5,
            keepalive_timeout=limits.idle_timeout,
        )
        await runner.setup()
        self._runners.append(runner)
        http = runner.server
        assert http is not None
        self.transparent = transparent.TransparentListener(
            protocol_factory=http,
            upstreams=lambda: transparent.UpstreamIndex.from_spec(self.controls.spec),
            minter=self.minter,
            gate=ConnectionAudit(self),
            verifier=verifier,
            settings=transparent.TransparentSettings(
                max_connections=limits.max_connections,
                tunnel_idle_timeout=limits.tunnel_idle_timeout,
            ),
        )
        self.transparent.live_handed_over = lambda: len(http.connections)
        hosts = [listen.host] + (["::1"] if listen.host == "127.0.0.1" else [])
        await self.transparent.start(hosts=hosts, port=listen.port)
        stats = self.transparent.stats
        self.metrics.watch_transparent(lambda: stats.outcomes)
        self.addresses["transparent"] = self.transparent.addresses[0]

    # ------------------------------------------------------------------ CONNECT

    def _refuse_connect(self, transport: asyncio.Transport, err: HaltgateError) -> None:
        assert self.pipeline is not None
        decision_id = self.pipeline.identify().decision_id
        write_refusal(transport, err, decision_id)
        # A malformed CONNECT is a refusal too: audited (without a target it could name).
        task = asyncio.get_running_loop().create_task(
            self.connection_record(
                decision_id, "", 0, "deny" if isinstance(err, DeniedError) else "error", err
            )
        )
        self._connect_tasks.add(task)
        task.add_done_callback(self._connect_tasks.discard)

    async def _on_connect(
        self, transport: asyncio.Transport, request: ConnectRequest, version: str
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connect_tasks.add(task)
            task.add_done_callback(self._connect_tasks.discard)
        pipeline = self.pipeline
        assert pipeline is not None
        controls = pipeline.controls
        upstream = controls.upstreams.for_host(request.host, request.port)
        halted = pipeline.budget.halted(time.time())
        err = (
            _halt_error(halted)
            if not halted.allowed
            else refusal_for(upstream, self.minter is not None, request.host, request.port)
        )
        if err is None and pipeline.pool is not None:
            err = pipeline.pool.refusal()  # a halted pool refuses tunnels too
        if err is not None or upstream is None:
            assert err is not None
            call = pipeline.identify()
            pipeline.metrics.requests.labels("connection", "deny", err.code).inc()
            await self.connection_record(call.decision_id, request.host, request.port, "deny", err)
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
        assert self.pipeline is not None
        decision_id = self.pipeline.identify().decision_id
        await self.connection_record(decision_id, upstream.host, upstream.port, "allow", None)
        started = time.perf_counter()
        self.pipeline.metrics.requests.labels("connection", "allow", "").inc()
        try:
            up, down = await tunnel(
                transport, upstream, version, idle_timeout=self.settings.limits.tunnel_idle_timeout
            )
        except (OSError, TimeoutError) as e:
            err = UpstreamError(
                f"cannot reach {upstream.host}:{upstream.port}: {type(e).__name__}",
                code="upstream_unreachable",
            )
            write_refusal(transport, err, decision_id)
            await self.connection_record(decision_id, upstream.host, upstream.port, "error", err)
            return
        await self.connection_record(
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
        minter = self.minter
        assert minter is not None  # refusal_for() refused inspection without a CA
        try:
            ctx = await loop.run_in_executor(None, minter.server_context, request.host)
        except Exception as e:
            assert self.pipeline is not None
            self._refuse_connect(
                transport,
                UnavailableError(
                    f"cannot mint a certificate for {request.host}: {e}", code="tls_mint_failed"
                ),
            )
            return
        target_host, target_port = request.host, request.port

        async def handler(req: web.BaseRequest) -> web.StreamResponse:
            pipeline = self.pipeline
            assert pipeline is not None
            return await pipeline.handle(
                req, resolve_inspected(req, pipeline.controls, target_host, target_port)
            )

        server = web.Server(
            handler, access_log=None, keepalive_timeout=self.settings.limits.idle_timeout
        )
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
        self._inspected.add(server)

    async def connection_record(
        self,
        decision_id: str,
        host: str,
        port: int,
        decision: str,
        err: HaltgateError | None,
        *,
        bytes_up: int | None = None,
        bytes_down: int | None = None,
        seconds: float | None = None,
    ) -> None:
        """Audit a tunnel (opened, closed with byte counts) or a refused connection."""
        agent = self._agent()
        payload = (
            None
            if bytes_up is None
            else {"bytes_up": bytes_up, "bytes_down": bytes_down, "seconds": seconds}
        )
        # The host is the agent's to choose (a key can hide in a DNS label): scrubbed.
        scrub = AuditScrubber(redact=self.controls.payload is not PayloadCapture.FULL)
        record = AuditRecord(
            decision_id=decision_id,
            time=time.time(),
            phase="connection",
            namespace=agent.namespace,
            workload=agent.workload,
            pod=agent.pod,
            run_id=agent.run_id,
            kind="connection",
            target=scrub.target(f"CONNECT {host}:{port}" if host else "CONNECT (unparsed)"),
            decision=decision,
            failure_type=err.failure_type.value if err and err.failure_type else None,
            code=err.code if err else None,
            message=scrub.optional(err.message if err else None),
            latency_ms=None if seconds is None else seconds * 1000,
            payload=payload,
        )
        try:
            await self.audit.outcome(record)
        except AuditError as e:
            log.error("connection record %s not written: %s", decision_id, e)

    # ------------------------------------------------------------------ components

    def _make_minter(self) -> Any | None:
        if self.settings.ca_dir is None:
            return None
        from haltgate.sidecar.tlsmint import (
            CA_CERT_FILE,
            CA_KEY_FILE,
            CertificateAuthority,
            LeafMinter,
            TLSMintError,
        )

        try:
            ca = CertificateAuthority.load(
                self.settings.ca_dir / CA_CERT_FILE, self.settings.ca_dir / CA_KEY_FILE
            )
        except TLSMintError as e:
            raise StartupError("ca_dir", str(e)) from e
        return LeafMinter(ca)

    def _make_governor(self) -> Governor:
        """The budget engine's Governor, its state persisted in the state directory."""
        state = (
            self.settings.state_dir / "budget-state.json"
            if self.settings.state_dir is not None
            else None
        )
        if state is not None:
            state.parent.mkdir(parents=True, exist_ok=True)
        return Governor.for_policy(
            self.controls.spec, state, now=time.time(), prices=self._prices_for(self.controls.spec)
        )

    def _prices_for(self, spec: GovernancePolicySpec) -> PriceTable | None:
        """The policy's prices over the mounted table; None: over the shipped table."""
        if self._base_prices is None:
            return None
        return PriceTable.for_policy(spec.pricing, self._base_prices)

    def _reload_prices(self) -> None:
        """Re-read the mounted price table; a malformed one keeps the table in use."""
        if self.settings.price_table is None:
            return
        try:
            self._base_prices = load_table_file(self.settings.price_table)
        except PriceTableError as e:
            log.error(
                "price table %s not reloaded (keeping version %s): %s",
                self.settings.price_table,
                self._base_prices.version if self._base_prices else "?",
                e,
            )

    async def _make_opa(self) -> Any | None:
        spec = self.controls.spec
        if spec.opa is None:
            return None
        from haltgate.governance.opa import OPAEvaluator, resolve_rego

        opa = OPAEvaluator(
            spec.opa, resolve_rego(spec.opa, self.settings.rego_dir), url=self.settings.opa_url
        )
        try:
            await opa.start()
        except Exception as e:  # OPA may come up after us: decisions fail closed meanwhile
            log.warning("OPA not ready at start (%s); decisions follow failMode", e)
        return opa

    async def _refresh_opa(self) -> None:
        """Reload the Rego when its ConfigMap changed but the policy file did not (the
        watcher's tick: one ``stat``; the file is read and hashed, and OPA called, only
        when it changed, so an unreachable OPA is not retried here every tick: the
        evaluator's own recovery loads the wanted module)."""
        opa, spec = self.opa, self.controls.spec
        if opa is None or spec.opa is None or spec.opa.config_map_ref is None:
            return
        key = _stat_key(self.settings.rego_dir / spec.opa.config_map_ref.key)
        if key == self._rego_key:
            return
        self._rego_key = key
        if await opa.refresh(self.settings.rego_dir):
            log.info("OPA policy reloaded from ConfigMap %s", spec.opa.config_map_ref.name)

    async def _make_pool(self, agent: AgentIdentity) -> Any:
        """The pool stage: cascade checks always; shared accounting if the policy names a
        pool (read at start: changing ``spec.pool`` needs a restart)."""
        from haltgate.governance.policy import FailMode
        from haltgate.governance.pool.client import PoolClient, PoolMetrics, PoolSettings
        from haltgate.governance.pool.store import pool_key
        from haltgate.sidecar.pool import PoolStage

        me = f"{agent.namespace or 'default'}/{agent.workload or agent.pod or 'agent'}"
        name = self.controls.spec.pool
        prices = getattr(self.governor.engine, "prices", None) if self.governor else None
        common: dict[str, Any] = {
            "me": me,
            "prices": prices,
            "governor": self.governor,
            "default_max_output_tokens": self.settings.pipeline.default_max_output_tokens,
        }
        if name is None:
            return PoolStage(client=None, **common)
        if not self.settings.pool_dsn:
            log.error(
                "policy names pool %s but no pool database is configured "
                "(--pool-dsn): every call is refused",
                name,
            )
            return PoolStage(
                client=None,
                unconfigured=f"the policy draws from pool {name} "
                "but the sidecar has no pool database",
                **common,
            )
        client = PoolClient(
            PoolSettings(
                dsn=self.settings.pool_dsn,
                pool=pool_key(agent.namespace or "default", name),
                holder=f"{me}/{agent.pod or self.run_id}",
                fail_mode=FailMode(self.settings.pool_fail_mode),
            ),
            PoolMetrics(self.metrics.registry),
        )
        await client.start()
        return PoolStage(client=client, **common)

    def agent_identity(self) -> AgentIdentity:
        """Who the sidecar governs (namespace, workload, pod, run id)."""
        return self._agent()

    def _agent(self) -> AgentIdentity:
        a = self.settings.agent
        return AgentIdentity(
            namespace=a.namespace, workload=a.workload, pod=a.pod, run_id=self.run_id
        )

    def _load_run_id(self) -> str:
        if self.settings.state_dir is None:
            return _new_run_id()
        path = self.settings.state_dir / "run-id"
        try:
            value = path.read_text().strip()
            if value:
                return value
        except OSError:
            pass
        return self._store_run_id(_new_run_id())

    def _store_run_id(self, run_id: str) -> str:
        if self.settings.state_dir is not None:
            self.settings.state_dir.mkdir(parents=True, exist_ok=True)
            path = self.settings.state_dir / "run-id"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(run_id + "\n")
            os.replace(tmp, path)
        return run_id

    async def _apply_controls(self, controls: Controls) -> None:
        """Swap in a new compiled policy (requests in flight keep the old one)."""
        spec = controls.spec
        if self.opa is not None and spec.opa is not None:
            from haltgate.governance.opa import resolve_rego

            await self.opa.update(spec.opa, resolve_rego(spec.opa, self.settings.rego_dir))
        elif spec.opa is not None and self.opa is None:
            self.controls = controls
            self.opa = await self._make_opa()
            if self.pipeline is not None:
                self.pipeline.opa = self.opa
        if self.governor is not None:
            self._reload_prices()
            self.governor.update_engine(make_engine(spec, self._prices_for(spec)))
        self.controls = controls
        if self.pipeline is not None:
            self.pipeline.controls = controls

    def _reload_result(self, ok: bool) -> None:
        self.metrics.policy_reloads.labels("ok" if ok else "invalid").inc()
        self.metrics.policy_valid.set(1 if ok else 0)

    # ------------------------------------------------------------------ admin backend

    def ready(self) -> bool:
        return self.not_ready_reason() is None

    def not_ready_reason(self) -> str | None:
        """Why the sidecar cannot govern calls now (``None``: it can)."""
        reason: str | None = None
        if self.pipeline is None or "explicit" not in self.addresses:
            reason = "starting"
        else:
            health = getattr(self.audit, "health", None)
            reason = health() if health is not None else None
        self.metrics.ready.set(0 if reason else 1)
        return reason

    def status(self) -> dict[str, Any]:
        pipeline = self.pipeline
        halted = None
        if pipeline is not None:
            verdict = pipeline.budget.halted(time.time())
            halted = (
                None
                if verdict.allowed
                else {
                    "failure_type": verdict.failure_type.value if verdict.failure_type else None,
                    "code": verdict.code,
                    "message": verdict.message,
                }
            )
        return {
            "ready": pipeline is not None,
            "started_at": self.started_at,
            "agent": self._agent().as_dict(),
            "policy": self.watcher.status.as_dict(),
            "halted": halted,
            "budget_engine": self.governor is not None,
            "opa": None if self.opa is None else {"loaded": bool(self.opa.loaded)},
            "decisions": dict(pipeline.decisions) if pipeline else {},
            "last_error": pipeline.last_error if pipeline else None,
            "listeners": {k: {"host": h, "port": p} for k, (h, p) in self.addresses.items()},
            "pool": self.pool.snapshot() if self.pool is not None else None,
        }

    def budgets(self) -> dict[str, Any]:
        if self.governor is None:
            return {"engine": None, "budgets": {}}
        return {"engine": "builtin", **self.governor.snapshot()}

    async def halt(self, message: str, code: str | None, actor: str) -> dict[str, Any]:
        if self.governor is None:
            raise web.HTTPServiceUnavailable(reason="no budget engine: cannot halt")
        decision = self.governor.halt(
            time.time(), FailureType.EXTERNAL, code or "external_halt", f"{message} (by {actor})"
        )
        return {"halted": True, "decision": decision.to_dict()}

    async def lift(self, actor: str, code: str | None) -> dict[str, Any]:
        """End an EXTERNAL halt; the run goes on with its id and budgets (not a reset)."""
        if self.governor is None:
            raise web.HTTPServiceUnavailable(reason="no budget engine: cannot lift")
        halt = self.governor.snapshot().get("halt") or {}
        if halt.get("code") == codes.STATE_UNREADABLE:
            # The run's spend was lost with its state file: going on would count from zero
            # under the old run id. Only an explicit new run (POST /reset) clears it.
            raise web.HTTPConflict(
                reason="the budget state was unreadable: only POST /reset "
                "(a new run) clears this halt"
            )
        decision = self.governor.lift(time.time(), actor, code)
        lifted = decision.code == codes.LIFTED
        verdict = self.pipeline.budget.halted(time.time()) if self.pipeline else None
        still = (
            None
            if verdict is None or verdict.allowed
            else {
                "failure_type": verdict.failure_type.value if verdict.failure_type else None,
                "code": verdict.code,
            }
        )
        return {
            "lifted": lifted,
            "run_id": self.run_id,
            "halted": still,
            "decision": decision.to_dict(),
        }

    async def reset(self, actor: str) -> dict[str, Any]:
        if self.governor is None:
            raise web.HTTPServiceUnavailable(reason="no budget engine: cannot reset")
        decision = self.governor.reset(time.time(), actor)
        self.run_id = self._store_run_id(_new_run_id())
        if self.pipeline is not None:
            self.pipeline.agent = self._agent()
        return {"reset": True, "run_id": self.run_id, "decision": decision.to_dict()}

    async def approve_flow(self, approval: str, actor: str) -> dict[str, Any] | None:
        """Approve one call held by a ``spec.flows`` approval rule (None: no such id)."""
        pipeline = self.pipeline
        if pipeline is None:
            return None
        pipeline.flow_taint.bind(self.run_id)  # an id of a run before a reset is void
        if not pipeline.flow_taint.approve(approval):
            return None
        return {"approved": True, "approval": approval, "actor": actor, "run_id": self.run_id}

    # ------------------------------------------------------------------ apps

    def _explicit_server(self) -> web.Server:
        """aiohttp's low-level server: every request goes to the pipeline, so an
        Application's router, middlewares and Request objects would be cost without use
        (the body limit is the policy's, enforced by the pipeline)."""

        async def handler(request: web.BaseRequest) -> web.StreamResponse:
            pipeline = self.pipeline
            assert pipeline is not None
            if request.raw_path.startswith(self_view.SELF_PATH) and self_view.is_self_request(
                request.raw_path
            ):
                return self_view.answer(request, self)  # the agent's read-only view
            if request.version == aiohttp.HttpVersion11 and "Expect" in request.headers:
                await _answer_expect(request)
            return await pipeline.handle(request, resolve_explicit(request, pipeline.controls))

        return web.Server(
            handler, access_log=None, keepalive_timeout=self.settings.limits.idle_timeout
        )

    def _metrics_app(self) -> web.Application:
        registry = self.metrics.exposed  # with the identity labels

        async def metrics(request: web.Request) -> web.Response:
            data = await asyncio.get_running_loop().run_in_executor(None, generate_latest, registry)
            return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        return app


class ConnectionAudit:
    """The transparent listener's gate for passthrough TLS: halts refuse, tunnels audited."""

    def __init__(self, sidecar: Sidecar) -> None:
        self._sidecar = sidecar

    async def opened(self, event: Any) -> bool:
        sc = self._sidecar
        assert sc.pipeline is not None
        halted = sc.pipeline.budget.halted(time.time())
        err = None if halted.allowed else _halt_error(halted)
        if err is None and sc.pipeline.pool is not None:
            err = sc.pipeline.pool.refusal()  # a halted pool refuses tunnels too
        await sc.connection_record(
            event.connection_id,
            event.upstream.host,
            event.upstream.port,
            "allow" if err is None else "deny",
            err,
        )
        sc.pipeline.metrics.requests.labels(
            "connection", "allow" if err is None else "deny", err.code if err else ""
        ).inc()
        return err is None

    async def closed(self, event: Any) -> None:
        await self._sidecar.connection_record(
            event.connection_id,
            event.upstream.host,
            event.upstream.port,
            "allow",
            None,
            bytes_up=event.bytes_up,
            bytes_down=event.bytes_down,
            seconds=event.duration_seconds,
        )

    async def refused(self, code: str, detail: str, host: str, port: int) -> None:
        sc = self._sidecar
        assert sc.pipeline is not None
        err = DeniedError(detail, code=code, failure_type=FailureType.SAFETY)
        await sc.connection_record(sc.pipeline.identify().decision_id, host, port, "deny", err)
        sc.pipeline.metrics.requests.labels("connection", "deny", code).inc()


def _halt_error(verdict: Any) -> HaltgateError:
    return DeniedError(
        verdict.message or "the run is halted",
        code=verdict.code or "halted",
        failure_type=verdict.failure_type or FailureType.EXTERNAL,
    )


# ---------------------------------------------------------------------- target resolution


def _canonical(raw_path: str, controls: Controls) -> CanonicalPath:
    """The one reading of a raw path (see ``haltgate.governance.canonical``): dot segments,
    encoded slashes and the like are refused, the canonical form is what is forwarded."""
    return canonical_path(
        raw_path or "/", parameters=controls.spec.limits.path_parameters == "allow"
    )


def _raw_path(request: web.BaseRequest) -> str:
    """The path of the request line as sent (no decoding, no normalisation)."""
    raw = request.raw_path
    if raw.startswith("/"):
        return raw.partition("?")[0].partition("#")[0]
    try:
        return URL(raw, encoded=True).raw_path  # absolute-form
    except ValueError as e:
        raise BadRequestError("invalid request target", code="invalid_request") from e


async def _answer_expect(request: web.BaseRequest) -> None:
    """``Expect: 100-continue``: tell the client to send its body (what an Application's
    router does for its routes); any other expectation cannot be met (417)."""
    if request.headers["Expect"].lower() != "100-continue":
        raise web.HTTPExpectationFailed(text=f"unknown Expect: {request.headers['Expect']}")
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # the answer's own byte count starts after this


def resolve_explicit(request: web.BaseRequest, controls: Controls) -> Target | HaltgateError:
    """Target of a request on the explicit port: absolute-form (proxy) or alias path."""
    raw_target = request.raw_path
    if request.method == "CONNECT":
        return BadRequestError(
            "CONNECT is handled before HTTP parsing; not here", code="invalid_request"
        )
    try:
        if not raw_target.startswith("/"):
            # absolute-form: the agent uses the sidecar as its HTTP proxy.
            try:
                url = URL(raw_target, encoded=True)
            except ValueError:
                return BadRequestError("invalid request target", code="invalid_request")
            scheme = url.scheme
            if scheme not in ("http", "https") or not url.raw_host:
                return BadRequestError(
                    "absolute-form target must be http(s)", code="invalid_request"
                )
            host = url.raw_host.lower()
            port = url.port or default_port(scheme)
            cp = _canonical(url.raw_path, controls)
            return Target(
                scheme=scheme,
                host=host,
                port=port,
                path=cp.forward,
                query=url.raw_query_string,
                upstream=controls.upstreams.for_host(host, port),
                rule_path=cp.match,
            )
        # origin-form: split the raw target ourselves (cheaper than building a URL object)
        raw, _, query = raw_target.partition("?")
        cp = _canonical(raw, controls)
        alias, sep, rest = cp.match[1:].partition("/")
        upstream = controls.upstreams.by_alias.get(alias)
        if upstream is None:
            return NotFoundError(
                f"no upstream named {alias[:64]!r} in the policy", code="unknown_upstream"
            )
        base = upstream.base_path
        if not sep:
            return Target(
                scheme=upstream.scheme,
                host=upstream.host,
                port=upstream.port,
                path=base or "/",
                query=query,
                upstream=upstream,
            )
        forward = cp.forward[1:].partition("/")[2]
        return Target(
            scheme=upstream.scheme,
            host=upstream.host,
            port=upstream.port,
            path=base + "/" + forward,
            query=query,
            upstream=upstream,
            rule_path=base + "/" + rest,
        )
    except HaltgateError as e:
        return e


def _host_header(request: web.BaseRequest, default: int) -> tuple[str, int] | None:
    raw = request.headers.get("Host", "")
    try:
        url = URL(f"http://{raw}", encoded=True) if raw else None
    except ValueError:
        return None
    if url is None or not url.raw_host:
        return None
    port = url.explicit_port if url.explicit_port is not None else default
    return url.raw_host.lower().rstrip("."), port


def resolve_inspected(
    request: web.BaseRequest, controls: Controls, host: str, port: int
) -> Target | HaltgateError:
    """Target of a request inside an inspected CONNECT tunnel: the CONNECT authority."""
    parsed = _host_header(request, 443)
    if parsed is None or parsed != (host, port):
        return DeniedError(
            f"Host header differs from the CONNECT target {host}:{port}",
            code="sni_host_mismatch",
            failure_type=FailureType.SAFETY,
        )
    rel = request.rel_url
    try:
        cp = _canonical(_raw_path(request), controls)
    except HaltgateError as e:
        return e
    return Target(
        scheme="https",
        host=host,
        port=port,
        path=cp.forward,
        query=rel.raw_query_string,
        upstream=controls.upstreams.for_host(host, port),
        rule_path=cp.match,
    )


def resolve_transparent(request: web.BaseRequest, controls: Controls) -> Target | HaltgateError:
    """Target of a request on the transparent port: where the agent was connecting to.

    The Host header was already checked against the SNI / original address by
    ``transparent.destination_guard``.
    """
    from haltgate.sidecar.transparent import connection_info

    od = connection_info(request)
    if od is None:
        return BadRequestError(
            "no original destination for this connection", code="no_original_destination"
        )
    scheme = "https" if od.tls else "http"
    parsed = _host_header(request, od.port)
    host = od.sni if od.tls and od.sni else (parsed[0] if parsed else od.ip)
    rel = request.rel_url
    try:
        cp = _canonical(_raw_path(request), controls)
    except HaltgateError as e:
        return e
    return Target(
        scheme=scheme,
        host=host,
        port=od.port,
        path=cp.forward,
        query=rel.raw_query_string,
        upstream=controls.upstreams.for_host(host, od.port),
        destination_checked=True,
        rule_path=cp.match,
    )


@contextlib.contextmanager
def _binding(setting: str, listen: Listen) -> Iterator[None]:
    """A listener that cannot bind its address is a :class:`StartupError` naming it."""
    try:
        yield
    except OSError as e:
        # uvloop's messages repeat the address; the errno says it all.
        reason = os.strerror(e.errno) if e.errno else str(e)
        if e.errno == errno.EADDRINUSE:
            reason = "address already in use"
        raise StartupError(
            setting, f"cannot listen on {listen.host}:{listen.port}: {reason}"
        ) from e


@contextlib.contextmanager
def _opening(setting: str, what: str, path: Path | None = None) -> Iterator[None]:
    """A file or directory of a setting that cannot be used is a :class:`StartupError`."""
    try:
        yield
    except ssl.SSLError as e:
        raise StartupError(setting, f"{what} {path}: {e.reason or e}") from e
    except OSError as e:
        where = e.filename or path
        what = f"{what} {where}" if where else what
        raise StartupError(setting, f"{what}: {e.strerror or e}") from e
