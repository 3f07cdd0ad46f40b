"""External halts (failure type EXTERNAL), delivered to sidecars over their admin API.

``kubectl annotate govpol NAME haltgate.dev/halt="reason"`` halts every agent of the policy;
removing the annotation lifts it. The operator calls ``POST /halt`` (``POST /lift`` to
lift: the run goes on with its id and budgets; a lift is not the new run ``POST /reset``
starts) on each affected sidecar with the namespace's admin token, then records the delivery
on the pod itself (annotation ``haltgate.dev/halted``: JSON ``{source: reason}``). That
record is the durable truth: it survives operator restarts, tells which pods still need a
call, and lets several sources halt one pod without one's lift undoing the other's halt.
Pods not yet reachable (no IP) are retried by the resync timer.

Only HTTP: the operator never imports the sidecar.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from haltgate.operator import apierrors, injection
from haltgate.operator.runtime import Runtime

ANNOTATION_HALT = "haltgate.dev/halt"
"""On a GovernancePolicy: halt its agents with this reason; remove to lift."""
ANNOTATION_HALTED = "haltgate.dev/halted"
"""On a pod, written by the operator: JSON object {source: reason} of delivered halts."""
HALT_CODE = "external_halt"
ACTOR = "haltgate-operator"
_MAX_ERROR = 300  # untrusted response bodies are cut before they reach logs or status


@dataclass(slots=True)
class SyncResult:
    """What one pass of :func:`sync` did."""

    halted: list[str] = field(default_factory=list)
    """Pods halted by this source after the pass."""
    pending: list[str] = field(default_factory=list)
    """Pods that still need a call (not running yet, or the call failed)."""
    errors: list[str] = field(default_factory=list)


def halted_sources(pod: Mapping[str, Any]) -> dict[str, str]:
    """The delivered-halt record of a pod (empty when none or unreadable)."""
    raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_HALTED)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def halt_message(source: str, reason: str) -> str:
    """The message an operator halt carries to the sidecar: ``"<source>: <reason>"``."""
    return f"{source}: {reason}"


def source_of(code: str, message: str) -> str | None:
    """The source named by a halt the operator delivered (its code and :func:`halt_message`),
    else None: the sidecar reports it before the pod's halt record is written (pure)."""
    if code != HALT_CODE:
        return None
    source, sep, _ = message.partition(": ")
    return source if sep and source else None


def admin_port(pod: Mapping[str, Any], default: int) -> int:
    """The sidecar's admin port as injected into this pod (it may predate a config change)."""
    for c in (pod.get("spec") or {}).get("initContainers") or []:
        if c.get("name") == injection.SIDECAR_CONTAINER_NAME:
            for p in c.get("ports") or []:
                if p.get("name") == "hg-admin":
                    return int(p["containerPort"])
    return default


@dataclass(frozen=True, slots=True)
class Step:
    """The admin call one pod needs: action "halt", "lift" or "forget" (no call: another
    source still halts the pod), and its new record."""

    action: str
    record: dict[str, str]


def plan(pod: Mapping[str, Any], source: str, reason: str | None) -> Step | None:
    """What to do for one pod so that ``source``'s halt matches ``reason`` (pure)."""
    record = halted_sources(pod)
    if reason is not None:
        if record.get(source) == reason:
            return None
        return Step("halt", {**record, source: reason})
    if source not in record:
        return None
    rest = {k: v for k, v in record.items() if k != source}
    # Another source still halts the pod: drop ours from the record, keep the pod halted.
    return Step("lift" if not rest else "forget", rest)


async def _call(
    session: aiohttp.ClientSession, url: str, token: str, payload: Mapping[str, Any]
) -> str | None:
    """POST to a sidecar admin API; None on success, else a short error."""
    try:
        async with session.post(
            url, json=dict(payload), headers={"Authorization": f"Bearer {token}"}
        ) as resp:
            if 200 <= resp.status < 300:
                return None
            body = (await resp.text())[:_MAX_ERROR]
            return f"HTTP {resp.status}: {body}"
    except (aiohttp.ClientError, TimeoutError) as e:
        return f"{type(e).__name__}: {e}"[:_MAX_ERROR]


async def sync(
    rt: Runtime,
    session: aiohttp.ClientSession,
    namespace: str,
    source: str,
    pods: Sequence[Mapping[str, Any]],
    reason: str | None,
) -> SyncResult:
    """Make every pod's halt state for ``source`` match ``reason`` (None: lifted)."""
    result = SyncResult()
    token: str | None = None
    for pod in pods:
        meta = pod.get("metadata") or {}
        name = meta.get("name", "")
        step = plan(pod, source, reason)
        if step is None:
            if source in halted_sources(pod):
                result.halted.append(name)
            continue
        if step.action != "forget":
            ip = (pod.get("status") or {}).get("podIP")
            if not ip or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                result.pending.append(name)
                continue
            if token is None:
                try:
                    token = (
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
                except (apierrors.NotFound, apierrors.Forbidden) as e:
                    result.errors.append(f"admin token: {e}")
                    result.pending += [
                        str((p.get("metadata") or {}).get("name", "")) for p in pods if p is not pod
                    ] + [name]
                    return result
            host = f"[{ip}]" if ":" in ip else ip
            port = admin_port(pod, rt.settings.injection.admin_port)
            url = f"http://{host}:{port}/{step.action}"
            payload: dict[str, Any] = {"actor": ACTOR, "source": source}
            # The lift names the code the operator halts with: it never ends a halt of
            # another kind (a budget halt, a hand-made admin halt with its own code).
            payload["code"] = HALT_CODE
            if step.action == "halt" and reason is not None:
                payload.update(message=halt_message(source, reason), failureType="EXTERNAL")
            error = await _call(session, url, token, payload)
            rt.metrics.halt_deliveries.labels(step.action, "failed" if error else "ok").inc()
            if error:
                result.errors.append(f"{name}: {error}")
                result.pending.append(name)
                continue
        value = json.dumps(step.record, sort_keys=True) if step.record else None
        try:
            await rt.cluster.patch_pod_annotations(namespace, name, {ANNOTATION_HALTED: value})
        except apierrors.NotFound:
            continue  # the pod is gone: nothing left to halt
        except apierrors.Forbidden as e:
            result.errors.append(f"{name}: halt record not written: {e}")
            result.pending.append(name)
            continue
        if reason is not None:
            result.halted.append(name)
    return result


def halts_status(
    pods: Sequence[Mapping[str, Any]], source: str, since: str
) -> list[dict[str, Any]]:
    """``status.halts`` entries for the pods ``source`` has halted."""
    return [
        {
            "pod": (p.get("metadata") or {}).get("name", ""),
            "failureType": "EXTERNAL",
            "code": HALT_CODE,
            "since": since,
        }
        for p in pods
        if source in halted_sources(p)
    ]
