"""PoolClient against a real PostgreSQL: local spending, renewal, halts, fail closed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from haltgate.governance.errors import DeniedError, UnavailableError
from haltgate.governance.policy import BudgetPoolSpec
from haltgate.governance.policy_base import FailureType
from haltgate.governance.pool.client import PoolClient, PoolSettings
from haltgate.governance.pool.lease import Amounts
from haltgate.governance.pool.store import PoolStore

pytestmark = pytest.mark.postgres

ONE = Amounts(calls=1)
NOTIFY_WAIT_SECONDS = 15.0
"""Below the members' 30 s state re-read: a halt seen sooner came by NOTIFY."""


async def _until(ready: Callable[[], bool], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.01)):  # bounded
        if ready():
            return
        await asyncio.sleep(0.01)


async def _pool(dsn: str, name: str, **spec: object) -> None:
    store = await PoolStore.connect(dsn)
    await store.upsert(name, BudgetPoolSpec.model_validate(spec))
    await store.close()


async def _status(dsn: str, name: str) -> dict[str, Any] | None:
    store = await PoolStore.connect(dsn)
    try:
        return await store.status(name)
    finally:
        await store.close()


def _client(dsn: str, name: str, holder: str, **kw: object) -> PoolClient:
    options: dict[str, object] = {"poll_interval": 0.2, **kw}
    return PoolClient(PoolSettings(dsn=dsn, pool=name, holder=holder, **options))  # type: ignore[arg-type]


async def test_members_spend_exactly_the_pool_between_them(pool_dsn: str, pool_name: str) -> None:
    await _pool(pool_dsn, pool_name, calls={"limit": 120}, leaseFraction=0.2)
    members = [_client(pool_dsn, pool_name, f"ns/m{i}/p") for i in range(4)]
    for m in members:
        await m.start()
    granted = 0
    try:

        async def spend(m: PoolClient, tag: str) -> int:
            n = 0
            for i in range(200):  # bounded: more than the whole pool
                if await m.reserve(f"{tag}-{i}", ONE) is None:
                    m.settle(f"{tag}-{i}", ONE)
                    n += 1
                await asyncio.sleep(0)
            return n

        counts = await asyncio.gather(*(spend(m, f"m{i}") for i, m in enumerate(members)))
        granted = sum(counts)
        round_trips = sum(m.lease_round_trips for m in members)
    finally:
        for m in members:
            await m.close()
    assert granted == 120
    # Calls were batched into leases: fewer database round trips than calls. How few depends
    # on scheduling (a slow member renews more often), so the figure itself is measured in
    # bench/pool.py; this bound holds under any load.
    assert round_trips < granted
    status = await _status(pool_dsn, pool_name)
    assert status is not None
    assert status["dimensions"]["calls"]["used"] == 120
    assert status["dimensions"]["calls"]["leased"] == 0


async def test_a_halt_reaches_every_member_by_notification(pool_dsn: str, pool_name: str) -> None:
    await _pool(pool_dsn, pool_name, calls={"limit": 1000})
    a = _client(pool_dsn, pool_name, "ns/a/p", poll_interval=30.0)  # NOTIFY, not polling
    b = _client(pool_dsn, pool_name, "ns/b/p", poll_interval=30.0)
    await a.start()
    await b.start()
    try:
        assert await b.reserve("x", ONE) is None
        await a.halt("cascade_loop", "ns/a -> ns/b -> ns/a", "ns/a")
        # b re-reads the state only every 30 s: halted well before that, it heard the NOTIFY.
        # (The latency is a figure of bench/pool.py, not asserted here.)
        await _until(lambda: b.halted, seconds=NOTIFY_WAIT_SECONDS)
        assert b.halted
        refusal = await b.reserve("y", ONE)
        assert isinstance(refusal, DeniedError) and refusal.code == "pool_halted"
        snap = b.snapshot()
        assert snap["state"] == "Halted" and snap["halt"]["code"] == "cascade_loop"
        assert snap["lease"]["spent"]["calls"] + snap["lease"]["reserved"]["calls"] == 1
        assert refusal.failure_type is FailureType.EXTERNAL
        store = await PoolStore.connect(pool_dsn)
        await store.lift(pool_name, "test", "resume")
        await store.close()
        await _until(lambda: not b.halted)
        assert await b.reserve("z", ONE) is None
    finally:
        await a.close()
        await b.close()


