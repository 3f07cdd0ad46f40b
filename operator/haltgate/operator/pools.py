"""Reconcile BudgetPool objects: validation, state and membership in status.

The shared budget itself lives in PostgreSQL and is enforced by the sidecars; the operator
only reports here, and delivers external halts: ``state`` is Active unless the pool is
halted from outside (``haltgate.dev/halt`` annotation, reason in ``status.reason``), which
halts every agent of every member policy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from haltgate.governance.validation import validate_document
from haltgate.operator import halts, policies
from haltgate.operator.runtime import Runtime


def members(pool: str, policy_objects: Sequence[Mapping[str, Any]]) -> int:
    """GovernancePolicies of the namespace that draw from ``pool``."""
    return sum(1 for p in policy_objects if (p.get("spec") or {}).get("pool") == pool)


def pool_status(
    body: Mapping[str, Any], policy_objects: Sequence[Mapping[str, Any]], now: str
) -> dict[str, Any]:
    """The status of one pool (pure)."""
    meta = body.get("metadata") or {}
    generation = int(meta.get("generation") or 0)
    previous = list((body.get("status") or {}).get("conditions") or [])
    result = validate_document(dict(body))
    halt_reason = (meta.get("annotations") or {}).get(halts.ANNOTATION_HALT)
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "members": members(meta.get("name", ""), policy_objects),
    }
    if not result.ok:
        problems = "; ".join(str(i) for i in result.errors)
        status["conditions"] = [
            policies.condition("Valid", False, "Invalid", problems, generation, previous, now),
            policies.condition(
                "Ready", False, "Invalid", "the pool is invalid", generation, previous, now
            ),
        ]
        status["state"] = "Active"
        return status
    status["state"] = "Halted" if halt_reason else "Active"
    status["reason"] = halt_reason or ""
    status["conditions"] = [
        policies.condition(
            "Valid", True, "Valid", "the pool passed validation", generation, previous, now
        ),
        policies.condition(
            "Ready",
            True,
            "Active" if not halt_reason else "Halted",
            "the pool is tracked" if not halt_reason else halt_reason,
            generation,
            previous,
            now,
        ),
    ]
    return status


def member_policies(pool: str, policy_objects: Sequence[Mapping[str, Any]]) -> list[str]:
    """Names of the GovernancePolicies drawing from ``pool``."""
    return sorted(
        str((p.get("metadata") or {}).get("name", ""))
        for p in policy_objects
        if (p.get("spec") or {}).get("pool") == pool
    )


async def sync_database(dsn: str, body: Mapping[str, Any], status: dict[str, Any]) -> list[Any]:
    """With a pool database: write the spec there, apply the halt annotation to the pool
    (halt; lift of an annotation halt when it is removed), and take state, reason and
    spend from the database into ``status`` (a cascade halt shows as Halted). Returns the
    Kubernetes Events the transition deserves
    (``haltgate.governance.pool.sync.PoolEvent``)."""
    from haltgate.governance.policy import BudgetPoolSpec
    from haltgate.governance.pool.store import PoolStore
    from haltgate.governance.pool.sync import sync_pool

    meta = body.get("metadata") or {}
    if not all(c.get("status") == "True" for c in status.get("conditions") or []):
        return []  # an invalid pool is not written to the database
    spec = BudgetPoolSpec.model_validate(body.get("spec") or {})
    store = await PoolStore.connect(dsn)
    try:
        result = await sync_pool(
            store,
            meta["namespace"],
            meta["name"],
            spec,
            halt_annotation=(meta.get("annotations") or {}).get(halts.ANNOTATION_HALT),
            previous=body.get("status"),
        )
    finally:
        await store.close()
    status.update(result.status)
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":  # the database's state is the pool's state
            cond["reason"] = status["state"]
            cond["message"] = status.get("reason") or "the pool is tracked"
    return list(result.events)


async def reconcile(rt: Runtime, body: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Compute a pool's status from the cluster; also return its member policies."""
    meta = body.get("metadata") or {}
    objs = await rt.cluster.list_policies(meta["namespace"])
    status = pool_status(body, objs, policies.now_rfc3339())
    ok = all(c["status"] == "True" for c in status["conditions"])
    rt.metrics.reconciles.labels("BudgetPool", "ready" if ok else "invalid").inc()
    return status, member_policies(meta.get("name", ""), objs)
