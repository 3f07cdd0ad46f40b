"""The operator's BudgetPool reconcile against a real pool database (no apiserver needed:
``pools.pool_status`` is pure and ``pools.sync_database`` talks to PostgreSQL only)."""

from __future__ import annotations

from typing import Any

import pytest

from haltgate.governance.pool.lease import ZERO, Amounts
from haltgate.governance.pool.store import PoolStore
from haltgate.operator import halts, pools

pytestmark = pytest.mark.postgres


def _body(annotation: str | None, status: dict[str, Any] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "shared", "namespace": "opsync", "generation": 1}
    if annotation:
        meta["annotations"] = {halts.ANNOTATION_HALT: annotation}
    return {
        "apiVersion": "haltgate.dev/v1alpha1",
        "kind": "BudgetPool",
        "metadata": meta,
        "spec": {"calls": {"limit": 50}, "costUSD": {"limit": 5}},
        "status": status or {},
    }


async def _reconcile(dsn: str, body: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    status = pools.pool_status(body, [], "2026-11-25T00:00:00Z")
    evs = await pools.sync_database(dsn, body, status)
    return status, [e.reason for e in evs]


async def test_spec_spend_halt_and_lift_reach_the_status(pool_dsn: str) -> None:
    status, evs = await _reconcile(pool_dsn, _body(None))
    assert status["state"] == "Active" and evs == []
    assert status["spentCalls"] == 0 and status["spentUSD"] == 0
    # A member spends (as a sidecar would): the status shows it on the next reconcile.
    store = await PoolStore.connect(pool_dsn)
    lease = await store.renew(
        "opsync/shared", "m", old=None, spent=ZERO, hold=ZERO, need=Amounts(calls=1)
    )
    assert lease is not None
    await store.settle(
        "opsync/shared",
        old=lease.lease_id,
        spent=Amounts(calls=3, tokens=40, cost_pico=250_000_000_000),
    )
    status, _ = await _reconcile(pool_dsn, _body(None, status))
    assert (status["spentCalls"], status["spentTokens"], status["spentUSD"]) == (3, 40, 0.25)
    # The halt annotation halts the pool in the database (every member, via NOTIFY).
    status, evs = await _reconcile(pool_dsn, _body("budget review", status))
    assert status["state"] == "Halted" and evs == ["PoolHalted"]
    assert (await store.config("opsync/shared")).halted  # type: ignore[union-attr]
    # Removing it lifts that halt.
    status, evs = await _reconcile(pool_dsn, _body(None, status))
    assert status["state"] == "Active" and evs == ["PoolLifted"]
    # A cascade halt from the sidecars shows in the status without any annotation.
    await store.halt("opsync/shared", "cascade_loop", "a -> b -> a", "opsync/a")
    status, evs = await _reconcile(pool_dsn, _body(None, status))
    assert status["state"] == "Halted" and status["reason"].startswith("cascade_loop")
    assert evs == ["PoolHalted"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "Halted" and ready["message"].startswith("cascade_loop")
    await store.close()


async def test_an_invalid_pool_is_not_written(pool_dsn: str) -> None:
    body = _body(None)
    body["spec"] = {"leaseFraction": 5}
    status, evs = await _reconcile(pool_dsn, body)
    assert evs == [] and "spentCalls" not in status
