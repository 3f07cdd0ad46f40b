"""Sidecar overhead: the same load hits the stand-in LLM directly, through a bare aiohttp
relay and through the sidecar (guardrails off, then on), all in one run.

Run: ``.venv/bin/python bench/sidecar_overhead.py [--quick] [--audit spool|memory]
[--state disk|tmpfs|none] [--durability strict|overlapped]``

Processes: the stand-in LLM (``haltgate.testbed.standins.llm``, recording off), a bare
aiohttp relay (no governance: the Python floor), two sidecars (``haltgate sidecar``,
explicit mode, uvloop, the full pipeline: classification, tool authorization, budget
reserve/settle with the state file, audit intent/outcome to the spool with fsync by
default), one with guardrails off and one with prompt-injection, PII (redact) and secrets
detectors on requests and responses, and this load generator. One policy with every
budget configured (limits high enough never to refuse).

Every figure of a sidecar is also given as a ratio against the bare relay measured in the
same run (the machine is shared: absolute numbers drift between runs, ratios less):

1. Latency at ~200 req/s, sequential: requests go round-robin to every target (same
   upstream, same moment; each round in its own shuffled order, so no target keeps the
   place after the heaviest one). Printed: p50/p99, the latency added over direct, that
   added latency as a multiple of the relay's, and CPU-ms per call of the process (its CPU
   time in the run over the calls it served) and its multiple of the relay's.
2. Streaming time to first byte: streamed chat requests, round-robin (shuffled), paced; time from
   sending the request to the first body bytes, added over direct, as a multiple of the
   relay's added time.
3. Throughput: a closed loop with ``--concurrency`` requests in flight for ``--seconds``
   per target; requests per CPU second of the target's process, and its ratio to the
   relay's.

Each sidecar's own time (its ``x-haltgate-overhead-ms`` header: identify to answer built,
the upstream's wait excluded) is printed per sidecar: with ``--baseline`` it compares the
two trees' governed work without the network's jitter. ``--latency-only`` stops after 1
(an A/B pair in ~1.5 minutes).

Targets (issue 18): governance tax (sidecar added p50 minus the relay's) <= 0.3 ms; CPU
per call <= 2.0x the relay; guardrails on <= +0.3 CPU-ms per call over guardrails off;
streaming TTFB tax <= 0.3 ms. Printed as measured, met or not.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil
import yaml

from haltgate.testbed.cli_processes import explicit_sidecar_argv

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable

CHAT = orjson.dumps(
    {
        "model": "gpt-4o-mini",
        "max_tokens": 16,
        "messages": [
            {"role": "system", "content": "You are a helpful research assistant."},
            {
                "role": "user",
                "content": "Summarise the findings of the attached report in three "
                "sentences, keeping the numbers.",
            },
        ],
    }
)
STREAM_CHAT = orjson.dumps({**orjson.loads(CHAT), "stream": True})
TARGET_TAX_MS = 0.3
TARGET_CPU_X_RELAY = 2.0
TARGET_GUARDRAILS_CPU_MS = 0.3
TARGET_TTFB_TAX_MS = 0.3
RELAY = "bare aiohttp relay"
HEADER = "x-haltgate-overhead-ms of "
SIDECAR = "via sidecar"
GUARDED = "sidecar, guardrails on"
OTHER_SERVER = "sidecar, {} server"
HTTP_SERVERS = ("llhttp", "aiohttp")
BASELINE = "sidecar, --baseline tree"
BASELINE_GUARDED = "guarded, --baseline tree"
GUARDRAILS = {
    "promptInjection": {"direction": "request", "action": "block"},
    "pii": {"direction": "both", "action": "redact", "entities": ["email", "phone"]},
    "secrets": {"direction": "both", "action": "block"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def policy(upstream: str, guardrails: bool = False, durability: str = "strict") -> dict[str, Any]:
    doc = {
        "apiVersion": "haltgate.dev/v1alpha1",
        "kind": "GovernancePolicy",
        "metadata": {"name": "bench", "namespace": "bench"},
        "spec": {
            "selector": {"matchLabels": {"app": "bench"}},
            "upstreams": [{"name": "llm", "url": upstream, "kind": "llm", "provider": "openai"}],
            "budgets": {
                "calls": {"limit": 10**9, "period": "hour", "window": "rolling"},
                "tokens": {"limit": 10**12, "output": 10**12},
                "costUSD": {"limit": 10**6, "period": "day"},
                "consecutiveFailures": {"limit": 1000},
                "identicalRetries": {"limit": 10**9},
                "riskScore": {"limit": 10**9},
                "distinctTools": {"limit": 1000},
            },
            "tools": {
                "default": "deny",
                "rules": [
                    {
                        "name": "llm",
                        "action": "allow",
                        "kind": "llm",
                        "models": ["gpt-4o-mini*"],
                        "risk": 0.0,
                    }
                ],
            },
        },
    }
    if guardrails:
        doc["spec"]["guardrails"] = GUARDRAILS  # type: ignore[index]
    if durability != "strict":
        doc["spec"]["audit"] = {"durability": durability}  # type: ignore[index]
    return doc


def start_standin_llm(port: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """The stand-in LLM upstream as a child process on ``port`` (no call log kept: the
    benchmarks send thousands of calls); wait for it with :func:`wait_port`."""
    return subprocess.Popen(
        [PY, "-m", "haltgate.testbed.standins.llm", "--port", str(port), "--no-record"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def run_with_standin_llm(
    make: Callable[[Path, int], Coroutine[Any, Any, None]],
    *,
    prefix: str,
    tmp_dir: str | None,
    env: dict[str, str] | None = None,
) -> None:
    """Start the stand-in LLM, run ``make(tmp, port)`` on uvloop with a fresh temporary
    directory (under ``tmp_dir``: ``/dev/shm`` keeps the disk out, None is the default
    temporary folder), then stop the stand-in: the frame of the single-call benchmarks."""
    import uvloop

    port = free_port()
    upstream = start_standin_llm(port, env)
    try:
        wait_port(port, upstream, "stand-in LLM")
        with tempfile.TemporaryDirectory(prefix=prefix, dir=tmp_dir) as tmp:
            uvloop.run(make(Path(tmp), port))
    finally:
        upstream.terminate()
        upstream.wait(10)


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


async def first_byte(session: aiohttp.ClientSession, url: str) -> float:
    """Milliseconds from sending a streamed request to the first bytes of its body."""
    t0 = time.perf_counter()
    async with session.post(
        url, data=STREAM_CHAT, headers={"Content-Type": "application/json"}
    ) as r:
        if r.status != 200:
            raise SystemExit(f"{url}: HTTP {r.status}: {await r.text()}")
        await r.content.readany()
        ttfb = (time.perf_counter() - t0) * 1000
        await r.read()
    return ttfb


def rounds(targets: dict[str, str], n: int) -> list[list[tuple[str, str]]]:
    """``n`` rounds over the targets, each in its own order (seeded): a target's place in a
    round is not neutral (the one before it may still be finishing its call's work on the
    shared CPUs), so no target keeps the same place."""
    rng = random.Random(18)
    out = []
    for _ in range(n):
        order = list(targets.items())
        rng.shuffle(order)
        out.append(order)
    return out


async def streaming(targets: dict[str, str], n: int, rate: float) -> dict[str, list[float]]:
    """Time to first byte of streamed answers, round-robin, paced at ``rate`` overall."""
    out: dict[str, list[float]] = {name: [] for name in targets}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=8)) as s:
        for _ in range(50):
            for url in targets.values():
                await first_byte(s, url)
        interval = 1.0 / rate
        nxt = time.perf_counter()
        for order in rounds(targets, n):
            for name, url in order:
                nxt += interval
                out[name].append(await first_byte(s, url))
                delay = nxt - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
    return out


async def latency(targets: dict[str, str], n: int, rate: float) -> dict[str, list[float]]:
    """Round-robin over the targets, paced at ``rate`` requests/s overall."""
    conn = aiohttp.TCPConnector(limit=8)
    out: dict[str, list[float]] = {name: [] for name in targets}
    headers: dict[str, list[float]] = {}
    async with aiohttp.ClientSession(connector=conn) as s:
        for _ in range(200):  # warm-up: connections, caches, first-call paths
            for url in targets.values():
                await one(s, url)
        interval = 1.0 / rate
        nxt = time.perf_counter()
        for order in rounds(targets, n):
            for name, url in order:
                nxt += interval
                ms, overhead = await one(s, url)
                out[name].append(ms)
                if overhead is not None:
                    headers.setdefault(name, []).append(overhead)
                delay = nxt - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
    out.update({f"{HEADER}{name}": values for name, values in headers.items()})
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
                async with s.post(
                    url, data=CHAT, headers={"Content-Type": "application/json"}
                ) as r:
                    await r.read()
                count += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return count, time.perf_counter() - t0


async def paced(url: str, seconds: float, rate: float, stream: bool = False) -> tuple[int, float]:
    """One request at a time at ``rate`` requests/s for ``seconds`` (after a warm-up);
    ``stream``: streamed chat requests."""
    count = 0
    call = first_byte if stream else one
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as s:
        for _ in range(50):
            await call(s, url)
        interval = 1.0 / rate
        t0 = nxt = time.perf_counter()
        stop = t0 + seconds
        while time.perf_counter() < stop:
            await call(s, url)
            count += 1
            nxt += interval
            delay = nxt - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        return count, time.perf_counter() - t0


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


async def throughput(
    url: str, seconds: float, concurrency: int, proc: psutil.Process
) -> tuple[float, float]:
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
        session = aiohttp.ClientSession(
            auto_decompress=False, skip_auto_headers=("User-Agent", "Accept-Encoding")
        )

        async def relay(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            rest = request.path_qs.split("/", 2)[2]  # drop the /<alias> prefix
            async with session.request(
                request.method,
                f"{upstream}/{rest}",
                data=body,
                headers={"Content-Type": "application/json"},
            ) as r:
                if r.content_type != "text/event-stream":
                    return web.Response(
                        status=r.status, body=await r.read(), content_type=r.content_type
                    )
                resp = web.StreamResponse(
                    status=r.status, headers={"Content-Type": "text/event-stream"}
                )
                await resp.prepare(request)
                async for chunk in r.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
                return resp

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
    ap.add_argument("--requests", type=int, default=2000, help="per target, latency run")
    ap.add_argument("--rate", type=float, default=200.0, help="requests/s, latency run")
    ap.add_argument("--seconds", type=float, default=8.0, help="per target, throughput run")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument(
        "--audit",
        choices=["spool", "memory"],
        default="spool",
        help="spool: fsync'd audit spool (production); memory: no audit I/O",
    )
    ap.add_argument(
        "--durability",
        choices=["strict", "overlapped"],
        default="strict",
        help="spec.audit.durability of the sidecars' policy (overlapped: the intent's fsync "
        "overlaps forwarding)",
    )
    ap.add_argument(
        "--state",
        choices=["disk", "tmpfs", "none"],
        default="disk",
        help="where the budget state file (and the spool) live: a disk "
        "directory (production emptyDir), /dev/shm, or nowhere (memory)",
    )
    ap.add_argument(
        "--http-server",
        choices=HTTP_SERVERS,
        default="llhttp",
        help="the sidecars' explicit-port server (haltgate's own over llhttp, or aiohttp's)",
    )
    ap.add_argument(
        "--server-leg",
        action="store_true",
        help="also a sidecar (guardrails off) on the other explicit-port server, to compare "
        "the server legs in the same run",
    )
    ap.add_argument(
        "--baseline",
        type=Path,
        help="a source tree of haltgate (e.g. `git archive` of another commit, unpacked): two "
        "more sidecars (guardrails off and on) run from it in the same run, interleaved, for "
        "an A/B on the same minutes",
    )
    ap.add_argument(
        "--latency-only",
        action="store_true",
        help="part 1 only (the governance tax and CPU per call): for A/B pairs in a row",
    )
    args = ap.parse_args()
    if args.quick:
        args.requests, args.seconds = 300, 2.0

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(REPO)) if p),
    }
    up_port, bare_port = free_port(), free_port()
    # Round-robin order: the other server's sidecar right after the first (so that both
    # follow a light target, not the guardrails' sidecar).
    other = next(s for s in HTTP_SERVERS if s != args.http_server)
    ports = {SIDECAR: free_port()}
    if args.server_leg:
        ports[OTHER_SERVER.format(other)] = free_port()
    ports[GUARDED] = free_port()
    if args.baseline is not None:
        ports[BASELINE] = free_port()
        ports[BASELINE_GUARDED] = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    shm: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="hg-bench-") as tmp:
        upstream_url = f"http://127.0.0.1:{up_port}"
        try:
            upstream = start_standin_llm(up_port, env)
            procs.append(upstream)
            sidecars = {}
            for name, port in ports.items():
                work = Path(tmp) / name.replace(" ", "-").replace(",", "")
                work.mkdir()
                sidecars[name] = start_sidecar(
                    args,
                    work,
                    port,
                    policy(
                        upstream_url,
                        guardrails=name in (GUARDED, BASELINE_GUARDED),
                        durability=args.durability,
                    ),
                    tree_env(env, args.baseline) if name in (BASELINE, BASELINE_GUARDED) else env,
                    shm,
                    # The baseline tree runs as it is (it may predate --http-server).
                    None
                    if name in (BASELINE, BASELINE_GUARDED)
                    else other
                    if name == OTHER_SERVER.format(other)
                    else args.http_server,
                )
                procs.append(sidecars[name])
            bare = subprocess.Popen(
                [PY, __file__, "--serve-bare-relay", str(bare_port), upstream_url],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            procs.append(bare)
            wait_port(up_port, upstream, "stand-in LLM")
            for name, port in ports.items():
                wait_port(port, sidecars[name], name)
            wait_port(bare_port, bare, "bare relay")
            targets = {
                "direct": f"{upstream_url}/v1/chat/completions",
                RELAY: f"http://127.0.0.1:{bare_port}/llm/v1/chat/completions",
                **{
                    name: f"http://127.0.0.1:{port}/llm/v1/chat/completions"
                    for name, port in ports.items()
                },
            }
            processes = {
                "direct": psutil.Process(upstream.pid),
                RELAY: psutil.Process(bare.pid),
                **{name: psutil.Process(p.pid) for name, p in sidecars.items()},
            }
            run(args, targets, processes)
        finally:
            for proc in reversed(procs):
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            for path in shm:
                shutil.rmtree(path, ignore_errors=True)  # /dev/shm is memory: never leave it


def tree_env(env: dict[str, str], tree: Path) -> dict[str, str]:
    """``env`` with the packages of another source ``tree`` first on the path."""
    tree = tree.resolve()
    dirs = [str(tree / d) for d in ("sidecar", "governance", "cli", "testbed", "operator")]
    return {**env, "PYTHONPATH": os.pathsep.join([*dirs, env["PYTHONPATH"]])}


def start_sidecar(
    args: argparse.Namespace,
    work: Path,
    port: int,
    doc: dict[str, Any],
    env: dict[str, str],
    shm: list[Path],
    http_server: str | None = None,
) -> subprocess.Popen[bytes]:
    policy_path = work / "policy.yaml"
    policy_path.write_text(yaml.safe_dump(doc))
    state: Path | None
    if args.state == "tmpfs":
        state = Path(tempfile.mkdtemp(prefix="hg-bench-", dir="/dev/shm"))
        shm.append(state)
    elif args.state == "disk":
        state = work / "state"
    else:
        state = None
    cmd = explicit_sidecar_argv(policy_path, port, log_level="warning")
    if state is not None:
        cmd += ["--state-dir", str(state)]
    elif args.audit == "spool":
        cmd += ["--audit-dir", str(work / "audit")]
    cmd += ["--audit-sink", args.audit]
    if http_server is not None:
        cmd += ["--http-server", http_server]
    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def run(
    args: argparse.Namespace, targets: dict[str, str], procs: dict[str, psutil.Process]
) -> None:
    print(
        f"sidecar overhead bench: audit={args.audit}, state={args.state}, "
        f"durability={args.durability}, "
        f"{os.cpu_count()} CPUs (shared), load average {os.getloadavg()[0]:.1f}"
    )
    cpu0 = {name: cpu_seconds(p) for name, p in procs.items()}
    lat = asyncio.run(latency(targets, args.requests, args.rate))
    calls = args.requests + 200  # the warm-up calls count too
    cpu_ms = {name: (cpu_seconds(p) - cpu0[name]) * 1000 / calls for name, p in procs.items()}
    cpu_ms["direct"] /= len(targets)  # the upstream served every target's calls
    d = lat["direct"]
    added = {
        name: (pct(xs, 0.5) - pct(d, 0.5), pct(xs, 0.99) - pct(d, 0.99))
        for name, xs in lat.items()
        if name in targets
    }
    r50, r99 = added[RELAY]
    print(
        f"\n1. latency, {args.requests} requests per target, round-robin, "
        f"~{args.rate:.0f} req/s sequential (x relay: added latency as a multiple of "
        "the relay's; CPU-ms per call of the target's process)"
    )
    print(
        f"   {'':24}{'p50 ms':>8}{'p99 ms':>8}{'+p50':>8}{'+p99':>8}{'+p50 x':>8}"
        f"{'+p99 x':>8}{'CPU-ms':>8}{'CPU x':>7}"
    )
    for name in targets:
        xs = lat[name]
        a50, a99 = added[name]
        ratio = (
            f"{a50 / r50:8.2f}{a99 / r99:8.2f}"
            if name != "direct" and r50 > 0 and r99 > 0
            else f"{'':8}{'':8}"
        )
        print(
            f"   {name:24}{pct(xs, 0.5):8.3f}{pct(xs, 0.99):8.3f}{a50:8.3f}{a99:8.3f}{ratio}"
            f"{cpu_ms[name]:8.3f}{cpu_ms[name] / cpu_ms[RELAY]:7.2f}"
        )
    # The sidecar's own time by its header (upstream wait excluded): per sidecar, so an
    # A/B (--baseline) compares the governed work itself, without the network's jitter.
    own = [
        f"{name} p50 {pct(lat[HEADER + name], 0.5):.3f}, p99 {pct(lat[HEADER + name], 0.99):.3f}"
        for name in targets
        if lat.get(HEADER + name)
    ]
    if own:
        print("   x-haltgate-overhead-ms (the sidecar's own time): " + "; ".join(own))
    tax = added[SIDECAR][0] - r50
    cpu_x = cpu_ms[SIDECAR] / cpu_ms[RELAY]
    guard_cpu = cpu_ms[GUARDED] - cpu_ms[SIDECAR]
    if BASELINE in targets:
        print(
            f"   baseline tree: governance tax {added[BASELINE][0] - r50:.3f} ms, CPU per call "
            f"{cpu_ms[BASELINE] / cpu_ms[RELAY]:.2f}x the relay, guardrails on add "
            f"{cpu_ms[BASELINE_GUARDED] - cpu_ms[BASELINE]:+.3f} CPU-ms per call"
        )
    print(
        f"   governance tax (sidecar +p50 - relay +p50): {tax:.3f} ms "
        f"(target <= {TARGET_TAX_MS}: {_met(tax <= TARGET_TAX_MS)}); CPU per call "
        f"{cpu_x:.2f}x the relay (target <= {TARGET_CPU_X_RELAY}: "
        f"{_met(cpu_x <= TARGET_CPU_X_RELAY)}); guardrails on add {guard_cpu:+.3f} CPU-ms "
        f"per call (target <= +{TARGET_GUARDRAILS_CPU_MS}: "
        f"{_met(guard_cpu <= TARGET_GUARDRAILS_CPU_MS)})"
    )
    if args.latency_only:
        return

    n_stream = max(50, args.requests // 2)
    ttfb = asyncio.run(streaming(targets, n_stream, args.rate))
    t50 = pct(ttfb["direct"], 0.5)
    relay_added = pct(ttfb[RELAY], 0.5) - t50
    print(
        f"\n2. streaming time to first byte, {n_stream} streamed requests per target, round-robin"
    )
    print(f"   {'':24}{'p50 ms':>8}{'p99 ms':>8}{'+p50':>8}{'+p50 x':>8}")
    for name in targets:
        xs = ttfb[name]
        a50 = pct(xs, 0.5) - t50
        ratio = f"{a50 / relay_added:8.2f}" if name != "direct" and relay_added > 0 else ""
        print(f"   {name:24}{pct(xs, 0.5):8.3f}{pct(xs, 0.99):8.3f}{a50:8.3f}{ratio}")
    ttfb_tax = pct(ttfb[SIDECAR], 0.5) - pct(ttfb[RELAY], 0.5)
    if BASELINE in targets:
        print(
            "   baseline tree: streaming TTFB tax "
            f"{pct(ttfb[BASELINE], 0.5) - pct(ttfb[RELAY], 0.5):.3f} ms"
        )
    print(
        f"   streaming TTFB tax (sidecar - relay, p50): {ttfb_tax:.3f} ms "
        f"(target <= {TARGET_TTFB_TAX_MS}: {_met(ttfb_tax <= TARGET_TTFB_TAX_MS)})"
    )

    print(
        f"\n3. throughput, closed loop, {args.concurrency} in flight, "
        f"{args.seconds:.0f} s per target"
    )
    results = {}
    for name, url in targets.items():
        results[name] = asyncio.run(throughput(url, args.seconds, args.concurrency, procs[name]))
    for name, (rps, per_core) in results.items():
        times = per_core / results[RELAY][1]
        print(
            f"   {name:24}{rps:8.0f} req/s wall {per_core:8.0f} req per CPU-s of its "
            f"process ({times:.2f}x the relay)"
        )
    other = OTHER_SERVER.format(next(s for s in HTTP_SERVERS if s != args.http_server))
    if other in targets:
        # --server-leg: the two explicit-port servers, both guardrails off, same run.
        ttfb_other = pct(ttfb[other], 0.5) - t50
        ttfb_this = pct(ttfb[SIDECAR], 0.5) - t50
        print(
            f"\n4. server leg ({args.http_server} = '{SIDECAR}' vs '{other}', both guardrails "
            f"off): added p50 {added[SIDECAR][0]:.3f} vs {added[other][0]:.3f} ms "
            f"(tax over the relay {added[SIDECAR][0] - r50:.3f} vs {added[other][0] - r50:.3f}); "
            f"CPU-ms per call {cpu_ms[SIDECAR]:.3f} vs {cpu_ms[other]:.3f} "
            f"({cpu_ms[SIDECAR] / cpu_ms[other]:.2f}x; x relay "
            f"{cpu_ms[SIDECAR] / cpu_ms[RELAY]:.2f} vs {cpu_ms[other] / cpu_ms[RELAY]:.2f}); "
            f"added TTFB {ttfb_this:.3f} vs "
            f"{ttfb_other:.3f} ms; req per CPU-s {results[SIDECAR][1]:.0f} vs "
            f"{results[other][1]:.0f} ({results[SIDECAR][1] / results[other][1]:.2f}x)"
        )


if __name__ == "__main__":
    main()
