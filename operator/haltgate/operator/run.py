"""``haltgate operator``: kopf, embedded, with haltgate's handlers in their own registry.

Start-up order: webhook TLS (self-managed or cert-manager files) -> webhook server settings
-> webhook configurations (caBundle, matchConditions) -> kopf's watchers and timers. Every
replica serves the webhooks; with peering only the highest-priority replica reconciles.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
import kopf
from prometheus_client import start_http_server

from haltgate.operator import (
    cluster,
    injection_template,
    metrics,
    policy_handlers,
    pool_handlers,
    webhook_tls,
    workload_handlers,
)
from haltgate.operator.handler_shared import HaltBook
from haltgate.operator.runtime import Runtime
from haltgate.operator.settings import OperatorSettings

logger = logging.getLogger("haltgate.operator")
_STATE_PREFIX = "operator.haltgate.dev"


# ----------------------------------------------------------------------------- handlers
def build_registry(
    rt: Runtime,
    session_box: dict[str, aiohttp.ClientSession],
    background: list[Callable[[], Coroutine[Any, Any, None]]],
) -> kopf.OperatorRegistry:
    """All handlers of the operator, in a registry of their own (no import-time globals).

    Loops that must run next to kopf are appended to ``background``.
    """
    registry = kopf.OperatorRegistry()

    @kopf.on.login(id="login", registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # Same sources as haltgate's own client: in-cluster account, else the kubeconfig.
        return kopf.login_via_client(**kwargs)

    # Event handlers and loops of our own rather than kopf's change handlers and timers:
    # those write their state into annotations and (timers) put finalizers on objects, so a
    # policy could not be deleted while the operator is down. haltgate needs neither: every
    # pass recomputes from the cluster, and the pods' records hold the halt state.
    book = HaltBook(rt, session_box)
    policy_handlers.register(registry, book, background)
    workload_handlers.register(registry, book, background)
    pool_handlers.register(registry, book, background)
    return registry


# ----------------------------------------------------------------------------- main
def configure_kopf(settings: kopf.OperatorSettings) -> None:
    # The CRD status schemas are structural: kopf's own bookkeeping goes to annotations.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=_STATE_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=_STATE_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{_STATE_PREFIX}/finalizer"
    # Kubernetes Events only for warnings and errors (e.g. an invalid stored policy).
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 30


async def run(opts: OperatorSettings, *, stop: asyncio.Event | None = None) -> None:
    """Run the operator until cancelled or ``stop`` is set."""
    template = injection_template.InjectionTemplate.load(opts.template_path)
    m = metrics.OperatorMetrics.create()
    rt = Runtime(
        settings=opts, cluster=cluster.Cluster.from_environment(), template=template, metrics=m
    )
    start_http_server(opts.metrics_port, registry=m.registry)

    kopf_settings = kopf.OperatorSettings()
    configure_kopf(kopf_settings)
    tls = await webhook_tls.prepare_tls(rt)
    server = await webhook_tls.start_webhook_server(rt, tls)
    timeout = aiohttp.ClientTimeout(total=opts.admin_timeout_seconds)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(rt.cluster.close)
        stack.push_async_callback(server.cleanup)
        if opts.webhook.manage_configurations:
            await webhook_tls.apply_webhook_configurations(rt, tls.ca_bundle)
        session = await stack.enter_async_context(aiohttp.ClientSession(timeout=timeout))
        loops: list[Callable[[], Coroutine[Any, Any, None]]] = []
        registry = build_registry(rt, {"session": session}, loops)
        loops.append(lambda: webhook_tls.renew_forever(rt, tls))
        tasks = [asyncio.create_task(loop()) for loop in loops]
        stop_flag: asyncio.Event = stop if stop is not None else asyncio.Event()
        try:
            await kopf.operator(
                registry=registry,
                settings=kopf_settings,
                clusterwide=True,
                standalone=opts.peering is None,
                peering_name=opts.peering,
                priority=opts.priority,
                liveness_endpoint=f"http://{opts.health_host}:{opts.health_port}/healthz",
                stop_flag=stop_flag,
            )
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
