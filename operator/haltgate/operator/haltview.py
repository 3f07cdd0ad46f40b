"""What a policy's status says about halted agents, whatever halted them.

A pod can be halted by its own sidecar (a budget: EXHAUSTION, STAGNATION, OVERRISK; a
guardrail: SAFETY) or from outside (EXTERNAL: the ``haltgate.dev/halt`` annotation on the
policy, the Deployment or the BudgetPool, recorded on the pod by :mod:`halts`). The sidecar
knows the first kind only, so the operator asks each running pod's admin API
(``GET /status``, field ``halted``) on every full policy sync, and joins the answers with the
pods' halt records and the halts still waiting for delivery (a pod without an IP yet, a
failed call). The result is ``status.halts`` (one entry per pod) and ``status.haltedAgents``;
:func:`transitions` names the Events a change deserves, on the policy and on the workload.

Only HTTP to the sidecars: the operator never imports the sidecar.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from haltgate.operator import halts

PROBE_CONCURRENCY = 16
"""Admin API status calls in flight at once during one policy sync."""
_MAX_TEXT = 300

STATE_HALTED = "Halted"
STATE_PENDING = "Pending"
EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True, slots=True)
class SidecarHalt:
    """A halt as the sidecar reports it in ``GET /status`` (``halted``)."""

    failure_type: str
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Workload:
    """The object a pod belongs to, for Events (``kubectl describe`` shows them)."""

    api_version: str
    kind: str
    name: str
    uid: str | None

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"


Probe = SidecarHalt | None
"""One pod's answer: its halt, or None when the sidecar says it runs."""


def parse_status(body: Any) -> Probe:
    """The ``halted`` part of a sidecar's ``GET /status`` answer (pure)."""
    halted = body.get("halted") if isinstance(body, Mapping) else None
    if not isinstance(halted, Mapping):
        return None
    return SidecarHalt(
        str(halted.get("failure_type") or "EXTERNAL"),
        str(halted.get("code") or "halted"),
        str(halted.get("message") or "")[:_MAX_TEXT],
    )


def reachable(pod: Mapping[str, Any]) -> str | None:
    """The pod's IP when its sidecar can be called (running, has an IP), else None."""
    status = pod.get("status") or {}
    ip = status.get("podIP")
    if not ip or status.get("phase") in ("Succeeded", "Failed"):
        return None
    return f"[{ip}]" if ":" in str(ip) else str(ip)


async def _probe_one(session: aiohttp.ClientSession, url: str, token: str) -> Probe | str:
    try:
        async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
            if resp.status != 200:
                return f"HTTP {resp.status}: {(await resp.text())[:_MAX_TEXT]}"
            return parse_status(await resp.json(content_type=None))
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:
        return f"{type(e).__name__}: {e}"[:_MAX_TEXT]


async def probe(
    session: aiohttp.ClientSession,
    pods: Sequence[Mapping[str, Any]],
    token: str,
    default_admin_port: int,
) -> tuple[dict[str, Probe], dict[str, str]]:
    """Ask every reachable pod's sidecar whether it is halted.

    Returns (answers by pod name, errors by pod name); unreachable pods are in neither."""
    sem = asyncio.Semaphore(PROBE_CONCURRENCY)

    async def one(pod: Mapping[str, Any]) -> tuple[str, Probe | str]:
        host = reachable(pod)
        assert host is not None
        port = halts.admin_port(pod, default_admin_port)
        async with sem:
            return (
                str((pod.get("metadata") or {}).get("name", "")),
                await _probe_one(session, f"http://{host}:{port}/status", token),
            )

    answers: dict[str, Probe] = {}
    errors: dict[str, str] = {}
    for name, res in await asyncio.gather(*(one(p) for p in pods if reachable(p))):
        if isinstance(res, str):
            errors[name] = res
        else:
            answers[name] = res
    return answers, errors


def workload_of(pod: Mapping[str, Any]) -> Workload:
    """The pod's controller (a ReplicaSet made by a Deployment counts as the Deployment;
    its uid is then unknown until read), or the pod itself."""
    meta = pod.get("metadata") or {}
    owner = next((o for o in meta.get("ownerReferences") or [] if o.get("controller")), None)
    if owner is None:
        return Workload("v1", "Pod", str(meta.get("name", "")), meta.get("uid"))
    kind, name = str(owner.get("kind", "")), str(owner.get("name", ""))
    template_hash = (meta.get("labels") or {}).get("pod-template-hash")
    if kind == "ReplicaSet" and template_hash and name.endswith(f"-{template_hash}"):
        return Workload("apps/v1", "Deployment", name.removesuffix(f"-{template_hash}"), None)
    return Workload(str(owner.get("apiVersion", "")), kind, name, owner.get("uid"))


