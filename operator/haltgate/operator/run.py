"""``haltgate operator``: kopf, embedded, with haltgate's handlers in their own registry.

Start-up order: webhook TLS (self-managed or cert-manager files) -> webhook server settings
-> webhook configurations (caBundle, matchConditions) -> kopf's watchers and timers. Every
replica serves the webhooks; with peering only the highest-priority replica reconciles.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import logging
import ssl
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import kopf
from aiohttp import web
from prometheus_client import start_http_server

from haltgate.operator import (
    apierrors,
    certs,
    cluster,
    events,
    halts,
    haltview,
    injection,
    injection_template,
    metrics,
    policies,
    pools,
    selectors,
    webhookconfig,
    webhooks,
    workloads,
)
from haltgate.operator.runtime import Runtime
from haltgate.operator.settings import OperatorSettings

logger = logging.getLogger("haltgate.operator")
_STATE_PREFIX = "operator.haltgate.dev"
_TLS_CHECK_SECONDS = 3600.0
GROUP, VERSION = "haltgate.dev", "v1alpha1"


# ----------------------------------------------------------------------------- TLS
def _secret_to_tls(secret: Mapping[str, Any]) -> certs.WebhookTLS | None:
    data = secret.get("data") or {}
    try:
        raw = {k: base64.b64decode(data[k]) for k in ("ca.crt", "ca.key", "tls.crt", "tls.key")}
    except KeyError:
        return None
    # tls.crt holds leaf + CA: keep only the first certificate as the leaf.
    leaf_pem = (
        raw["tls.crt"].split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n"
    )
    return certs.WebhookTLS(
        certs.KeyPair(raw["ca.crt"], raw["ca.key"]), certs.KeyPair(leaf_pem, raw["tls.key"])
    )


def _tls_to_secret(name: str, tls: certs.WebhookTLS) -> dict[str, Any]:
    def b64(x: bytes) -> str:
        return base64.b64encode(x).decode()

    return {
        "metadata": {"name": name, "labels": dict(policies.MANAGED_LABELS)},
        "type": "Opaque",
        "data": {
            "ca.crt": b64(tls.ca.cert_pem),
            "ca.key": b64(tls.ca.key_pem),
            "tls.crt": b64(tls.leaf.cert_pem + tls.ca.cert_pem),
            "tls.key": b64(tls.leaf.key_pem),
        },
    }


async def ensure_self_managed_tls(rt: Runtime, hosts: list[str]) -> certs.WebhookTLS:
    """Load the shared webhook TLS Secret, renewing or creating it when needed."""
    ns, name = rt.settings.namespace, rt.settings.webhook.tls_secret
    for _ in range(5):  # bounded: another replica may be writing the same Secret
        current: certs.WebhookTLS | None = None
        version: str | None = None
        try:
            secret = await rt.cluster.read_secret(ns, name)
            current = _secret_to_tls(secret)
            version = secret["metadata"]["resourceVersion"]
        except apierrors.NotFound:
            pass
        tls, changed = certs.ensure_webhook_tls(current, hosts, now=dt.datetime.now(dt.UTC))
        if not changed:
            return tls
        body = _tls_to_secret(name, tls)
        try:
            if version is None:
                await rt.cluster.create_secret(ns, body)
            else:
                body["metadata"]["resourceVersion"] = version
                await rt.cluster.replace_secret(ns, name, body)
            logger.info(
                "webhook serving certificate %s (valid until %s)",
                "created" if version is None else "renewed",
                tls.leaf.not_after,
            )
            return tls
        except apierrors.Conflict:
            continue
    raise RuntimeError(f"webhook TLS Secret {ns}/{name}: kept changing, gave up")


@dataclass(slots=True)
class WebhookTLSFiles:
    """The serving certificate files and the live server context that loaded them."""

    certfile: Path
    keyfile: Path
    ca_bundle: bytes
    context: ssl.SSLContext
    loaded: tuple[float, float] = (0.0, 0.0)

    def reload_if_changed(self) -> bool:
        """Load changed files into the live context (new handshakes use them at once)."""
        stamp = (self.certfile.stat().st_mtime, self.keyfile.stat().st_mtime)
        if stamp == self.loaded:
            return False
        self.context.load_cert_chain(str(self.certfile), str(self.keyfile))
        self.loaded = stamp
        return True


async def _prepare_tls(rt: Runtime) -> WebhookTLSFiles:
    """Serving certificate: cert-manager's files, or self-managed ones (shared Secret)."""
    wh = rt.settings.webhook
    if wh.tls_dir is not None:
        certfile, keyfile, cafile = (
            wh.tls_dir / "tls.crt",
            wh.tls_dir / "tls.key",
            wh.tls_dir / "ca.crt",
        )
        ca_bundle = cafile.read_bytes()
    else:
        hosts = webhookconfig.hosts_for(
            wh.url, None if wh.url else wh.service_name, rt.settings.namespace
        )
        tls = await ensure_self_managed_tls(rt, hosts)
        certfile, keyfile, _ = tls.write(wh.work_dir / "tls")
        ca_bundle = tls.ca.cert_pem
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    files = WebhookTLSFiles(certfile, keyfile, ca_bundle, ctx)
    files.reload_if_changed()
    return files


