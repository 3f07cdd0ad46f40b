"""The operator with a pool database: BudgetPool spec, spend, cascade halts, lifts, Events.

Restarts the session's operator with ``--pool-dsn`` for this module and back without it.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from haltgate.governance.pool.lease import ZERO, Amounts
from haltgate.governance.pool.store import PoolStore
from haltgate.testbed.controlplane import ControlPlane
from tests.operator.conftest import OperatorUnderTest, apply, budget_pool, eventually, kubectl_json
from tests.pool.helpers import fresh_pool_database

pytestmark = [pytest.mark.k8s, pytest.mark.postgres]

HALTGATE = str(Path(sys.executable).parent / "haltgate")


@pytest.fixture(scope="module")
def pool_db(postgres_dsn: str) -> Iterator[str]:
    with fresh_pool_database(postgres_dsn, "oppool_") as dsn:
        yield dsn


@pytest.fixture
def operator_with_pool_db(
    haltgate_operator: OperatorUnderTest, pool_db: str
) -> Iterator[OperatorUnderTest]:
    haltgate_operator.stop()
    haltgate_operator.argv += ["--pool-dsn", pool_db]
    haltgate_operator.start()
    try:
        yield haltgate_operator
    finally:
        haltgate_operator.stop()
        del haltgate_operator.argv[-2:]
        haltgate_operator.start()


def _status(kube: ControlPlane, ns: str) -> dict[str, Any]:
    return dict(kubectl_json(kube, "-n", ns, "get", "budgetpool", "shared").get("status") or {})


def _events(kube: ControlPlane, ns: str) -> list[str]:
    items = kubectl_json(kube, "-n", ns, "get", "events").get("items") or []
    return [
        e.get("reason", "")
        for e in items
        if (e.get("involvedObject") or {}).get("kind") == "BudgetPool"
    ]


def test_pool_database_state_and_spend_in_status_and_events(
    operator_with_pool_db: OperatorUnderTest, kube_namespace: str, pool_db: str
) -> None:
    kube, ns = operator_with_pool_db.kube, kube_namespace
    pool = budget_pool(ns, "shared", {"calls": {"limit": 100}, "costUSD": {"limit": 10}})
    assert apply(kube, pool).returncode == 0
    key = f"{ns}/shared"
    eventually(lambda: _status(kube, ns).get("spentCalls") == 0, what="pool in the database")

    async def member_spends_then_loops() -> None:
        store = await PoolStore.connect(pool_db)
        try:
            lease = await store.renew(
                key, "m", old=None, spent=ZERO, hold=ZERO, need=Amounts(calls=1)
            )
            assert lease is not None
            await store.settle(
                key, old=lease.lease_id, spent=Amounts(calls=4, cost_pico=2 * 10**12)
            )
            await store.halt(key, "cascade_loop", "a -> b -> a", f"{ns}/a")
        finally:
            await store.close()

    asyncio.run(member_spends_then_loops())
    st = eventually(
        lambda: (s := _status(kube, ns)).get("state") == "Halted" and s,
        what="cascade halt in status",
    )
    assert st["reason"].startswith("cascade_loop") and st["spentCalls"] == 4
    assert st["spentUSD"] == 2.0
    eventually(lambda: "PoolHalted" in _events(kube, ns), what="PoolHalted event")
    columns = kube.kubectl("-n", ns, "get", "bpool", "shared").stdout
    assert "Halted" in columns and "2" in columns
    lifted = subprocess.run(
        [
            HALTGATE,
            "pool",
            "lift",
            "--dsn",
            pool_db,
            "-n",
            ns,
            "shared",
            "--reason",
            "loop fixed",
            "--as",
            "alice",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert lifted.returncode == 0, lifted.stderr
    eventually(lambda: _status(kube, ns).get("state") == "Active", what="lift in status")
    eventually(lambda: "PoolLifted" in _events(kube, ns), what="PoolLifted event")
