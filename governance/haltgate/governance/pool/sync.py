"""One reconcile step between a BudgetPool object and the pool database (for the operator).

:func:`sync_pool` writes the spec's limits and rules to the database, applies the
``haltgate.dev/halt`` annotation as a pool halt (and its removal as a lift of that halt),
and returns the status fields and the Kubernetes Events the transition deserves. Cascade
halts (loops, depth, storms) are lifted with ``haltgate pool lift`` by a pool admin; an
operator-made halt is lifted by removing the annotation, so the Kubernetes RBAC on
BudgetPool annotations authenticates it, and the lift is recorded in ``pool_events`` with
the operator's database role. The operator's role must be in ``haltgate_pool_admin``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from haltgate.governance.policy import BudgetPoolSpec
from haltgate.governance.pool.report import status_fields
from haltgate.governance.pool.store import PoolStore, pool_key

__all__ = ["OPERATOR_HALT", "PoolEvent", "SyncResult", "sync_pool"]

OPERATOR_HALT = "operator_halt"
"""Halt code of halts made through the BudgetPool annotation."""


@dataclass(frozen=True, slots=True)
class PoolEvent:
    """A Kubernetes Event to emit on the BudgetPool (``type`` Normal or Warning)."""

    type: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class SyncResult:
    status: dict[str, Any]
    """BudgetPool status fields (state, reason, spentCalls, spentTokens, spentUSD)."""
    events: list[PoolEvent] = field(default_factory=list)


async def sync_pool(
    store: PoolStore,
    namespace: str,
    name: str,
    spec: BudgetPoolSpec,
    *,
    halt_annotation: str | None,
    previous: Mapping[str, Any] | None,
    actor: str = "haltgate-operator",
) -> SyncResult:
    """Reconcile one BudgetPool with the database. ``previous``: its current status."""
    key = pool_key(namespace, name)
    await store.upsert(key, spec)
    before = await store.status(key)
    events: list[PoolEvent] = []
    if before is not None:
        if halt_annotation and before["state"] == "Active":
            await store.halt(key, OPERATOR_HALT, halt_annotation, f"{actor} (annotation)")
        elif (
            not halt_annotation
            and before["state"] == "Halted"
            and before.get("code") == OPERATOR_HALT
        ):
            await store.lift(
                key, f"{actor} (annotation removed)", "the haltgate.dev/halt annotation was removed"
            )
    now = status_fields(await store.status(key))
    was = (previous or {}).get("state")
    if now.get("state") == "Halted" and was != "Halted":
        events.append(
            PoolEvent(
                "Warning", "PoolHalted", f"every member refuses new calls: {now.get('reason')}"
            )
        )
    elif now.get("state") == "Active" and was == "Halted":
        events.append(PoolEvent("Normal", "PoolLifted", "the pool was lifted; members resume"))
    return SyncResult(now, events)
