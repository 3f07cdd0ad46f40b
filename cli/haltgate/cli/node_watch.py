"""``haltgate node agent``: the DaemonSet process; the apiserver side of the node agent.

One thread lists and watches the pods of this node only (field selector
``spec.nodeName=NODE``, the node's name from the downward API), relisting when the watch
expires; the main thread feeds what it sees to :class:`haltgate.cli.node_agent.NodeAgent`
and runs its ticks. The API rights it needs are get/list/watch on pods and create on
events (charts/haltgate/templates/node-agent-rbac.yaml), nothing else.

Exit codes: 0 stopped; 1 the watch could not be kept up; 2 usage error.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import click
import yaml

from haltgate.cli.node_agent import COMPONENT, AgentSettings, NodeAgent, rule_config
from haltgate.cli.node_health import Health, serve
from haltgate.sidecar import iptables as rules

log = logging.getLogger("haltgate.node.watch")

WATCH_TIMEOUT_SECONDS = 240
"""Server-side bound of one watch request; the list-then-watch starts again after it."""
REQUEST_TIMEOUT_SECONDS = 30.0
BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)
MAX_FAILURES = 30
"""Consecutive failed list/watch attempts before the agent exits (the kubelet restarts it)."""

Item = tuple[str, Any]
"""("SYNC", [pods]) after a list, or (event type, pod) from the watch."""


def field_selector(node_name: str) -> str:
    return f"spec.nodeName={node_name}"


def watch_pods(core: Any, node_name: str, sink: queue.Queue[Item], stop: threading.Event) -> None:
    """List, then watch, this node's pods into ``sink`` until ``stop``; raises after
    MAX_FAILURES consecutive failures."""
    from kubernetes import watch
    from kubernetes.client.exceptions import ApiException

    selector = field_selector(node_name)
    failures = 0
    while not stop.is_set():
        try:
            resp = core.list_pod_for_all_namespaces(
                field_selector=selector,
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT_SECONDS,
            )
            listing = json.loads(resp.data)
            sink.put(("SYNC", list(listing.get("items") or [])))
            version = str((listing.get("metadata") or {}).get("resourceVersion") or "")
            failures = 0
            stream = watch.Watch().stream(
                core.list_pod_for_all_namespaces,
                field_selector=selector,
                resource_version=version,
                allow_watch_bookmarks=True,
                timeout_seconds=WATCH_TIMEOUT_SECONDS,
                # A connection that died silently must not hang the watch forever.
                _request_timeout=WATCH_TIMEOUT_SECONDS + 30,
            )
            for event in stream:
                if stop.is_set():
                    return
                kind = str(event.get("type"))
                obj = event.get("raw_object")
                if kind in ("ADDED", "MODIFIED", "DELETED") and isinstance(obj, dict):
                    sink.put((kind, obj))
        except ApiException as e:
            if e.status == 410:
                continue  # the watch expired: list again at once
            failures += 1
            log.warning("pod watch on %s failed (%s): %s", node_name, e.status, e.reason)
        except Exception as e:  # network errors of every kind: retry, bounded
            failures += 1
            log.warning("pod watch on %s failed: %s", node_name, e)
        if failures >= MAX_FAILURES:
            raise RuntimeError(f"pod watch failed {failures} times in a row")
        if failures:
            stop.wait(BACKOFF_SECONDS[min(failures, len(BACKOFF_SECONDS)) - 1])


def event_poster(core: Any, node_name: str) -> Any:
    """An EventSink posting core/v1 Events through ``core`` (failures are logged)."""
    from haltgate.operator.events import event_body

    def post(
        pod: Mapping[str, Any], type_: Literal["Normal", "Warning"], reason: str, message: str
    ) -> None:
        body = event_body(
            {"apiVersion": "v1", "kind": "Pod", **pod}, type_, reason, message, _now()
        )
        body["source"] = {"component": COMPONENT, "host": node_name}
        body["reportingComponent"] = COMPONENT
        body["reportingInstance"] = node_name
        try:
            core.create_namespaced_event(
                body["metadata"]["namespace"], body, _request_timeout=REQUEST_TIMEOUT_SECONDS
            )
        except Exception as e:
            log.warning("cannot post event %s: %s", reason, e)

    return post


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def run(
    agent: NodeAgent,
    core: Any,
    stop: threading.Event,
    *,
    tick_seconds: float = 0.5,
    resync_seconds: float = 60.0,
    health: Health | None = None,
) -> None:
    """The agent's main loop until ``stop`` (or the watch gives up: RuntimeError)."""
    items: queue.Queue[Item] = queue.Queue()
    failed: list[BaseException] = []

    def watcher() -> None:
        try:
            watch_pods(core, agent.settings.node_name, items, stop)
        except BaseException as e:
            failed.append(e)

    thread = threading.Thread(target=watcher, name="haltgate-pod-watch", daemon=True)
    thread.start()
    next_resync = time.monotonic() + resync_seconds
    synced = False
    while not stop.is_set():
        if failed:
            raise RuntimeError(f"the pod watch stopped: {failed[0]}")
        try:
            first = items.get(timeout=tick_seconds)
        except queue.Empty:
            first = None
        batch = [first] if first is not None else []
        while True:
            try:
                batch.append(items.get_nowait())
            except queue.Empty:
                break
        now = time.monotonic()
        for kind, payload in batch:
            if kind == "SYNC":
                agent.replace_all(payload, now)
                synced = True
            else:
                agent.observe(kind, payload, now)
        if now >= next_resync:
            agent.resync()
            next_resync = now + resync_seconds
        agent.tick(now)
        if health is not None:
            health.beat(synced=synced, watch_alive=thread.is_alive() and not failed)