def _sources_text(record: Mapping[str, str]) -> tuple[str, str]:
    sources = sorted(record)
    return ", ".join(sources), "; ".join(f"{s}: {record[s]}" for s in sources)


def entries(
    pods: Sequence[Mapping[str, Any]],
    answers: Mapping[str, Probe],
    pending: Mapping[str, Mapping[str, str]],
    previous: Sequence[Mapping[str, Any]],
    now: str,
) -> list[dict[str, Any]]:
    """``status.halts``: one entry per halted pod, or per pod whose halt awaits delivery.

    ``answers``: sidecar probes (a pod missing here was not reachable: its last known
    sidecar-reported halt is kept, a halt is terminal until reset); ``pending``: by pod
    name, the sources whose halt is not delivered yet, with their reason (pure)."""
    before = {str(e.get("pod")): e for e in previous}
    out: list[dict[str, Any]] = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        name = str(meta.get("name", ""))
        record = halts.halted_sources(pod)
        entry: dict[str, Any] | None = None
        answer = answers.get(name)
        if answer is not None:
            source = "sidecar"
            if answer.failure_type == "EXTERNAL":
                # Delivered but the pod's record not written yet: the operator's own
                # halt names its source in its message; anything else came by hand.
                source = (
                    _sources_text(record)[0]
                    if record
                    else halts.source_of(answer.code, answer.message) or "admin API"
                )
            entry = {
                "failureType": answer.failure_type,
                "code": answer.code,
                "message": answer.message,
                "source": source,
            }
        elif record:
            source, message = _sources_text(record)
            entry = {
                "failureType": "EXTERNAL",
                "code": halts.HALT_CODE,
                "message": message[:_MAX_TEXT],
                "source": source,
            }
        elif (
            name not in answers
            and (old := before.get(name)) is not None
            and old.get("state") == STATE_HALTED
            and old.get("source") == "sidecar"
        ):
            entry = {k: old[k] for k in ("failureType", "code", "message", "source") if k in old}
        if entry is not None:
            entry["state"] = STATE_HALTED
        elif pending.get(name):
            source, message = _sources_text(pending[name])
            entry = {
                "failureType": "EXTERNAL",
                "code": halts.HALT_CODE,
                "message": message[:_MAX_TEXT],
                "source": source,
                "state": STATE_PENDING,
            }
        if entry is None:
            continue
        old = before.get(name)
        same = old is not None and all(old.get(k) == entry[k] for k in ("failureType", "state"))
        entry = {
            "pod": name,
            **entry,
            "workload": workload_of(pod).ref,
            "since": str(old.get("since")) if same and old and old.get("since") else now,
        }
        out.append(entry)
    return sorted(out, key=lambda e: str(e["pod"]))


def halted_count(items: Sequence[Mapping[str, Any]]) -> int:
    """``status.haltedAgents``: pods whose halt is in force (pending ones are not)."""
    return sum(1 for e in items if e.get("state", STATE_HALTED) == STATE_HALTED)


@dataclass(frozen=True, slots=True)
class Change:
    """One Event worth posting about a pod's halt: on the policy and on ``workload``."""

    type: EventType
    reason: str
    message: str
    workload: str


def transitions(
    old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]], present: set[str]
) -> list[Change]:
    """Events for halts that appeared, changed, await delivery, or were lifted (pure).

    ``present``: the pods that still exist (a deleted pod's halt was not lifted)."""
    before = {str(e.get("pod")): e for e in old}
    after = {str(e.get("pod")): e for e in new}
    out: list[Change] = []
    for pod, e in sorted(after.items()):
        prev = before.get(pod)
        key = (e.get("failureType"), e.get("code"), e.get("state", STATE_HALTED))
        if (
            prev is not None
            and (prev.get("failureType"), prev.get("code"), prev.get("state", STATE_HALTED)) == key
        ):
            continue
        workload = str(e.get("workload") or f"Pod/{pod}")
        detail = f"{e.get('failureType')} {e.get('code')} from {e.get('source')}"
        if e.get("message"):
            detail += f": {e.get('message')}"
        if e.get("state") == STATE_PENDING:
            out.append(
                Change(
                    "Warning",
                    "HaltPending",
                    f"pod {pod}: halt not delivered yet ({detail})",
                    workload,
                )
            )
        else:
            out.append(Change("Warning", "Halted", f"pod {pod} halted: {detail}", workload))
    for pod, e in sorted(before.items()):
        if pod not in after and pod in present and e.get("state", STATE_HALTED) == STATE_HALTED:
            out.append(
                Change(
                    "Normal",
                    "HaltLifted",
                    f"pod {pod}: halt lifted",
                    str(e.get("workload") or f"Pod/{pod}"),
                )
            )
    return out
