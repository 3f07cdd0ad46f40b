"""The operator's workload handlers: Deployments, StatefulSets and DaemonSets carry their
opt-in into the pod template, and a halted Deployment's pods (new ones too) get its halt."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import kopf

from haltgate.operator import (
    apierrors,
    events,
    halts,
    injection,
    selectors,
    workloads,
)
from haltgate.operator.handler_shared import (
    HaltBook,
    short_error,
)

logger = logging.getLogger("haltgate.operator")


def register(
    registry: kopf.OperatorRegistry,
    book: HaltBook,
    background: list[Callable[[], Coroutine[Any, Any, None]]],
) -> None:
    """The workload event handlers into ``registry``; the halted-Deployment loop into
    ``background``."""
    rt, session_box = book.rt, book.session_box
    note_pending, post_delivery_errors, mark_stale = (
        book.note_pending,
        book.post_delivery_errors,
        book.mark_stale,
    )

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
            log.warning(
                f"cannot carry haltgate annotations into the pod template: {short_error(e)}"
            )
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
                    logger.warning("deployment halt resync failed: %s", short_error(e))

    background.append(resync_deployments)