async def _start_webhook_server(rt: Runtime, tls: WebhookTLSFiles) -> web.AppRunner:
    wh = rt.settings.webhook
    # No access log: one line per pod creation is noise; the metrics count every review.
    runner = web.AppRunner(webhooks.create_app(rt), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, wh.listen_host, wh.port, ssl_context=tls.context, reuse_address=True)
    await site.start()
    logger.info("webhook server listening on https://%s:%d", wh.listen_host, wh.port)
    return runner


async def apply_webhook_configurations(rt: Runtime, ca_bundle: bytes) -> None:
    wh = rt.settings.webhook
    endpoint = webhookconfig.Endpoint(
        ca_bundle=ca_bundle,
        url=wh.url,
        service_name=None if wh.url else wh.service_name,
        service_namespace=rt.settings.namespace,
        service_port=wh.service_port,
    )

    def owned(config: dict[str, Any]) -> dict[str, Any]:
        return webhookconfig.helm_owned(config, wh.helm_release, rt.settings.namespace)

    await rt.cluster.apply_webhook_configuration(
        "mutating", owned(webhookconfig.mutating_configuration(endpoint, rt.settings.injection))
    )
    await rt.cluster.apply_webhook_configuration(
        "validating", owned(webhookconfig.validating_configuration(endpoint, rt.settings.injection))
    )
    logger.info(
        "webhook configurations %s and %s applied",
        webhookconfig.MUTATING_NAME,
        webhookconfig.VALIDATING_NAME,
    )


async def _renew_forever(rt: Runtime, tls: WebhookTLSFiles) -> None:
    """Keep the serving certificate fresh: renew the self-managed leaf before expiry, or
    pick up the files cert-manager rotates; the live server context reloads them."""
    wh = rt.settings.webhook
    hosts = webhookconfig.hosts_for(
        wh.url, None if wh.url else wh.service_name, rt.settings.namespace
    )
    interval = _TLS_CHECK_SECONDS if wh.tls_dir is None else 60.0
    while True:
        await asyncio.sleep(interval)
        try:
            if wh.tls_dir is None:
                (await ensure_self_managed_tls(rt, hosts)).write(wh.work_dir / "tls")
            if tls.reload_if_changed():
                logger.info("webhook serving certificate reloaded")
        except Exception:  # keep serving the current certificate; try again later
            logger.exception("webhook certificate renewal failed")


def _short(e: BaseException) -> str:
    """One line for a log: API errors carry whole HTTP dumps."""
    body = getattr(e, "body", None)
    text = body if isinstance(body, str) and body else str(e)
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"[:300]


