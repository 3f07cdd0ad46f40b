"""PoolClient.close() while a renewal is in flight: the spend is counted once, no lease stays."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from haltgate.governance.policy import BudgetPoolSpec
from haltgate.governance.pool.client import PoolClient, PoolSettings
from haltgate.governance.pool.lease import Amounts
from haltgate.governance.pool.store import LeaseGrant, PoolStore

pytestmark = pytest.mark.postgres

ONE = Amounts(calls=1)


async def _pool(dsn: str, name: str, **spec: object) -> None:
    store = await PoolStore.connect(dsn)
    await store.upsert(name, BudgetPoolSpec.model_validate(spec))
    await store.close()


async def _status(dsn: str, name: str) -> dict[str, Any]:
    store = await PoolStore.connect(dsn)
    try:
        status = await store.status(name)
    finally:
        await store.close()
    assert status is not None
    return status


async def test_close_during_a_committed_renewal_counts_the_spend_once(
    pool_dsn: str, pool_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The renewal statement commits, its answer is slow to come back (a slow network,
    here a ``pg_sleep`` on the same connection), and the member is stopped meanwhile."""
    await _pool(pool_dsn, pool_name, calls={"limit": 100}, leaseFraction=0.1)
    client = PoolClient(
        PoolSettings(dsn=pool_dsn, pool=pool_name, holder="ns/m/p-0", poll_interval=0.2)
    )
    await client.start()
    store = client._store
    assert store is not None and client.lease is not None
    assert client.lease.allotment.calls == 10
    committed = asyncio.Event()
    real_renew = store.renew

    async def slow_answer(pool: str, holder: str, **kw: Any) -> LeaseGrant | None:
        grant = await real_renew(pool, holder, **kw)  # committed (autocommit)
        committed.set()
        await store.conn.execute("SELECT pg_sleep(0.5)")
        return grant

    monkeypatch.setattr(store, "renew", slow_answer)
    try:
        for i in range(5):  # half the lease: the maintenance task renews in the background
            assert await client.reserve(f"c{i}", ONE) is None
            client.settle(f"c{i}", ONE)
        async with asyncio.timeout(10):
            await committed.wait()
    finally:
        await client.close()
    status = await _status(pool_dsn, pool_name)
    calls = status["dimensions"]["calls"]
    assert calls["used"] == 5
    assert calls["leased"] == 0
    assert status["leases"] == 0
    assert status["members"] == 0