def _nameservers(path: Path) -> tuple[str, ...]:
    return tuple(rules.system_resolvers(path))


@click.command(name="agent")
@click.option(
    "--node-name",
    envvar="NODE_NAME",
    required=True,
    help="This node's name (the DaemonSet sets NODE_NAME from spec.nodeName).",
)
@click.option(
    "--injection-config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The operator's injection settings (the chart's ConfigMap); default: built-in.",
)
@click.option(
    "--injection-template",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The operator's injection template; default: the one shipped.",
)
@click.option(
    "--cluster-dns",
    "cluster_dns",
    multiple=True,
    help="Resolver of ClusterFirst pods (repeatable); default: this pod's own resolv.conf.",
)
@click.option(
    "--node-resolv-conf",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("/proc/1/root/etc/resolv.conf"),
    show_default=True,
    help="The node's resolv.conf (pods with dnsPolicy: Default), read through hostPID.",
)
@click.option(
    "--backend",
    type=click.Choice([b.value for b in rules.Backend]),
    default=rules.Backend.AUTO.value,
    show_default=True,
    help="iptables flavour used inside pod namespaces.",
)
@click.option(
    "--pending-grace",
    type=click.FloatRange(min=0),
    default=20.0,
    show_default=True,
    help="Seconds without a process of a pod before a RedirectPending Event.",
)
@click.option(
    "--resync",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="Seconds between looks at every pod (a namespace replaced without a pod event).",
)
@click.option(
    "--health-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port of /healthz and /readyz (ready once the node's pods are listed); 0: none.",
)
@click.option("--verbose", is_flag=True, help="Debug logging.")
def agent(
    node_name: str,
    injection_config: Path | None,
    injection_template: Path | None,
    cluster_dns: tuple[str, ...],
    node_resolv_conf: Path,
    backend: str,
    pending_grace: float,
    resync: float,
    health_port: int,
    verbose: bool,
) -> None:
    """Install the egress rules of this node's node-mode pods (injection.redirect: node).

    Runs as the chart's DaemonSet (nodeAgent.enabled): hostPID, CAP_NET_ADMIN, CAP_SYS_ADMIN
    and CAP_SYS_PTRACE. Watches the pods of NODE_NAME, enters each injected pod's network
    namespace and installs the rules its init container would have; the pod's
    capability-free verify step keeps its agent from starting until they are in place.
    """
    from haltgate.operator import injection, node_redirect
    from haltgate.operator.injection_template import InjectionTemplate, default_template_path

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        raw: dict[str, Any] = {}
        if injection_config is not None:
            loaded = yaml.safe_load(injection_config.read_text(encoding="utf-8")) or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{injection_config}: must be a mapping")
            raw = loaded
        config = injection.InjectionConfig.from_mapping(raw)
        template = InjectionTemplate.load(injection_template or default_template_path())
        base_args = node_redirect.template_apply_args(config, template)
        settings = AgentSettings(
            node_name=node_name,
            base_args=tuple(base_args),
            cluster_dns=cluster_dns or _nameservers(Path("/etc/resolv.conf")),
            node_dns=_nameservers(node_resolv_conf),
            backend=rules.Backend(backend),
            pending_grace_seconds=pending_grace,
        )
        # Refuse a template or resolver the agent cannot turn into rules now, not per pod.
        for server in (*settings.cluster_dns, *settings.node_dns):
            try:
                rules.RuleConfig(proxy_uid=config.proxy_uid, dns_servers=(server,))
            except ValueError as e:
                raise ValueError(f"--cluster-dns / node resolver {server!r}: not an IP") from e
        rule_config([*base_args, "--no-dns"])
    except (ValueError, TypeError, OSError) as e:
        raise click.UsageError(f"haltgate node agent: {e}") from e
    if not settings.cluster_dns:
        log.warning("no cluster DNS resolver known: ClusterFirst pods get no DNS")

    from kubernetes import client
    from kubernetes import config as kubeconfig

    try:
        kubeconfig.load_incluster_config()
    except kubeconfig.ConfigException:
        kubeconfig.load_kube_config()
    core = client.CoreV1Api(client.ApiClient())
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info(
        "node agent on %s: rules from %s, cluster DNS %s",
        node_name,
        " ".join(base_args),
        ", ".join(settings.cluster_dns) or "none",
    )
    health = Health()
    if health_port:
        serve(health, "0.0.0.0", health_port)
    try:
        run(
            NodeAgent(settings, event_poster(core, node_name)),
            core,
            stop,
            resync_seconds=resync,
            health=health,
        )
    except RuntimeError as e:
        click.echo(f"haltgate node agent: {e}", err=True)
        raise SystemExit(1) from e
