"""What the operator's resource handlers share: the halt bookkeeping across sources (halts
not delivered yet, delivery errors posted once, policies whose status must be refreshed),
the "already handled" marker of an object, the status diff, and one-line error text."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from haltgate.operator import events, halts, injection
from haltgate.operator.runtime import Runtime

GROUP, VERSION = "haltgate.dev", "v1alpha1"


@dataclass(slots=True)
class HaltBook:
    """Halt state shared by the policy, workload and pool handlers of one operator."""

    rt: Runtime
    session_box: dict[str, aiohttp.ClientSession]
    """The admin-API session (``"session"``), made once the operator runs."""
    pending_halts: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    """Halts requested but not delivered yet, by (namespace, pod): {source: reason}. Every
    source's sync updates its own part; the policy's status shows them as Pending."""
    delivery_errors: dict[tuple[str, str, str], str] = field(default_factory=dict)
    stale_policies: set[tuple[str, str]] = field(default_factory=set)
    """Policies whose pods' halts changed from elsewhere (a Deployment, a pool): fully
    synced at the next resync so their status shows it at once."""

    def note_pending(
        self, namespace: str, source: str, result: halts.SyncResult | None, reason: str | None
    ) -> None:
        pending_halts = self.pending_halts
        waiting = set(result.pending) if result is not None and reason else set()
        for key in [k for k in pending_halts if k[0] == namespace]:
            if key[1] not in waiting:
                pending_halts[key].pop(source, None)
                if not pending_halts[key]:
                    del pending_halts[key]
        for pod in waiting:
            pending_halts.setdefault((namespace, pod), {})[source] = str(reason)

    async def post_delivery_errors(self, obj: Mapping[str, Any], errors: list[str]) -> None:
        """One Warning per new set of delivery errors on ``obj`` (retries repeat them)."""
        meta = obj.get("metadata") or {}
        key = (str(obj.get("kind")), meta.get("namespace", ""), meta.get("name", ""))
        text = "; ".join(errors)
        if text and self.delivery_errors.get(key) != text:
            await events.post(self.rt.cluster, obj, "Warning", "HaltDeliveryFailed", text)
        self.delivery_errors[key] = text

    def mark_stale(self, namespace: str, pods: list[dict[str, Any]]) -> None:
        for pod in pods:
            policy = ((pod.get("metadata") or {}).get("labels") or {}).get(injection.LABEL_POLICY)
            if policy:
                self.stale_policies.add((namespace, policy))


def handled_marker(body: Mapping[str, Any]) -> tuple[Any, Any]:
    """What an event must change for a handler to act: the generation or the halt."""
    meta = body.get("metadata") or {}
    return meta.get("generation"), (meta.get("annotations") or {}).get(halts.ANNOTATION_HALT)


def short_error(e: BaseException) -> str:
    """One line for a log: API errors carry whole HTTP dumps."""
    body = getattr(e, "body", None)
    text = body if isinstance(body, str) and body else str(e)
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"[:300]


def status_changes(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
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
