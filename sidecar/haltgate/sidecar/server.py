"""The sidecar process: listeners, shared upstream client, policy reload, admin, metrics.

Ports (fixed defaults, configurable for tests):

- 15000 explicit mode: ``http://127.0.0.1:15000/<upstream-alias>/...`` base URLs, and
  ``HTTP(S)_PROXY`` use (absolute-form requests, ``CONNECT``);
- 15001 transparent mode (``haltgate.sidecar.transparent``, started when present);
- 15020 admin API (bearer token);
- 15090 ``/metrics``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from yarl import URL

from haltgate.governance.audit import AuditSink, MemoryAuditSink, SpoolAuditSink
from haltgate.governance.errors import BadRequestError, HaltgateError, NotFoundError
from haltgate.governance.governor import Governor, make_engine
from haltgate.governance.policy import FailureType
from haltgate.governance.request import AgentIdentity
from haltgate.sidecar.admin import TokenFile, create_admin_app
from haltgate.sidecar.budget import Budget
from haltgate.sidecar.classify import Target
from haltgate.sidecar.controls import Controls
from haltgate.sidecar.metrics import SidecarMetrics
from haltgate.sidecar.pipeline import Pipeline, PipelineSettings
from haltgate.sidecar.policy_watch import PolicyWatcher
from haltgate.sidecar.upstreams import default_port

__all__ = ["Listen", "Sidecar", "SidecarSettings"]

log = logging.getLogger("haltgate.sidecar")

EXPLICIT_PORT = 15000
TRANSPARENT_PORT = 15001
ADMIN_PORT = 15020
METRICS_PORT = 15090

PIPELINE = web.AppKey("pipeline", Pipeline)
SIDECAR = web.AppKey("sidecar", "Sidecar")


@dataclass(frozen=True, slots=True)
class Listen:
    host: str
    port: int

    @classmethod
    def parse(cls, value: str, default_port: int) -> Listen:
        """``host:port``, ``:port``, ``[v6]:port`` or ``host``."""
        if value.startswith("["):
            host, _, rest = value[1:].partition("]")
            return cls(host, int(rest.lstrip(":") or default_port))
        host, sep, port = value.rpartition(":")
        if not sep:
            return cls(value, default_port)
        return cls(host or "0.0.0.0", int(port))


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
    admin: Listen = Listen("0.0.0.0", ADMIN_PORT)
    metrics: Listen = Listen("0.0.0.0", METRICS_PORT)
    transparent: Listen | None = None
    """Transparent listener (15001), when the transparent module is available and wanted."""
    agent: AgentIdentity = field(default_factory=AgentIdentity)
    reload_interval: float = 1.0
    """Seconds between policy file checks."""
    opa_url: str = "http://127.0.0.1:8181"
    rego_dir: Path = Path("/etc/haltgate/opa")
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    upstream_connections: int = 256
    """Keep-alive pool size (all upstreams together)."""


def _new_run_id() -> str:
    return uuid.uuid4().hex


class Sidecar:
    """Everything the ``haltgate sidecar`` process runs. ``await start()`` / ``stop()``."""

    def __init__(self, settings: SidecarSettings, *, audit: AuditSink | None = None,
                 metrics: SidecarMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or SidecarMetrics()
        self.watcher = PolicyWatcher(settings.policy_path, self._apply_controls,
                                     interval=settings.reload_interval,
                                     on_result=self._reload_result)
        self.controls: Controls = self.watcher.initial()
        self._audit_given = audit
        self.audit: AuditSink = audit or (
            SpoolAuditSink(settings.audit_dir, on_full=self.controls.spec.audit.on_spool_full)
            if settings.audit_dir is not None else MemoryAuditSink())
        self.tokens = TokenFile(settings.admin_token_file)
        self.run_id = self._load_run_id()
        self.governor: Any | None = None
        self.opa: Any | None = None
        self.session: aiohttp.ClientSession | None = None
        self.pipeline: Pipeline | None = None
        self._runners: list[web.BaseRunner] = []
        self.addresses: dict[str, tuple[str, int]] = {}
        self.started_at = 0.0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.started_at = time.time()
        connector = aiohttp.TCPConnector(limit=self.settings.upstream_connections,
                                         limit_per_host=0, ttl_dns_cache=10,
                                         keepalive_timeout=30)
        self.session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )
        self.governor = self._make_governor()
        self.opa = await self._make_opa()
        agent = self._agent()
        self.pipeline = Pipeline(
            controls=self.controls, budget=Budget(self.governor), audit=self.audit,
            metrics=self.metrics, session=self.session, agent=agent, opa=self.opa,
            settings=self.settings.pipeline,
        )
        await self._serve("explicit", self._explicit_app(), self.settings.explicit)
        await self._serve("admin", create_admin_app(self, self.tokens), self.settings.admin)
        await self._serve("metrics", self._metrics_app(), self.settings.metrics)
        self.watcher.start()

    async def stop(self) -> None:
        await self.watcher.stop()
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        if self.pipeline is not None:
            await self.pipeline.drain()
        if self.opa is not None:
            await self.opa.close()
        if self.session is not None:
            await self.session.close()
        if self._audit_given is None:
            await self.audit.close()

    async def _serve(self, name: str, app: web.Application, listen: Listen) -> None:
        runner = web.AppRunner(app, access_log=None, handle_signals=False,
                               shutdown_timeout=5)
        await runner.setup()
        site = web.TCPSite(runner, listen.host, listen.port, reuse_address=True)
        await site.start()
        self._runners.append(runner)
        host, port = runner.addresses[0][:2]
        self.addresses[name] = (host, port)
        log.info("%s listening on %s:%s", name, host, port)

    # ------------------------------------------------------------------ components

    def _make_governor(self) -> Governor:
        """The budget engine's Governor, its state persisted in the state directory."""
        state = (self.settings.state_dir / "budget-state.json"
                 if self.settings.state_dir is not None else None)
        if state is not None:
            state.parent.mkdir(parents=True, exist_ok=True)
        return Governor.for_policy(self.controls.spec, state, now=time.time())

    async def _make_opa(self) -> Any | None:
        spec = self.controls.spec
        if spec.opa is None:
            return None
        from haltgate.governance.opa import OPAEvaluator, resolve_rego

        opa = OPAEvaluator(spec.opa, resolve_rego(spec.opa, self.settings.rego_dir),
                           url=self.settings.opa_url)
        try:
            await opa.start()
        except Exception as e:  # OPA may come up after us: decisions fail closed meanwhile
            log.warning("OPA not ready at start (%s); decisions follow failMode", e)
        return opa

    def _agent(self) -> AgentIdentity:
        a = self.settings.agent
        return AgentIdentity(namespace=a.namespace, workload=a.workload, pod=a.pod,
                             run_id=self.run_id)

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
            self.governor.update_engine(make_engine(spec))
        self.controls = controls
        if self.pipeline is not None:
            self.pipeline.controls = controls

    def _reload_result(self, ok: bool) -> None:
        self.metrics.policy_reloads.labels("ok" if ok else "invalid").inc()
        self.metrics.policy_valid.set(1 if ok else 0)

    # ------------------------------------------------------------------ admin backend

    def status(self) -> dict[str, Any]:
        pipeline = self.pipeline
        halted = None
        if pipeline is not None:
            verdict = pipeline.budget.halted(time.time())
            halted = None if verdict.allowed else {
                "failure_type": verdict.failure_type.value if verdict.failure_type else None,
                "code": verdict.code, "message": verdict.message}
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
        }

    def budgets(self) -> dict[str, Any]:
        if self.governor is None:
            return {"engine": None, "budgets": {}}
        return {"engine": "builtin", **self.governor.snapshot()}

    async def halt(self, message: str, code: str | None, actor: str) -> dict[str, Any]:
        if self.governor is None:
            raise web.HTTPServiceUnavailable(reason="no budget engine: cannot halt")
        decision = self.governor.halt(time.time(), FailureType.EXTERNAL,
                                      code or "external_halt", f"{message} (by {actor})")
        return {"halted": True, "decision": decision.to_dict()}

    async def reset(self, actor: str) -> dict[str, Any]:
        if self.governor is None:
            raise web.HTTPServiceUnavailable(reason="no budget engine: cannot reset")
        decision = self.governor.reset(time.time(), actor)
        self.run_id = self._store_run_id(_new_run_id())
        if self.pipeline is not None:
            self.pipeline.agent = self._agent()
        return {"reset": True, "run_id": self.run_id, "decision": decision.to_dict()}

    # ------------------------------------------------------------------ apps

    def _explicit_app(self) -> web.Application:
        app = web.Application(client_max_size=2**62)  # the pipeline enforces the policy limit
        app[SIDECAR] = self

        async def handler(request: web.Request) -> web.StreamResponse:
            pipeline = self.pipeline
            assert pipeline is not None
            return await pipeline.handle(request, resolve_explicit(request, pipeline.controls))

        app.router.add_route("*", "/{tail:.*}", handler)
        return app

    def _metrics_app(self) -> web.Application:
        registry = self.metrics.registry

        async def metrics(request: web.Request) -> web.Response:
            data = await asyncio.get_running_loop().run_in_executor(
                None, generate_latest, registry)
            return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        return app