# ----------------------------------------------------------------------------- status
def _changed(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """Only the status fields that differ, so resyncs do not write every few seconds."""
    out: dict[str, Any] = {}
    for k, v in wanted.items():
        if k == "conditions":
            strip = [{kk: vv for kk, vv in c.items() if kk != "lastTransitionTime"} for c in v]
            have = [
                {kk: vv for kk, vv in c.items() if kk != "lastTransitionTime"}
                for c in current.get(k) or []
            ]
            if strip != have:
                out[k] = v
        elif current.get(k) != v:
            out[k] = v
    return out


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

    # Halts requested but not delivered yet, by (namespace, pod): {source: reason}. Every
    # source's sync updates its own part; the policy's status shows them as Pending.
    pending_halts: dict[tuple[str, str], dict[str, str]] = {}

    def note_pending(
        namespace: str, source: str, result: halts.SyncResult | None, reason: str | None
    ) -> None:
        waiting = set(result.pending) if result is not None and reason else set()
        for key in [k for k in pending_halts if k[0] == namespace]:
            if key[1] not in waiting:
                pending_halts[key].pop(source, None)
                if not pending_halts[key]:
                    del pending_halts[key]
        for pod in waiting:
            pending_halts.setdefault((namespace, pod), {})[source] = str(reason)

    async def post_delivery_errors(obj: Mapping[str, Any], errors: list[str]) -> None:
        """One Warning per new set of delivery errors on ``obj`` (retries repeat them)."""
        meta = obj.get("metadata") or {}
        key = (str(obj.get("kind")), meta.get("namespace", ""), meta.get("name", ""))
        text = "; ".join(errors)
        if text and delivery_errors.get(key) != text:
            await events.post(rt.cluster, obj, "Warning", "HaltDeliveryFailed", text)
        delivery_errors[key] = text

    async def admin_token(namespace: str) -> str | None:
        try:
            return (
                (
                    await rt.cluster.read_secret_key(
                        namespace,
                        rt.settings.injection.admin_token_secret,
                        injection.ADMIN_TOKEN_KEY,
                    )
                )
                .decode()
                .strip()
            )
        except apierrors.NotFound:
            return None

    async def workload_object(
        namespace: str, ref: str, pods: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any] | None:
        """The object an Event about a workload points at (its uid included)."""
        pod = next((p for p in pods if haltview.workload_of(p).ref == ref), None)
        if pod is None:
            return None
        w = haltview.workload_of(pod)
        uid = w.uid
        if uid is None and w.kind == "Deployment":
            try:
                uid = (await rt.cluster.read_deployment(namespace, w.name))["metadata"]["uid"]
            except Exception as e:  # an Event is best effort
                logger.warning("deployment %s/%s: %s", namespace, w.name, _short(e))
                return None
        return {
            "apiVersion": w.api_version,
            "kind": w.kind,
            "metadata": {"name": w.name, "namespace": namespace, "uid": uid},
        }

    def mark_stale(namespace: str, pods: list[dict[str, Any]]) -> None:
        for pod in pods:
            policy = ((pod.get("metadata") or {}).get("labels") or {}).get(injection.LABEL_POLICY)
            if policy:
                stale_policies.add((namespace, policy))

    async def sync_policy(body: Mapping[str, Any], log: Any) -> None:
        meta = body.get("metadata") or {}
        namespace, name = meta["namespace"], meta["name"]
        pods = await rt.cluster.list_pods(namespace, f"{injection.LABEL_POLICY}={name}")
        wanted: dict[str, Any] = {}
        await policies.reconcile(rt, body, wanted, log, pods)
        reason = (meta.get("annotations") or {}).get(halts.ANNOTATION_HALT)
        source = f"GovernancePolicy/{name}"
        result = await halts.sync(
            rt, session_box["session"], namespace, source, pods, reason or None
        )
        note_pending(namespace, source, result, reason or None)
        for err in result.errors:
            log.warning(f"halt delivery: {err}")
        if result.halted or reason or any(halts.halted_sources(p) for p in pods):
            # The records changed (or may have): read the pods again for the status.
            pods = await rt.cluster.list_pods(namespace, f"{injection.LABEL_POLICY}={name}")
        answers: dict[str, haltview.Probe] = {}
        token = await admin_token(namespace) if any(map(haltview.reachable, pods)) else None
        if token:
            answers, probe_errors = await haltview.probe(
                session_box["session"], pods, token, rt.settings.injection.admin_port
            )
            for pod_name, err in probe_errors.items():
                log.debug(f"status of pod {pod_name}: {err}")
        old_status = body.get("status") or {}
        now = policies.now_rfc3339()
        wanted["halts"] = haltview.entries(
            pods,
            answers,
            {pod: why for (ns, pod), why in pending_halts.items() if ns == namespace},
            list(old_status.get("halts") or []),
            now,
        )
        wanted["haltedAgents"] = haltview.halted_count(wanted["halts"])
        changed = _changed(old_status, wanted)
        if changed:
            await rt.cluster.patch_status(cluster.POLICY_PLURAL, namespace, name, changed)
            for type_, why, message in policies.transitions(old_status, wanted):
                await events.post(rt.cluster, body, type_, why, message)
            present = {str((p.get("metadata") or {}).get("name", "")) for p in pods}
            previous_halts = list(old_status.get("halts") or [])
            for change in haltview.transitions(previous_halts, wanted["halts"], present):
                await events.post(rt.cluster, body, change.type, change.reason, change.message)
                target = await workload_object(namespace, change.workload, pods)
                if target is not None:
                    await events.post(
                        rt.cluster,
                        target,
                        change.type,
                        change.reason,
                        f"{change.message} (GovernancePolicy {name})",
                    )
        await post_delivery_errors(body, result.errors)

    delivery_errors: dict[tuple[str, str, str], str] = {}
    # Policies whose pods' halts changed from elsewhere (a Deployment, a pool): fully
    # synced at the next resync so their status shows it at once.
    stale_policies: set[tuple[str, str]] = set()

    def _marker(body: Mapping[str, Any]) -> tuple[Any, Any]:
        meta = body.get("metadata") or {}
        return meta.get("generation"), (meta.get("annotations") or {}).get(halts.ANNOTATION_HALT)

    # Event handlers and a loop of our own rather than kopf's change handlers and timers:
    # those write their state into annotations and (timers) put finalizers on objects, so a
    # policy could not be deleted while the operator is down. haltgate needs neither: every
    # pass recomputes from the cluster, and the pods' records hold the halt state.
    known_policies: dict[tuple[str, str], tuple[dict[str, Any], kopf.Memo]] = {}

    @kopf.on.event(GROUP, VERSION, "governancepolicies", id="policy", registry=registry)
    async def policy_event(
        type: str | None, body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any
    ) -> None:
        meta = body.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if type == "DELETED":
            known_policies.pop(key, None)
            return
        known_policies[key] = (dict(body), memo)
        if memo.get("handled") == _marker(body):
            return  # our own status write, or another status-only change
        await sync_policy(body, logger)
        memo["handled"] = _marker(body)
        memo["last_full_sync"] = time.monotonic()

    async def resync_policies() -> None:
        while True:
            await asyncio.sleep(rt.settings.halt_resync_seconds)
            for key, (_, memo) in list(known_policies.items()):
                # Read afresh: on a standby replica (peering) the watch is paused and the last
                # event's body may be long stale, e.g. still carry a lifted halt.
                try:
                    body = await rt.cluster.read_custom(cluster.POLICY_PLURAL, *key)
                except apierrors.NotFound:
                    known_policies.pop(key, None)
                    continue
                except Exception as e:
                    logger.warning("policy %s/%s read failed: %s", *key, _short(e))
                    continue
                known_policies[key] = (body, memo)
                # Often while a halt is on or being lifted (new pods, failed deliveries);
                # otherwise every status_resync_seconds (matched workloads): listing pods is
                # the expensive part.
                halting = bool(_marker(body)[1])
                status = body.get("status") or {}
                lifting = bool(status.get("haltedAgents") or status.get("halts"))
                due = (
                    time.monotonic() - memo.get("last_full_sync", 0.0)
                    >= rt.settings.status_resync_seconds
                ) or key in stale_policies
                stale_policies.discard(key)
                if not (halting or lifting or due):
                    continue
                try:
                    await sync_policy(body, logger)
                    memo["last_full_sync"] = time.monotonic()
                except Exception as e:  # one policy's trouble must not stop the others'
                    meta = body.get("metadata") or {}
                    logger.warning(
                        "policy %s/%s resync failed: %s",
                        meta.get("namespace"),
                        meta.get("name"),
                        _short(e),
                    )

    background.append(resync_policies)

    async def sync_deployment(body: Mapping[str, Any], memo: kopf.Memo, log: Any) -> None:
        meta = body.get("metadata") or {}
        reason = (meta.get("annotations") or {}).get(halts.ANNOTATION_HALT) or None
        first = not memo.get("seen")
        memo["seen"] = True
        # Work only when a halt is on, was on, or we just started (a lift may have happened
        # while the operator was down: the pods' records tell).
        if not (reason or memo.get("halted") or first):
            return
        selector = ((body.get("spec") or {}).get("selector")) or {}
        query = selectors.to_query(selector)
        if not query:
            return  # a Deployment always has a selector; refuse to match every pod
        pods = await rt.cluster.list_pods(meta["namespace"], f"{query},{injection.LABEL_POLICY}")
        source = f"Deployment/{meta['name']}"
        result = await halts.sync(
            rt, session_box["session"], meta["namespace"], source, pods, reason
        )
        for err in result.errors:
            log.warning(f"halt delivery: {err}")
        note_pending(meta["namespace"], source, result, reason)
        mark_stale(meta["namespace"], pods)
        await post_delivery_errors(
            {"apiVersion": "apps/v1", "kind": "Deployment", **body}, result.errors
        )
        memo["halted"] = bool(result.halted or result.pending)

    async def carry_opt_in(kind: str, body: Mapping[str, Any], log: Any) -> None:
        """``haltgate.dev/inject`` (policy, mode) on the workload object -> its pod template
        (docs/operator.md, "Opting in"); removing it undoes what the operator added."""
        meta = body.get("metadata") or {}
        namespace = meta.get("namespace", "")
        if rt.settings.injection.excluded(namespace):
            return
        patch = workloads.carry_patch(body)
        if patch is None:
            return
        try:
            await rt.cluster.patch_template_annotations(kind, namespace, meta["name"], patch)
        except apierrors.NotFound:
            return
        except apierrors.Forbidden:
            # The namespace has not opted in (operator.agentNamespaces): say so where the
            # user looks, on the workload.
            await events.post(
                rt.cluster,
                {"apiVersion": "apps/v1", "kind": kind, **body},
                "Warning",
                "NamespaceNotEnabled",
                f"haltgate may not write in namespace {namespace}: add it to "
                "the chart's operator.agentNamespaces to carry the opt-in "
                "into the pod template",
            )
            return
        except Exception as e:  # the next event of this object tries again
            log.warning(f"cannot carry haltgate annotations into the pod template: {_short(e)}")
            return
        shown = ", ".join(
            f"{k}={v}" if v is not None else f"{k}-" for k, v in sorted(patch.items())
        )
        log.info(f"pod template annotations {shown}")
        await events.post(
            rt.cluster,
            {"apiVersion": "apps/v1", "kind": kind, **body},
            "Normal",
            "OptInCarried",
            f"pod template annotations set from the {kind}'s own: {shown} (a rollout)",
        )

    @kopf.on.event("apps", "v1", "deployments", id="halt", registry=registry)
    async def deployment_event(
        body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any
    ) -> None:
        meta = body.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        await carry_opt_in("Deployment", body, logger)
        await sync_deployment(body, memo, logger)
        if memo.get("halted"):
            halted_deployments[key] = (dict(body), memo)
        else:
            halted_deployments.pop(key, None)

    @kopf.on.event("apps", "v1", "statefulsets", id="carry-sts", registry=registry)
    async def statefulset_event(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
        await carry_opt_in("StatefulSet", body, logger)

    @kopf.on.event("apps", "v1", "daemonsets", id="carry-ds", registry=registry)
    async def daemonset_event(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
        await carry_opt_in("DaemonSet", body, logger)

    # Not a kopf timer: timers put finalizers on their objects, and haltgate writes to
    # users' workloads only to carry an opt-in they asked for. New pods of a halted
    # Deployment get their halt from this loop.
    halted_deployments: dict[tuple[str, str], tuple[dict[str, Any], kopf.Memo]] = {}

    async def resync_deployments() -> None:
        while True:
            await asyncio.sleep(rt.settings.halt_resync_seconds)
            for key, (_, memo) in list(halted_deployments.items()):
                try:
                    body = await rt.cluster.read_deployment(*key)  # afresh, as for policies
                    halted_deployments[key] = (body, memo)
                    await sync_deployment(body, memo, logger)
                except apierrors.NotFound:
                    halted_deployments.pop(key, None)
                except Exception as e:  # one bad Deployment must not stop the others'
                    logger.warning("deployment halt resync failed: %s", _short(e))

    background.append(resync_deployments)

    known_pools: dict[tuple[str, str], kopf.Memo] = {}

    async def sync_pool(body: Mapping[str, Any], memo: kopf.Memo) -> None:
        wanted, members = await pools.reconcile(rt, body)
        meta = body.get("metadata") or {}
        if rt.settings.pool_dsn:
            try:
                for ev in await pools.sync_database(rt.settings.pool_dsn, body, wanted):
                    await events.post(rt.cluster, body, ev.type, ev.reason, ev.message)
            except Exception as e:  # the database down must not stop the cluster-side halt
                logger.warning("pool database sync failed: %s", _short(e))
        reason = (meta.get("annotations") or {}).get(halts.ANNOTATION_HALT) or None
        if members and (reason or memo.get("halted")):
            pods = await rt.cluster.list_pods(
                meta["namespace"], f"{injection.LABEL_POLICY} in ({','.join(members)})"
            )
            source = f"BudgetPool/{meta['name']}"
            result = await halts.sync(
                rt, session_box["session"], meta["namespace"], source, pods, reason
            )
            for err in result.errors:
                logger.warning("pool halt delivery: %s", err)
            note_pending(meta["namespace"], source, result, reason)
            mark_stale(meta["namespace"], pods)
            await post_delivery_errors(body, result.errors)
            memo["halted"] = bool(result.halted or result.pending)
        changed = _changed(body.get("status") or {}, wanted)
        if changed:
            await rt.cluster.patch_status(
                cluster.POOL_PLURAL, meta["namespace"], meta["name"], changed
            )

    @kopf.on.event(GROUP, VERSION, "budgetpools", id="pool", registry=registry)
    async def pool_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        meta = body.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if type == "DELETED":
            known_pools.pop(key, None)
            return
        known_pools[key] = memo
        if memo.get("handled") == _marker(body):
            return
        await sync_pool(body, memo)
        memo["handled"] = _marker(body)

    async def resync_pools() -> None:
        # Membership changes with the policies, not with the pool: recount now and then;
        # while halted or being lifted, as often as policy halts.
        while True:
            await asyncio.sleep(rt.settings.halt_resync_seconds)
            for key, memo in list(known_pools.items()):
                try:
                    body = await rt.cluster.read_custom(cluster.POOL_PLURAL, *key)
                    halting = bool(_marker(body)[1]) or memo.get("halted")
                    due = (
                        time.monotonic() - memo.get("last_full_sync", 0.0)
                        >= rt.settings.status_resync_seconds
                    )
                    if not (halting or due):
                        continue
                    await sync_pool(body, memo)
                    memo["last_full_sync"] = time.monotonic()
                except apierrors.NotFound:
                    known_pools.pop(key, None)
                except Exception as e:
                    logger.warning("pool resync failed: %s", _short(e))

    background.append(resync_pools)

    async def pool_notifications() -> None:
        # A pool halted or lifted in the database (a cascade, the CLI) shows in its status
        # and Events at once instead of at the next resync. Members are told by the
        # database itself; this is the operator's view only.
        dsn = rt.settings.pool_dsn
        if not dsn:
            return
        import json

        import psycopg

        from haltgate.governance.pool.store import CHANNEL

        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    async for note in conn.notifies():
                        key = str(json.loads(note.payload).get("pool", "")).partition("/")
                        memo = known_pools.get((key[0], key[2]))
                        if memo is None:
                            continue
                        body = await rt.cluster.read_custom(cluster.POOL_PLURAL, key[0], key[2])
                        await sync_pool(body, memo)
            except Exception as e:  # reconnect; the periodic resync covers the gap
                logger.warning("pool notifications: %s", _short(e))
                await asyncio.sleep(rt.settings.halt_resync_seconds)

    background.append(pool_notifications)

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
    tls = await _prepare_tls(rt)
    server = await _start_webhook_server(rt, tls)
    timeout = aiohttp.ClientTimeout(total=opts.admin_timeout_seconds)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(rt.cluster.close)
        stack.push_async_callback(server.cleanup)
        if opts.webhook.manage_configurations:
            await apply_webhook_configurations(rt, tls.ca_bundle)
        session = await stack.enter_async_context(aiohttp.ClientSession(timeout=timeout))
        loops: list[Callable[[], Coroutine[Any, Any, None]]] = []
        registry = build_registry(rt, {"session": session}, loops)
        loops.append(lambda: _renew_forever(rt, tls))
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
