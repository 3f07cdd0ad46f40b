"""The PostgreSQL store against a real server: atomic leases, settlement, expiry, halts."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from haltgate.governance.policy import BudgetPoolSpec
from haltgate.governance.pool.lease import ZERO, Amounts, grant
from haltgate.governance.pool.store import CHANNEL, PoolStore, PoolStoreError, migrate

pytestmark = pytest.mark.postgres


def _spec(**kw: object) -> BudgetPoolSpec:
    return BudgetPoolSpec.model_validate(
        {"calls": {"limit": 100}, "leaseFraction": 0.1, "leaseSeconds": 30, **kw}
    )


async def test_migrate_is_idempotent(pool_dsn: str) -> None:
    assert migrate(pool_dsn) == []


async def test_lease_matches_the_arithmetic_and_settles_exactly(
    pool_dsn: str, pool_name: str
) -> None:
    store = await PoolStore.connect(pool_dsn)
    try:
        await store.upsert(pool_name, _spec())
        first = await store.renew(
            pool_name, "a", old=None, spent=ZERO, hold=ZERO, need=Amounts(calls=1)
        )
        assert first is not None and first.allotment.calls == 10  # ceil(0.1 * 100)
        second = await store.renew(
            pool_name, "b", old=None, spent=ZERO, hold=ZERO, need=Amounts(calls=1)
        )
        assert second is not None and second.allotment.calls == 9  # ceil(0.1 * 90)
        expected = grant(
            {"calls": 100},
            Amounts(calls=0),
            Amounts(calls=10),
            hold=ZERO,
            need=Amounts(calls=1),
            ppm=100_000,
        )
        assert expected == second.allotment
        # a spends 4 and renews: its 10 come back, 4 are used, a new share is leased.
        renewed = await store.renew(
            pool_name,
            "a",
            old=first.lease_id,
            spent=Amounts(calls=4),
            hold=Amounts(calls=2),
            need=Amounts(calls=3),
        )
        assert renewed is not None and renewed.allotment.calls == 9  # ceil(0.1*(100-4-9))
        status = await store.status(pool_name)
        assert status is not None
        assert status["dimensions"]["calls"] == {
            "limit": 100,
            "used": 4,
            "leased": 18,
            "period": "run",
        }
        await store.settle(pool_name, old=renewed.lease_id, spent=Amounts(calls=9))
        await store.settle(pool_name, old=second.lease_id, spent=Amounts(calls=0))
        status = await store.status(pool_name)
        assert status is not None
        assert status["dimensions"]["calls"]["used"] == 13
        assert status["dimensions"]["calls"]["leased"] == 0
        assert status["leases"] == 0
    finally:
        await store.close()


async def test_lease_refused_below_hold_and_never_beyond_the_limit(
    pool_dsn: str, pool_name: str
) -> None:
    store = await PoolStore.connect(pool_dsn)
    try:
        await store.upsert(pool_name, _spec(calls={"limit": 5}, leaseFraction=1.0))
        lease = await store.renew(
            pool_name, "a", old=None, spent=ZERO, hold=ZERO, need=Amounts(calls=1)
        )
        assert lease is not None and lease.allotment.calls == 5
        assert (
            await store.renew(
                pool_name, "b", old=None, spent=ZERO, hold=Amounts(calls=1), need=Amounts(calls=1)
            )
            is None
        )
    finally:
        await store.close()


async def test_concurrent_takes_never_lease_more_than_remains(
    pool_dsn: str, pool_name: str
) -> None:
    stores = [await PoolStore.connect(pool_dsn) for _ in range(8)]
    try:
        await stores[0].upsert(pool_name, _spec(calls={"limit": 50}, leaseFraction=0.3))

        async def take_all(store: PoolStore, holder: str) -> int:
            total = 0
            for _ in range(50):  # bounded
                lease = await store.renew(
                    pool_name,
                    holder,
                    old=None,
                    spent=ZERO,
                    hold=Amounts(calls=1),
                    need=Amounts(calls=1),
                )
                if lease is None:
                    break
                total += lease.allotment.calls
            return total

        got = await asyncio.gather(*(take_all(s, f"m{i}") for i, s in enumerate(stores)))
        assert sum(got) == 50
    finally:
        for s in stores:
            await s.close()


async def test_expired_leases_come_back(pool_dsn: str, pool_name: str) -> None:
    store = await PoolStore.connect(pool_dsn)
    try:
        await store.upsert(pool_name, _spec(leaseSeconds=0.2, leaseFraction=0.5))
        lease = await store.renew(pool_name, "crashed", old=None, spent=ZERO, hold=ZERO, need=ZERO)
        assert lease is not None and lease.allotment.calls == 50
        assert await store.expire(pool_name) == 0
        await asyncio.sleep(0.3)
        assert await store.expire(pool_name) == 1
        status = await store.status(pool_name)
        assert status is not None and status["dimensions"]["calls"]["leased"] == 0
        # The holder reports late: its spend still counts, its allotment is not returned twice.
        await store.settle(pool_name, old=lease.lease_id, spent=Amounts(calls=3))
        status = await store.status(pool_name)
        assert status is not None
        assert status["dimensions"]["calls"] == {
            "limit": 100,
            "used": 3,
            "leased": 0,
            "period": "run",
        }
        kinds = [e["kind"] for e in await store.events(pool_name)]
        assert "lease_expired" in kinds
    finally:
        await store.close()


async def test_halt_notifies_and_refuses_leases_lift_needs_admin(
    pool_dsn: str, pool_name: str
) -> None:
    store = await PoolStore.connect(pool_dsn)
    listener = await psycopg.AsyncConnection.connect(pool_dsn, autocommit=True)
    try:
        await store.upsert(pool_name, _spec())
        await listener.execute(f"LISTEN {CHANNEL}")
        assert await store.halt(pool_name, "cascade_loop", "a->b->a", "ns/a")
        assert not await store.halt(pool_name, "other", "second", "ns/b")  # first stands
        note = await asyncio.wait_for(anext(listener.notifies()), 5)
        assert '"Halted"' in note.payload and pool_name in note.payload
        assert (
            await store.renew(
                pool_name, "a", old=None, spent=ZERO, hold=ZERO, need=Amounts(calls=1)
            )
            is None
        )
        # A member role may not lift.
        await store.conn.execute("CREATE ROLE pool_member_t LOGIN")
        await store.conn.execute("GRANT haltgate_pool_member TO pool_member_t")
        try:
            member = await PoolStore.connect(pool_dsn.replace("postgres@", "pool_member_t@"))
            with pytest.raises(PoolStoreError, match=r"haltgate_pool_admin|permission denied"):
                await member.lift(pool_name, "me", "try")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await member.conn.execute("UPDATE haltgate.pools SET calls_limit = 1000000000")
            other = pool_name + "-m"
            await store.upsert(other, _spec())
            # What a sidecar does is allowed: lease, settle, expire, record, halt.
            lease = await member.renew(
                other, "m", old=None, spent=ZERO, hold=ZERO, need=Amounts(calls=1)
            )
            assert lease is not None
            await member.settle(other, old=lease.lease_id, spent=Amounts(calls=1))
            await member.expire(other)
            assert await member.record(other, "member_halt", "m", "x") == "Active"
            assert await member.halt(other, "cascade_loop", "test", "m")
            await member.close()
        finally:
            await store.conn.execute("DROP OWNED BY pool_member_t")
            await store.conn.execute("DROP ROLE pool_member_t")
        assert await store.lift(pool_name, "alice", "fixed the loop")
        events = await store.events(pool_name)
        assert events[0]["kind"] == "lift" and events[0]["detail"]["as"] == "alice"
        assert (
            await store.renew(
                pool_name, "a", old=None, spent=ZERO, hold=ZERO, need=Amounts(calls=1)
            )
            is not None
        )
    finally:
        await listener.close()
        await store.close()


async def test_halt_storm_halts_the_pool_and_a_lift_starts_a_new_window(
    pool_dsn: str, pool_name: str
) -> None:
    store = await PoolStore.connect(pool_dsn)
    try:
        await store.upsert(
            pool_name, _spec(cascade={"haltStorm": {"halts": 3, "windowSeconds": 60}})
        )
        assert await store.record(pool_name, "member_halt", "ns/a", "calls_exhausted") == "Active"
        assert await store.record(pool_name, "member_halt", "ns/b", "calls_exhausted") == "Active"
        assert await store.record(pool_name, "member_halt", "ns/c", "calls_exhausted") == "Halted"
        status = await store.status(pool_name)
        assert status is not None and status["code"] == "halt_storm"
        assert await store.lift(pool_name, "ops", "storm understood")
        assert await store.record(pool_name, "member_halt", "ns/a", "x") == "Active"
    finally:
        await store.close()


async def test_error_storm_counts_reported_errors_in_the_window(
    pool_dsn: str, pool_name: str
) -> None:
    store = await PoolStore.connect(pool_dsn)
    try:
        await store.upsert(
            pool_name, _spec(cascade={"errorStorm": {"errors": 10, "windowSeconds": 60}})
        )
        assert await store.record(pool_name, "errors", "ns/a", "upstream_error", 6) == "Active"
        assert await store.record(pool_name, "errors", "ns/b", "upstream_error", 4) == "Halted"
        status = await store.status(pool_name)
        assert status is not None and status["code"] == "error_storm"
    finally:
        await store.close()


async def test_status_fields_for_the_bpool_columns(pool_dsn: str, pool_name: str) -> None:
    from haltgate.governance.pool.report import status_fields

    store = await PoolStore.connect(pool_dsn)
    try:
        await store.upsert(pool_name, _spec(costUSD={"limit": 10}))
        lease = await store.renew(
            pool_name, "a", old=None, spent=ZERO, hold=ZERO, need=Amounts(calls=1)
        )
        assert lease is not None
        await store.settle(
            pool_name,
            old=lease.lease_id,
            spent=Amounts(calls=2, tokens=300, cost_pico=1_500_000_000_000),
        )
        await store.halt(pool_name, "cascade_loop", "a -> b -> a", "ns/a")
        fields = status_fields(await store.status(pool_name))
        assert fields == {
            "state": "Halted",
            "reason": "cascade_loop: a -> b -> a",
            "spentCalls": 2,
            "spentTokens": 300,
            "spentUSD": 1.5,
        }
        assert status_fields(None) == {}
    finally:
        await store.close()


async def test_sql_grant_agrees_with_the_python_arithmetic(pool_dsn: str, pool_name: str) -> None:
    import random

    from haltgate.governance.pool.lease import fraction_ppm

    rng = random.Random(10)
    store = await PoolStore.connect(pool_dsn)
    try:
        for case in range(25):
            name = f"{pool_name}-{case}"
            limit = rng.randint(0, 10_000)
            fraction = rng.choice([0.001, 0.05, 0.1, 0.33, 1.0])
            await store.upsert(
                name,
                _spec(calls={"limit": limit}, tokens={"limit": limit * 7}, leaseFraction=fraction),
            )
            leased = Amounts()
            for _ in range(rng.randint(1, 4)):
                need = Amounts(calls=rng.randint(0, 50), tokens=rng.randint(0, 400))
                hold = Amounts(calls=rng.randint(0, need.calls))
                expected = grant(
                    {"calls": limit, "tokens": limit * 7},
                    Amounts(),
                    leased,
                    hold=hold,
                    need=need,
                    ppm=fraction_ppm(fraction),
                )
                got = await store.renew(name, "h", old=None, spent=ZERO, hold=hold, need=need)
                assert (got.allotment if got else None) == expected, (case, limit, fraction)
                if got is not None:
                    leased = leased + got.allotment
    finally:
        await store.close()


async def test_an_hourly_period_starts_again_from_zero(pool_dsn: str, pool_name: str) -> None:
    store = await PoolStore.connect(pool_dsn)
    try:
        await store.upsert(
            pool_name, _spec(calls={"limit": 10, "period": "hour"}, leaseFraction=1.0)
        )
        lease = await store.renew(pool_name, "a", old=None, spent=ZERO, hold=ZERO, need=ZERO)
        assert lease is not None
        await store.settle(pool_name, old=lease.lease_id, spent=Amounts(calls=10))
        spent = await store.renew(
            pool_name, "a", old=None, spent=ZERO, hold=ZERO, need=Amounts(calls=1)
        )
        assert spent is not None and spent.allotment.calls == 0  # nothing left this hour
        await store.settle(pool_name, old=spent.lease_id, spent=ZERO)
        # The hour turns (moved back in the database rather than waited for).
        await store.conn.execute(
            "UPDATE haltgate.pools SET calls_period_start = "
            "calls_period_start - interval '1 hour' WHERE pool = %s",
            (pool_name,),
        )
        fresh = await store.renew(
            pool_name, "a", old=None, spent=ZERO, hold=ZERO, need=Amounts(calls=1)
        )
        assert fresh is not None and fresh.allotment.calls == 10
    finally:
        await store.close()


async def test_operator_sync_applies_annotation_halts_and_lifts(pool_dsn: str) -> None:
    from haltgate.governance.pool.sync import sync_pool

    store = await PoolStore.connect(pool_dsn)
    try:
        spec = _spec()
        first = await sync_pool(store, "ops", "shared", spec, halt_annotation=None, previous=None)
        assert first.status["state"] == "Active" and first.events == []
        halted = await sync_pool(
            store, "ops", "shared", spec, halt_annotation="budget review", previous=first.status
        )
        assert halted.status["state"] == "Halted"
        assert halted.status["reason"] == "operator_halt: budget review"
        assert [e.reason for e in halted.events] == ["PoolHalted"]
        lifted = await sync_pool(
            store, "ops", "shared", spec, halt_annotation=None, previous=halted.status
        )
        assert lifted.status["state"] == "Active"
        assert [e.reason for e in lifted.events] == ["PoolLifted"]
        # A cascade halt is not lifted by the absence of an annotation.
        await store.halt("ops/shared", "cascade_loop", "a -> b -> a", "ns/a")
        still = await sync_pool(
            store, "ops", "shared", spec, halt_annotation=None, previous=lifted.status
        )
        assert still.status["state"] == "Halted" and still.events[0].reason == "PoolHalted"
        assert "cascade_loop" in still.status["reason"]
    finally:
        await store.close()


async def _leased_and_rows(store: PoolStore, pool: str) -> tuple[int, int, int]:
    """(calls leased on the pool row, calls held by lease rows, lease rows)."""
    status = await store.status(pool)
    assert status is not None
    row = await (
        await store.conn.execute(
            "SELECT coalesce(sum(calls), 0), count(*) FROM haltgate.pool_leases WHERE pool = %s",
            (pool,),
        )
    ).fetchone()
    assert row is not None
    return status["dimensions"]["calls"]["leased"], int(row[0]), int(row[1])


async def test_a_renewal_refused_by_a_halt_changes_nothing(pool_dsn: str, pool_name: str) -> None:
    store = await PoolStore.connect(pool_dsn)
    try:
        await store.upsert(pool_name, _spec(calls={"limit": 100}, leaseFraction=0.1))
        lease = await store.renew(
            pool_name, "a", old=None, spent=ZERO, hold=ZERO, need=Amounts(calls=1)
        )
        assert lease is not None and lease.allotment.calls == 10
        assert await store.halt(pool_name, "admin_halt", "drill", "ops")
        assert (
            await store.renew(
                pool_name,
                "a",
                old=lease.lease_id,
                spent=Amounts(calls=4),
                hold=Amounts(calls=1),
                need=Amounts(calls=2),
            )
            is None
        )
        # The lease row and its allotment stay together; the spend is not counted yet.
        assert await _leased_and_rows(store, pool_name) == (10, 10, 1)
        status = await store.status(pool_name)
        assert status is not None and status["dimensions"]["calls"]["used"] == 0
        assert await store.lift(pool_name, "ops", "drill over")
        # The member's next renewal returns the same lease with its spend.
        again = await store.renew(
            pool_name,
            "a",
            old=lease.lease_id,
            spent=Amounts(calls=4),
            hold=ZERO,
            need=Amounts(calls=1),
        )
        assert again is not None
        await store.settle(pool_name, old=again.lease_id, spent=ZERO)
        assert await _leased_and_rows(store, pool_name) == (0, 0, 0)
        status = await store.status(pool_name)
        assert status is not None and status["dimensions"]["calls"]["used"] == 4
    finally:
        await store.close()


async def test_a_renewal_refused_below_its_hold_changes_nothing(
    pool_dsn: str, pool_name: str
) -> None:
    store = await PoolStore.connect(pool_dsn)
    try:
        await store.upsert(pool_name, _spec(calls={"limit": 10}, leaseFraction=0.5))
        a = await store.renew(pool_name, "a", old=None, spent=ZERO, hold=ZERO, need=ZERO)
        b = await store.renew(pool_name, "b", old=None, spent=ZERO, hold=ZERO, need=ZERO)
        assert a is not None and b is not None
        assert (a.allotment.calls, b.allotment.calls) == (5, 3)
        # a wants to keep 9: only 5 (its own) + 2 remain.
        assert (
            await store.renew(
                pool_name,
                "a",
                old=a.lease_id,
                spent=ZERO,
                hold=Amounts(calls=9),
                need=Amounts(calls=9),
            )
            is None
        )
        assert await _leased_and_rows(store, pool_name) == (8, 8, 2)
        # Giving it back returns exactly what it held: b can now take the rest.
        await store.settle(pool_name, old=a.lease_id, spent=Amounts(calls=1))
        assert await _leased_and_rows(store, pool_name) == (3, 3, 1)
        rest = await store.renew(
            pool_name, "b", old=b.lease_id, spent=ZERO, hold=Amounts(calls=9), need=Amounts(calls=9)
        )
        assert rest is not None and rest.allotment.calls == 9
    finally:
        await store.close()


async def test_repair_recomputes_leased_from_the_live_leases(pool_dsn: str, pool_name: str) -> None:
    store = await PoolStore.connect(pool_dsn)
    try:
        await store.upsert(pool_name, _spec(calls={"limit": 50}, leaseFraction=0.2))
        lease = await store.renew(pool_name, "a", old=None, spent=ZERO, hold=ZERO, need=ZERO)
        assert lease is not None and lease.allotment.calls == 10
        # What the old renewal did: a lease row deleted, its allotment left in `leased`.
        stranded = await store.renew(pool_name, "b", old=None, spent=ZERO, hold=ZERO, need=ZERO)
        assert stranded is not None
        await store.conn.execute(
            "DELETE FROM haltgate.pool_leases WHERE id = %s", (stranded.lease_id,)
        )
        assert await _leased_and_rows(store, pool_name) == (18, 10, 1)
        assert await store.repair(pool_name, "alice") == {"calls": {"before": 18, "after": 10}}
        assert await store.repair(pool_name, "alice") == {}  # nothing left to repair
        assert await store.repair(pool_name + "-unknown", "alice") is None
        events = await store.events(pool_name)
        assert events[0]["kind"] == "repair" and events[0]["actor"] == "alice"
        assert events[0]["detail"] == {"calls": {"before": 18, "after": 10}}
        # The whole pool can be spent again.
        await store.settle(pool_name, old=lease.lease_id, spent=ZERO)
        rest = await store.renew(
            pool_name, "c", old=None, spent=ZERO, hold=Amounts(calls=50), need=Amounts(calls=50)
        )
        assert rest is not None and rest.allotment.calls == 50
    finally:
        await store.close()