# ---------------------------------------------------------------------- target resolution


def _check_path(raw_path: str) -> None:
    """Refuse dot segments: they would let a path escape the alias or a path rule."""
    for segment in raw_path.split("/"):
        if segment and unquote(segment) in (".", ".."):
            raise BadRequestError("path contains dot segments", code="invalid_path")


def resolve_explicit(request: web.Request, controls: Controls) -> Target | HaltgateError:
    """Target of a request on the explicit port: absolute-form (proxy) or alias path."""
    raw_target = request.raw_path
    if request.method == "CONNECT":
        return BadRequestError("CONNECT is handled before HTTP parsing; not here",
                               code="invalid_request")
    try:
        if not raw_target.startswith("/"):
            # absolute-form: the agent uses the sidecar as its HTTP proxy.
            try:
                url = URL(raw_target, encoded=True)
            except ValueError:
                return BadRequestError("invalid request target", code="invalid_request")
            scheme = url.scheme
            if scheme not in ("http", "https") or not url.raw_host:
                return BadRequestError("absolute-form target must be http(s)",
                                       code="invalid_request")
            host = url.raw_host.lower()
            port = url.port or default_port(scheme)
            _check_path(url.raw_path)
            return Target(scheme=scheme, host=host, port=port, path=url.raw_path or "/",
                          query=url.raw_query_string,
                          upstream=controls.upstreams.for_host(host, port))
        rel = request.rel_url
        raw = rel.raw_path
        _check_path(raw)
        alias, sep, rest = raw[1:].partition("/")
        upstream = controls.upstreams.by_alias.get(alias)
        if upstream is None:
            return NotFoundError(f"no upstream named {alias[:64]!r} in the policy",
                                 code="unknown_upstream")
        path = upstream.base_path + "/" + rest if sep else (upstream.base_path or "/")
        return Target(scheme=upstream.scheme, host=upstream.host, port=upstream.port,
                      path=path, query=rel.raw_query_string, upstream=upstream)
    except HaltgateError as e:
        return e
