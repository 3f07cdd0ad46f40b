"""The sidecar process: its parts wired together, started and stopped; policy reload; the
backend of the admin API.

Ports (fixed defaults, configurable for tests; ``startup.py``):

- 17000 explicit mode: ``http://127.0.0.1:17000/<upstream-alias>/...`` base URLs, and
  ``HTTP(S)_PROXY`` use (absolute-form requests, ``CONNECT``; ``connect_routing.py``);
- 17001 transparent mode (``haltgate.sidecar.transparent``, started when configured);
- 17020 admin API (bearer token);
- 17090 ``/metrics``.

Listeners are opened and closed by ``listener_lifecycle.py``, their HTTP front ends are in
``http_apps.py``, the parts (client, CA, Governor, OPA, pool) are built by
``sidecar_components.py``.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

from haltgate.governance.audit import AuditSink, MemoryAuditSink, SpoolAuditSink
from haltgate.governance.audit.metrics import AuditMetrics
from haltgate.governance.drift_policy import BEHAVIOUR_DRIFT
from haltgate.governance.engine import codes
from haltgate.governance.flow_taint import FlowTaint
from haltgate.governance.governor import make_engine
from haltgate.governance.policy import GovernancePolicySpec
from haltgate.governance.policy_base import FailureType
from haltgate.governance.pricing import (
    PriceTable,
    PriceTableError,
    ShippedTable,
    load_table_file,
)
from haltgate.governance.request import AgentIdentity
from haltgate.sidecar.admin import TokenFile, create_admin_app
from haltgate.sidecar.budget import Budget
from haltgate.sidecar.connect_routing import ConnectRouter
from haltgate.sidecar.connection_audit import ConnectionAudit
from haltgate.sidecar.controls import Controls
from haltgate.sidecar.destination_check import DestinationVerifier
from haltgate.sidecar.drift_watch import DriftCollector, DriftWatch
from haltgate.sidecar.http_apps import (
    explicit_llhttp_server,
    explicit_server,
    metrics_app,
    transparent_app,
    transparent_llhttp_server,
)
from haltgate.sidecar.listener_lifecycle import Listeners
from haltgate.sidecar.metrics import SidecarMetrics
from haltgate.sidecar.pipeline import Pipeline
from haltgate.sidecar.policy_watch import PolicyWatcher, _stat_key
from haltgate.sidecar.sidecar_components import (
    make_governor,
    make_minter,
    make_opa,
    make_pool,
    make_upstream_client,
)
from haltgate.sidecar.startup import SidecarSettings, StartupError, binding, opening
from haltgate.sidecar.transparent_upstreams import UpstreamIndex
from haltgate.sidecar.upstream_pool import UpstreamClient

if TYPE_CHECKING:
    from haltgate.sidecar.transparent import TransparentListener

__all__ = ["Sidecar"]

log = logging.getLogger("haltgate.sidecar")


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
        with opening("audit_dir", "cannot open the audit spool"):
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
        with opening("state_dir", "cannot keep state"):
            self.run_id = self._load_run_id()
        self.governor: Any | None = None
        self.opa: Any | None = None
        self._rego_key: tuple[int, int, int, int] | None = None
        """``stat`` of the ConfigMap Rego file at the last refresh (see _refresh_opa)."""
        self.upstream_client: UpstreamClient | None = None
        self.pipeline: Pipeline | None = None
        self.pool: Any | None = None
        self.listeners = Listeners(settings.limits, self.metrics)
        self.connects = ConnectRouter(self, settings.limits, settings.http_server)
        self.minter: Any | None = None
        self.drift: DriftWatch | None = None
        """Behaviour drift (``spec.drift``); ``None`` without a drift section."""
        self.metrics.registry.register(DriftCollector(lambda: self.drift))
        self.started_at = 0.0

    @property
    def addresses(self) -> dict[str, tuple[str, int]]:
        """Bound ``(host, port)`` by listener name."""
        return self.listeners.addresses

    @property
    def transparent(self) -> TransparentListener | None:
        """The transparent listener (None: not configured or not started)."""
        return self.listeners.transparent

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open everything and listen. Raises :class:`StartupError` (after closing what
        was opened) for a CA that cannot be used or an address that cannot be bound."""
        self.started_at = time.time()
        try:
            # First: a CA that cannot be used fails the start before anything is opened.
            self.minter = make_minter(self.settings)
            await self._start()
        except StartupError:
            await self.stop()
            raise

    async def _start(self) -> None:
        self.upstream_client = make_upstream_client(self.settings)
        with opening("state_dir", "cannot keep state"):
            self.governor = make_governor(
                self.settings, self.controls.spec, self._prices_for(self.controls.spec)
            )
        self.governor.monitor = self.controls.monitor
        if hasattr(self.audit, "carry_state"):
            # The state is written in the spool's group commit, off the event loop, before
            # the intent that follows a reservation is confirmed (see governor.py).
            self.governor.persist_with(self.audit)
        self.metrics.watch_governor(lambda: self.governor)
        self.drift = self._make_drift(self.controls.spec)
        self.opa = await make_opa(self.settings, self.controls.spec)
        agent = self._agent()
        self.pool = await make_pool(
            self.settings,
            self.controls.spec,
            agent,
            self.governor,
            self.run_id,
            self.metrics.registry,
        )
        self.pipeline = Pipeline(
            controls=self.controls,
            budget=Budget(self.governor),
            audit=self.audit,
            metrics=self.metrics,
            upstream_client=self.upstream_client,
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
        self.pipeline.drift = self.drift
        settings = self.settings
        with binding("explicit", settings.explicit):
            await self.listeners.serve_explicit(
                settings.explicit,
                (
                    explicit_llhttp_server(self, settings.limits.idle_timeout)
                    if settings.http_server == "llhttp"
                    else explicit_server(self, settings.limits.idle_timeout)
                ),
                self.connects,
            )
        if settings.transparent is not None:
            verifier = DestinationVerifier()
            with binding("transparent", settings.transparent):
                await self.listeners.serve_transparent(
                    settings.transparent,
                    (
                        transparent_llhttp_server(self, verifier, settings.limits.idle_timeout)
                        if settings.http_server == "llhttp"
                        else transparent_app(self, verifier)
                    ),
                    upstreams=lambda: UpstreamIndex.from_spec(self.controls.spec),
                    minter=self.minter,
                    gate=ConnectionAudit(self),
                    verifier=verifier,
                )
        with binding("admin", settings.admin):
            await self.listeners.serve_app(
                "admin", create_admin_app(self, self.tokens), settings.admin
            )
        with binding("metrics", settings.metrics):
            await self.listeners.serve_app(
                "metrics", metrics_app(self.metrics.exposed), settings.metrics
            )
        self.watcher.start()

    async def stop(self) -> None:
        await self.watcher.stop()
        await self.listeners.close()
        if self.pipeline is not None:
            await self.pipeline.drain()
        if self.pool is not None:
            await self.pool.close()
        if self.opa is not None:
            await self.opa.close()
        if self.upstream_client is not None:
            await self.upstream_client.close()
        if self.drift is not None:
            self.drift.close()  # its open windows too
            self.drift = None
        if self._audit_given is None:
            await self.audit.close()

    # ------------------------------------------------------------------ policy and state

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
            self.opa = await make_opa(self.settings, spec)
            if self.pipeline is not None:
                self.pipeline.opa = self.opa
        if self.governor is not None:
            self._reload_prices()
            self.governor.update_engine(make_engine(spec, self._prices_for(spec)))
            self.governor.monitor = controls.monitor
            self._apply_drift(spec)
        self.controls = controls
        if self.pipeline is not None:
            self.pipeline.controls = controls

    def _make_drift(self, spec: GovernancePolicySpec) -> DriftWatch | None:
        """The drift stage a policy asks for, its state next to the budget state."""
        if spec.drift is None:
            return None
        a = self.settings.agent
        state_dir = self.settings.state_dir
        return DriftWatch(
            spec.drift,
            agent=f"{a.namespace}/{a.workload}" if a.workload else "agent",
            governor=lambda: self.governor,
            state_path=state_dir / "drift-state" if state_dir is not None else None,
            on_would_halt=self.metrics.would_refuse.labels(
                "halt", BEHAVIOUR_DRIFT, FailureType.OVERRISK.value
            ).inc,
        )

    def _apply_drift(self, spec: GovernancePolicySpec) -> None:
        """A reloaded policy's ``spec.drift``: kept baselines, new settings; removed: the
        state is saved and the stage stops (the file stays for a later policy)."""
        if spec.drift is None:
            if self.drift is not None:
                self.drift.close()
            self.drift = None
        elif self.drift is None:
            self.drift = self._make_drift(spec)
        else:
            self.drift.update_policy(spec.drift)
        if self.pipeline is not None:
            self.pipeline.drift = self.drift

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
            "enforcement": "monitor" if self.controls.monitor else "enforce",
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
        halt = self.governor.snapshot().get("halt") or {}
        decision = self.governor.reset(time.time(), actor)
        self.run_id = self._store_run_id(_new_run_id())
        if self.pipeline is not None:
            self.pipeline.agent = self._agent()
            self.pipeline.metrics.flow_value_fill.set(0)  # the new run's filter is empty
        # Resetting a drift halt accepts the new behaviour: the baselines start over.
        rebaselined = self.drift is not None and self.drift.on_reset(halt.get("code"))
        return {
            "reset": True,
            "run_id": self.run_id,
            "decision": decision.to_dict(),
            "drift_rebaselined": rebaselined,
        }

    def drift_status(self) -> dict[str, Any] | None:
        """The drift stage's state (``None``: the policy has no ``spec.drift``)."""
        return None if self.drift is None else self.drift.snapshot()

    async def rebaseline_drift(self, actor: str) -> dict[str, Any] | None:
        """Forget the drift baselines: an operator accepted the agent's new behaviour."""
        if self.drift is None:
            return None
        log.warning("drift baselines reset by %s", actor)
        self.drift.rebaseline()
        return {"rebaselined": True, "actor": actor}

    async def approve_flow(self, approval: str, actor: str) -> dict[str, Any] | None:
        """Approve one call held by a ``spec.flows`` approval rule (None: no such id)."""
        pipeline = self.pipeline
        if pipeline is None:
            return None
        pipeline.flow_taint.bind(self.run_id)  # an id of a run before a reset is void
        if not pipeline.flow_taint.approve(approval, actor):
            return None
        return {"approved": True, "approval": approval, "actor": actor, "run_id": self.run_id}