async def test_unreachable_database_fails_closed_after_the_lease(pool_name: str) -> None:
    # Nothing listens on port 1: the member never gets a lease and refuses every call.
    m = _client(
        "postgresql://postgres@127.0.0.1:1/none",
        pool_name,
        "ns/a/p",
        connect_timeout=1,
        op_timeout=1.0,
    )
    await m.start()
    try:
        refusal = await m.reserve("x", ONE)
        assert isinstance(refusal, UnavailableError) and refusal.code == "pool_unreachable"
        assert m.metrics.failures.labels("closed")._value.get() == 1
    finally:
        await m.close()


async def test_exhausted_pool_refuses_with_the_dimension(pool_dsn: str, pool_name: str) -> None:
    await _pool(pool_dsn, pool_name, calls={"limit": 3}, leaseFraction=1.0)
    m = _client(pool_dsn, pool_name, "ns/a/p")
    await m.start()
    try:
        for i in range(3):
            assert await m.reserve(str(i), ONE) is None
            m.settle(str(i), ONE)
        refusal = await m.reserve("3", ONE)
        assert isinstance(refusal, DeniedError) and refusal.code == "pool_calls_exhausted"
        assert refusal.failure_type is FailureType.EXHAUSTION
    finally:
        await m.close()


class _CuttableLink:
    """A TCP relay to PostgreSQL that the test can cut and restore (a network stand-in)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.up = True
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        self.up = False
        for w in self.writers:
            w.close()
        self.writers.clear()

    async def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()


async def test_database_outage_spends_the_lease_then_fails_closed_then_recovers(
    pool_dsn: str, pool_name: str
) -> None:
    await _pool(pool_dsn, pool_name, calls={"limit": 10_000}, leaseFraction=0.5, leaseSeconds=2)
    host_port = pool_dsn.split("@", 1)[1].split("/", 1)[0]
    link = _CuttableLink(int(host_port.rsplit(":", 1)[1]))
    port = await link.start()
    m = _client(
        pool_dsn.replace(host_port, f"127.0.0.1:{port}"),
        pool_name,
        "ns/a/p",
        op_timeout=0.5,
        connect_timeout=1,
    )
    await m.start()
    try:
        assert await m.reserve("before", ONE) is None
        m.settle("before", ONE)
        link.cut()
        # The lease was granted: it is spent locally, no database needed.
        assert await m.reserve("during", ONE) is None
        m.settle("during", ONE)
        # Past its local deadline the member refuses: fail closed, counted.
        refusal = None
        passed = 3  # before, during, after
        for i in range(60):  # bounded: about 3 s, the lease lasts at most 1.6 s
            refusal = await m.reserve(f"late-{i}", ONE)
            if refusal is not None:
                break
            m.settle(f"late-{i}", ONE)
            passed += 1
            await asyncio.sleep(0.05)
        assert isinstance(refusal, UnavailableError) and refusal.code == "pool_unreachable"
        assert m.metrics.failures.labels("closed")._value.get() >= 1
        link.up = True
        await _until(
            lambda: m.lease is not None and time.monotonic() < m.lease.deadline and m._reachable,
            seconds=8,
        )
        assert await m.reserve("after", ONE) is None
        m.settle("after", ONE)
    finally:
        await m.close()
        await link.close()
    status = await _status(pool_dsn, pool_name)
    assert status is not None and status["leases"] == 0
    # Every call that passed was counted, the ones during the outage too.
    assert status["dimensions"]["calls"]["used"] == passed


async def test_a_member_whose_lease_was_given_away_recovers(pool_dsn: str, pool_name: str) -> None:
    await _pool(pool_dsn, pool_name, calls={"limit": 10}, leaseFraction=1.0, leaseSeconds=0.5)
    # "paused" never renews in the background (as if frozen); "other" sweeps and takes all.
    paused = _client(pool_dsn, pool_name, "ns/paused/p", poll_interval=60.0, renew_age=1000.0)
    await paused.start()
    other = _client(pool_dsn, pool_name, "ns/other/p", poll_interval=0.1)
    try:
        assert await paused.reserve("p1", ONE) is None
        paused.settle("p1", ONE)
        await asyncio.sleep(0.7)  # the paused member's lease expires in the database
        await other.start()
        await _until(lambda: other.lease is not None and other.lease.allotment.calls >= 9)
        # The paused member is not stuck asking for its old allotment: it is told the
        # pool is short (not that the database is unreachable) ...
        refusal = await paused.reserve("p2", ONE)
        assert isinstance(refusal, DeniedError) and refusal.code == "pool_calls_exhausted"
        # ... and gets budget again once the other member returns what it did not spend.
        await other.close()
        await asyncio.sleep(1.1)  # past the short-pool back-off
        assert await paused.reserve("p3", ONE) is None
        paused.settle("p3", ONE)
    finally:
        await paused.close()
        await other.close()
    status = await _status(pool_dsn, pool_name)
    assert status is not None and status["dimensions"]["calls"]["used"] == 2


async def test_halt_lift_cycles_under_load_leave_the_whole_pool_spendable(
    pool_dsn: str, pool_name: str
) -> None:
    """Issue 16: renewals refused by a halt (or by a short pool) used to delete their lease
    without returning its allotment, so every halt drill shrank the pool for good."""
    limit, cycles = 3000, 12
    # Small leases and a long lease time: many renewals, and no expiry sweep to hide a leak.
    await _pool(pool_dsn, pool_name, calls={"limit": limit}, leaseFraction=0.01, leaseSeconds=300)
    members = [_client(pool_dsn, pool_name, f"ns/m{i}/p", poll_interval=0.05) for i in range(4)]
    for m in members:
        await m.start()
    admin = await PoolStore.connect(pool_dsn)
    stop = asyncio.Event()
    spent = 0

    async def load(m: PoolClient, tag: str) -> int:
        n = 0
        for i in range(5000):  # bounded; ends when the halter is done
            if stop.is_set():
                break
            if await m.reserve(f"{tag}-{i}", ONE) is None:
                m.settle(f"{tag}-{i}", ONE)
                n += 1
            await asyncio.sleep(0.001 if i % 3 else 0)
        return n

    async def halter() -> None:
        for i in range(cycles):
            await asyncio.sleep(0.04)
            assert await admin.halt(pool_name, "admin_halt", f"drill {i}", "test")
            await asyncio.sleep(0.03)
            assert await admin.lift(pool_name, "test", f"drill {i} over")
        stop.set()

    try:
        tasks = [load(m, f"m{i}") for i, m in enumerate(members)]
        *counts, _ = await asyncio.gather(*tasks, halter())
        spent += sum(counts)
    finally:
        for m in members:
            await m.close()
    status = await admin.status(pool_name)
    assert status is not None
    assert status["leases"] == 0
    assert status["dimensions"]["calls"]["leased"] == 0, "allotment stranded by halts"
    assert status["dimensions"]["calls"]["used"] == spent
    assert 0 < spent < limit

    # The rest of the pool can be spent, to exactly its limit.
    fresh = [_client(pool_dsn, pool_name, f"ns/f{i}/p") for i in range(3)]
    for m in fresh:
        await m.start()
    try:

        async def drain(m: PoolClient, tag: str) -> int:
            n = 0
            for i in range(limit):  # bounded: never more calls than the pool holds
                if await m.reserve(f"{tag}-{i}", ONE) is not None:
                    break
                m.settle(f"{tag}-{i}", ONE)
                n += 1
            return n

        spent += sum(await asyncio.gather(*(drain(m, f"f{i}") for i, m in enumerate(fresh))))
    finally:
        for m in fresh:
            await m.close()
        status = await admin.status(pool_name)
        await admin.close()
    assert spent == limit
    assert status is not None
    assert status["dimensions"]["calls"]["used"] == limit
    assert status["dimensions"]["calls"]["leased"] == 0
