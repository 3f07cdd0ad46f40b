"""The operator's GovernancePolicy handlers: each event (and a bounded resync loop) renders
the policy, delivers or lifts its halt, and writes its status and Events."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

import kopf

from haltgate.operator import (
    apierrors,
    cluster,
    events,
    halts,
    haltview,
    injection,
    policies,
)
from haltgate.operator.handler_shared import (
    GROUP,
    VERSION,
    HaltBook,
    handled_marker,
    short_error,
    status_changes,
)

logger = logging.getLogger("haltgate.operator")


def register(
    registry: kopf.OperatorRegistry,
    book: HaltBook,
    background: list[Callable[[], Coroutine[Any, Any, None]]],
) -> None:
    """The GovernancePolicy event handler into ``registry``; its resync loop into ``background``."""
    rt, session_box = book.rt, book.session_box
    note_pending, post_delivery_errors = book.note_pending, book.post_delivery_errors

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
                logger.warning("deployment %s/%s: %s", namespace, w.name, short_error(e))
                return None
        return {
            "apiVersion": w.api_version,
            "kind": w.kind,
            "metadata": {"name": w.name, "namespace": namespace, "uid": uid},
        }

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
            {pod: why for (ns, pod), why in book.pending_halts.items() if ns == namespace},
            list(old_status.get("halts") or []),
            now,
        )
        wanted["haltedAgents"] = haltview.halted_count(wanted["halts"])
        changed = status_changes(old_status, wanted)
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
        if memo.get("handled") == handled_marker(body):
            return  # our own status write, or another status-only change
        await sync_policy(body, logger)
        memo["handled"] = handled_marker(body)
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
                    logger.warning("policy %s/%s read failed: %s", *key, short_error(e))
                    continue
                known_policies[key] = (body, memo)
                # Often while a halt is on or being lifted (new pods, failed deliveries);
                # otherwise every status_resync_seconds (matched workloads): listing pods is
                # the expensive part.
                halting = bool(handled_marker(body)[1])
                status = body.get("status") or {}
                lifting = bool(status.get("haltedAgents") or status.get("halts"))
                due = (
                    time.monotonic() - memo.get("last_full_sync", 0.0)
                    >= rt.settings.status_resync_seconds
                ) or key in book.stale_policies
                book.stale_policies.discard(key)
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
                        short_error(e),
                    )

    background.append(resync_policies)
