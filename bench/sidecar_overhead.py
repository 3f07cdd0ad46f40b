"""Sidecar overhead: the same load hits the stand-in LLM directly and through the sidecar.

Run: ``.venv/bin/python bench/sidecar_overhead.py [--quick] [--audit spool|memory]``

Three processes: the stand-in LLM (``haltgate.testbed.standins.llm``, recording off), the sidecar
(``haltgate sidecar``, explicit mode, uvloop, the full pipeline with guardrails off:
classification, tool authorization, budget reserve/settle with the state file, audit
intent/outcome to the spool with fsync by default) and this load generator. One policy
with every budget configured (limits high enough never to refuse).

1. Latency at ~200 req/s, sequential: requests alternate direct / via the sidecar in one
   interleaved run (same upstream, same moment), paced at 200 req/s overall. Printed:
   p50/p99 of each, the added latency (via - direct, per percentile) and the ratio, plus
   the sidecar's own ``x-haltgate-overhead-ms`` header (its work minus the upstream wait).
   Targets: added p50 <= 0.5 ms, p99 <= 2 ms.
2. Throughput: a closed loop with ``--concurrency`` requests in flight for
   ``--seconds``, direct then via the sidecar. The machine is shared, so "per core" is
   requests divided by the sidecar process's CPU seconds (user + system) in the window;
   the stand-in upstream's requests per its CPU second is the baseline ratio.
   Target: >= 5,000 req/s per core.

The numbers are printed as measured, targets met or not.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable

CHAT = orjson.dumps({"model": "gpt-4o-mini", "max_tokens": 16, "messages": [
    {"role": "system", "content": "You are a helpful research assistant."},
    {"role": "user", "content": "Summarise the findings of the attached report in three "
                                "sentences, keeping the numbers."}]})
TARGET_P50_MS = 0.5
TARGET_P99_MS = 2.0
TARGET_RPS_PER_CORE = 5000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def policy(upstream: str) -> dict[str, Any]:
    return {
        "apiVersion": "haltgate.dev/v1alpha1", "kind": "GovernancePolicy",
        "metadata": {"name": "bench", "namespace": "bench"},
        "spec": {
            "selector": {"matchLabels": {"app": "bench"}},
            "upstreams": [{"name": "llm", "url": upstream, "kind": "llm",
                           "provider": "openai"}],
            "budgets": {
                "calls": {"limit": 10**9, "period": "hour", "window": "rolling"},
                "tokens": {"limit": 10**12, "output": 10**12},
                "costUSD": {"limit": 10**6, "period": "day"},
                "consecutiveFailures": {"limit": 1000},
                "identicalRetries": {"limit": 10**9},
                "riskScore": {"limit": 10**9},
                "distinctTools": {"limit": 1000},
            },
            "tools": {"default": "deny", "rules": [
                {"name": "llm", "action": "allow", "kind": "llm", "models": ["gpt-4o-mini*"],
                 "risk": 0.0}]},
        },
    }


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on {port}")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def one(session: aiohttp.ClientSession, url: str) -> tuple[float, float | None]:
    t0 = time.perf_counter()
    async with session.post(url, data=CHAT, headers={"Content-Type": "application/json"}) as r:
        await r.read()
        if r.status != 200:
            raise SystemExit(f"{url}: HTTP {r.status}: {await r.text()}")
        overhead = r.headers.get("x-haltgate-overhead-ms")
    return (time.perf_counter() - t0) * 1000, float(overhead) if overhead else None


async def latency(targets: dict[str, str], n: int, rate: float) -> dict[str, list[float]]:
    """Round-robin over the targets, paced at ``rate`` requests/s overall."""
    conn = aiohttp.TCPConnector(limit=8)
    out: dict[str, list[float]] = {name: [] for name in targets}
    out["header"] = []
    async with aiohttp.ClientSession(connector=conn) as s:
        for _ in range(200):  # warm-up: connections, caches, first-call paths
            for url in targets.values():
                await one(s, url)
        interval = 1.0 / rate
        nxt = time.perf_counter()
        for _ in range(n):
            for name, url in targets.items():
                nxt += interval
                ms, overhead = await one(s, url)
                out[name].append(ms)
                if overhead is not None:
                    out["header"].append(overhead)
                delay = nxt - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
    return out


async def closed_loop(url: str, seconds: float, concurrency: int) -> tuple[int, float]:
    conn = aiohttp.TCPConnector(limit=concurrency)
    count = 0
    async with aiohttp.ClientSession(connector=conn) as s:
        for _ in range(50):
            await one(s, url)
        stop = time.perf_counter() + seconds
        t0 = time.perf_counter()

        async def worker() -> None:
            nonlocal count
            while time.perf_counter() < stop:
                async with s.post(url, data=CHAT,
                                  headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                count += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return count, time.perf_counter() - t0


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


async def throughput(url: str, seconds: float, concurrency: int,
                     proc: psutil.Process) -> tuple[float, float]:
    """(wall req/s, req per CPU second of ``proc``)."""
    c0 = cpu_seconds(proc)
    n, wall = await closed_loop(url, seconds, concurrency)
    cpu = cpu_seconds(proc) - c0
    return n / wall, n / cpu if cpu > 0 else float("inf")


def serve_bare_relay(port: int, upstream: str) -> None:
    """Baseline: the least an aiohttp proxy does (no governance at all), same loop, same
    keep-alive client. What the sidecar adds on top of this is the pipeline's cost."""
    from aiohttp import web

    async def start() -> None:
        session = aiohttp.ClientSession(auto_decompress=False,
                                        skip_auto_headers=("User-Agent", "Accept-Encoding"))

        async def relay(request: web.Request) -> web.Response:
            body = await request.read()
            rest = request.path_qs.split("/", 2)[2]  # drop the /<alias> prefix
            async with session.request(request.method, f"{upstream}/{rest}", data=body,
                                       headers={"Content-Type": "application/json"}) as r:
                return web.Response(status=r.status, body=await r.read(),
                                    content_type=r.content_type)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", relay)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    import uvloop

    uvloop.run(start())


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-bare-relay":
        serve_bare_relay(int(sys.argv[2]), sys.argv[3])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller run (smoke test)")
    ap.add_argument("--requests", type=int, default=2000, help="per side, latency run")
    ap.add_argument("--rate", type=float, default=200.0, help="requests/s, latency run")
    ap.add_argument("--seconds", type=float, default=8.0, help="per side, throughput run")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--audit", choices=["spool", "memory"], default="spool",
                    help="spool: fsync'd audit spool (production); memory: no audit I/O")
    ap.add_argument("--state", choices=["disk", "tmpfs", "none"], default="disk",
                    help="where the budget state file (and the spool) live: a disk "
                         "directory (production emptyDir), /dev/shm, or nowhere (memory)")
    args = ap.parse_args()
    if args.quick:
        args.requests, args.seconds = 300, 2.0

    bare_port = free_port()
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(REPO))
                                         if p)}
    up_port, sc_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="hg-bench-") as tmp:
        policy_path = Path(tmp) / "policy.yaml"
        policy_path.write_text(yaml.safe_dump(policy(f"http://127.0.0.1:{up_port}")))
        upstream = subprocess.Popen(
            [PY, "-m", "haltgate.testbed.standins.llm", "--port", str(up_port), "--no-record"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if args.state == "tmpfs":
            shm = tempfile.mkdtemp(prefix="hg-bench-", dir="/dev/shm")
            state: Path | None = Path(shm)
        elif args.state == "disk":
            state = Path(tmp) / "state"
        else:
            state = None
        cmd = [PY, "-c", "from haltgate.cli.main import main; main()", "sidecar",
               "--policy", str(policy_path),
               "--mode", "explicit", "--listen", f"127.0.0.1:{sc_port}",
               "--admin-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
               "--log-level", "warning"]
        if state is not None:
            cmd += ["--state-dir", str(state)]
        elif args.audit == "spool":
            cmd += ["--audit-dir", str(Path(tmp) / "audit")]
        cmd += ["--audit-sink", args.audit]
        sidecar = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        bare = subprocess.Popen([PY, __file__, "--serve-bare-relay", str(bare_port),
                                 f"http://127.0.0.1:{up_port}"], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_port(up_port, upstream, "stand-in LLM")
            wait_port(sc_port, sidecar, "sidecar")
            wait_port(bare_port, bare, "bare relay")
            targets = {
                "direct": f"http://127.0.0.1:{up_port}/v1/chat/completions",
                "bare aiohttp relay": f"http://127.0.0.1:{bare_port}/llm/v1/chat/completions",
                "via sidecar": f"http://127.0.0.1:{sc_port}/llm/v1/chat/completions",
            }
            procs = {"direct": psutil.Process(upstream.pid),
                     "bare aiohttp relay": psutil.Process(bare.pid),
                     "via sidecar": psutil.Process(sidecar.pid)}
            run(args, targets, procs)
        finally:
            for proc in (sidecar, bare, upstream):
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            if args.state == "tmpfs" and state is not None:
                shutil.rmtree(state, ignore_errors=True)  # /dev/shm is memory: never leave it


def run(args: argparse.Namespace, targets: dict[str, str],
        procs: dict[str, psutil.Process]) -> None:
    print(f"sidecar overhead bench: audit={args.audit}, state={args.state}, "
          f"{os.cpu_count()} CPUs (shared), load average {os.getloadavg()[0]:.1f}")
    lat = asyncio.run(latency(targets, args.requests, args.rate))
    d, v, h = lat["direct"], lat["via sidecar"], lat["header"]
    print(f"\n1. latency, {args.requests} requests per target, round-robin, "
          f"~{args.rate:.0f} req/s sequential")
    print(f"   {'':24}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'p50 x':>8}{'p99 x':>8}")
    for name in targets:
        xs = lat[name]
        print(f"   {name:24}{pct(xs, .5):9.3f}{pct(xs, .99):9.3f}{statistics.mean(xs):9.3f}"
              f"{pct(xs, .5) / pct(d, .5):8.2f}{pct(xs, .99) / pct(d, .99):8.2f}")
    add50, add99 = pct(v, .5) - pct(d, .5), pct(v, .99) - pct(d, .99)
    print(f"   {'added by the sidecar':24}{add50:9.3f}{add99:9.3f}"
          f"{statistics.mean(v) - statistics.mean(d):9.3f}   (via - direct)")
    if h:
        print(f"   {'x-haltgate-overhead-ms':24}{pct(h, .5):9.3f}{pct(h, .99):9.3f}"
              f"{statistics.mean(h):9.3f}   (sidecar's own work)")
    print(f"   target added p50 <= {TARGET_P50_MS} ms: "
          f"{'met' if add50 <= TARGET_P50_MS else 'NOT met'}; "
          f"p99 <= {TARGET_P99_MS} ms: {'met' if add99 <= TARGET_P99_MS else 'NOT met'}")

    print(f"\n2. throughput, closed loop, {args.concurrency} in flight, "
          f"{args.seconds:.0f} s per target")
    results = {}
    for name, url in targets.items():
        results[name] = asyncio.run(throughput(url, args.seconds, args.concurrency,
                                               procs[name]))
        rps, per_core = results[name]
        print(f"   {name:24}{rps:8.0f} req/s wall {per_core:8.0f} req per CPU-s of its process")
    v_core = results["via sidecar"][1]
    print(f"   sidecar per core vs bare relay: {v_core / results['bare aiohttp relay'][1]:.2f}; "
          f"vs upstream: {v_core / results['direct'][1]:.2f}")
    print(f"   target >= {TARGET_RPS_PER_CORE} req/s per core: "
          f"{'met' if v_core >= TARGET_RPS_PER_CORE else 'NOT met'}")


if __name__ == "__main__":
    main()
