"""Transparent-mode overhead: the agent's own connections, redirected by iptables, vs direct.

Run (root: network namespaces and iptables): ``.venv/bin/python bench/transparent_overhead.py
[--quick]``

Set-up, as in a pod: a "pod" and an "upstream" network namespace (haltgate.testbed.netns),
the stand-in LLM in the upstream namespace on ports 80 and 8081 (one process, one app), the
real ``haltgate sidecar`` (transparent + explicit, full pipeline, guardrails off, audit
spool and budget state on disk) under UID 17337 in the pod, and ``haltgate iptables apply``
with ``--exclude-port 8081``. The load generator runs in the pod as the agent (UID 1000):

- ``direct``: ``http://llm.test:8081/...`` (excluded port: not redirected) — the baseline;
- ``transparent``: ``http://llm.test/...`` (REDIRECTed to 17001, peeked, handed over);
- ``explicit``: ``http://127.0.0.1:17000/llm/...`` (same pipeline, no redirect).

It prints the same tables as bench/sidecar_overhead.py (whose load functions it reuses):
latency at ~200 req/s interleaved in one run (p50/p99 and added ms), then closed-loop
throughput with requests per CPU second of the sidecar process. Targets (issue 3): added
p50 <= 0.5 ms, p99 <= 2 ms; >= 5,000 req/s per core.

``--http-server llhttp|aiohttp|both`` (default both) with ``--rounds N`` (default 2): the
sidecar is started on each server in turn, the order swapped every round (llhttp, aiohttp;
aiohttp, llhttp; ...), all in the same topology, and a last table gives the transparent
target per round (CPU-ms per call, p50, added p50/p99, added p50 on a new connection each,
load average) with the range across rounds and the llhttp/aiohttp CPU ratio of each round.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from haltgate.sidecar.startup import HTTP_SERVERS  # noqa: E402
from haltgate.testbed import netns as harness  # noqa: E402

TARGET_P50_MS, TARGET_P99_MS, TARGET_RPS_PER_CORE = 0.5, 2.0, 5000  # issue 3's
RESULT = "RESULT "
"""Prefix of the client's machine-readable line (read by the orchestrator)."""

SIDECAR_UID, AGENT_UID = 17337, 1000

POLICY = """\
apiVersion: haltgate.dev/v1alpha1
kind: GovernancePolicy
metadata: {name: bench, namespace: bench}
spec:
  upstreams:
    - {name: llm, url: "http://llm.test", kind: llm, provider: openai}
  budgets:
    calls: {limit: 1000000000, period: hour, window: rolling}
    tokens: {limit: 1000000000000, output: 1000000000000}
  tools:
    default: deny
    rules:
      - {name: llm, action: allow, kind: llm, models: ["gpt-4o-mini*"]}
"""


def _overhead_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "sidecar_overhead", REPO / "bench" / "sidecar_overhead.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def serve_upstream(host: str) -> None:
    """The stand-in LLM on ports 80 and 8081 (recording off), in the upstream namespace."""
    import uvloop
    from aiohttp import web

    from haltgate.testbed.standins import llm

    async def start() -> None:
        runner = web.AppRunner(llm.create_app(record=False), access_log=None)
        await runner.setup()
        for port in (80, 8081):
            await web.TCPSite(runner, host, port).start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    uvloop.run(start())


def client(args: argparse.Namespace) -> None:
    """The agent side: measured from inside the pod, as the agent UID."""
    import psutil

    bench = _overhead_module()
    targets = {
        "direct": "http://llm.test:8081/v1/chat/completions",
        "transparent": "http://llm.test/v1/chat/completions",
        "explicit": "http://127.0.0.1:17000/llm/v1/chat/completions",
    }
    print(
        f"transparent overhead bench: uid {os.getuid()}, {os.cpu_count()} CPUs (shared), "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    lat = asyncio.run(bench.latency(targets, args.requests, args.rate))
    d = lat["direct"]
    print(
        f"\n1. latency, {args.requests} requests per target, round-robin, "
        f"~{args.rate:.0f} req/s sequential"
    )
    print(
        f"   {'':14}{'p50 ms':>9}{'p99 ms':>9}{'added p50':>11}{'added p99':>11}"
        f"{'p50 x':>8}{'p99 x':>8}"
    )
    added = {}
    for name in targets:
        xs = lat[name]
        a50, a99 = bench.pct(xs, 0.5) - bench.pct(d, 0.5), bench.pct(xs, 0.99) - bench.pct(d, 0.99)
        added[name] = (a50, a99)
        print(
            f"   {name:14}{bench.pct(xs, 0.5):9.3f}{bench.pct(xs, 0.99):9.3f}{a50:11.3f}"
            f"{a99:11.3f}{bench.pct(xs, 0.5) / bench.pct(d, 0.5):8.2f}"
            f"{bench.pct(xs, 0.99) / bench.pct(d, 0.99):8.2f}"
        )
    a50, a99 = added["transparent"]
    print(
        f"   transparent: target added p50 <= {TARGET_P50_MS} ms "
        f"{'met' if a50 <= TARGET_P50_MS else 'NOT met'}; p99 <= "
        f"{TARGET_P99_MS} ms {'met' if a99 <= TARGET_P99_MS else 'NOT met'}"
    )

    print(
        f"\n2. a new TCP connection per request (what the listener adds per connection: "
        f"SO_ORIGINAL_DST, peek, hand-over), {args.requests // 2} sequential requests"
    )
    fresh = asyncio.run(fresh_connections(targets, args.requests // 2))
    fd = fresh["direct"]
    for name, xs in fresh.items():
        print(
            f"   {name:14}{bench.pct(xs, 0.5):9.3f}{bench.pct(xs, 0.99):9.3f}"
            f"{bench.pct(xs, 0.5) - bench.pct(fd, 0.5):11.3f}"
            f"{bench.pct(xs, 0.99) - bench.pct(fd, 0.99):11.3f}"
        )
    te, ex = fresh["transparent"], fresh["explicit"]
    print(
        f"   transparent - explicit (the listener's own cost): p50 "
        f"{bench.pct(te, 0.5) - bench.pct(ex, 0.5):.3f} ms"
    )

    sidecar = psutil.Process(args.sidecar_pid)
    upstream = psutil.Process(args.upstream_pid)
    print(
        f"\n3. throughput, closed loop, {args.concurrency} in flight, "
        f"{args.seconds:.0f} s per target"
    )
    per_core = {}
    for name, url in targets.items():
        proc = upstream if name == "direct" else sidecar
        rps, per_core[name] = asyncio.run(
            bench.throughput(url, args.seconds, args.concurrency, proc)
        )
        who = "upstream" if name == "direct" else "sidecar"
        print(f"   {name:14}{rps:8.0f} req/s wall {per_core[name]:8.0f} req per CPU-s of the {who}")
    t = per_core["transparent"]
    print(
        f"   transparent vs explicit per core: {t / per_core['explicit']:.2f}; "
        f"target >= {TARGET_RPS_PER_CORE} req/s per core: "
        f"{'met' if t >= TARGET_RPS_PER_CORE else 'NOT met'}"
    )
    result = {
        name: {
            "p50": bench.pct(lat[name], 0.5),
            "added_p50": added[name][0],
            "added_p99": added[name][1],
            "fresh_added_p50": bench.pct(fresh[name], 0.5) - bench.pct(fd, 0.5),
            "cpu_ms": 1000.0 / per_core[name] if name != "direct" else None,
        }
        for name in targets
    }
    print(RESULT + json.dumps({"load": os.getloadavg()[0], "targets": result}))


async def fresh_connections(targets: dict[str, str], n: int) -> dict[str, list[float]]:
    """Round-robin, each request on its own new connection (no keep-alive)."""
    import aiohttp

    bench = _overhead_module()
    out: dict[str, list[float]] = {name: [] for name in targets}
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(20):
            for url in targets.values():
                await bench.one(session, url)
        for _ in range(n):
            for name, url in targets.items():
                ms, _overhead = await bench.one(session, url)
                out[name].append(ms)
    return out


def _wait_ready(proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited:\n{log.read_text()[-3000:]}")
        if "ready" in log.read_text():
            return
        time.sleep(0.05)
    raise SystemExit(f"{what} not ready in 30s")


def _start_sidecar(
    topo: harness.Topology, workdir: Path, env: dict[str, str], server: str, run: int
) -> subprocess.Popen[bytes]:
    """The real sidecar (transparent + explicit) on ``server``, listening; its own state
    directory (the audit spool of one run is not carried into the next)."""
    state = workdir / f"state-{run}"
    state.mkdir()
    os.chown(state, SIDECAR_UID, SIDECAR_UID)
    sidecar = topo.pod.popen(
        [
            str(Path(sys.executable).parent / "haltgate"),
            "sidecar",
            "--policy",
            str(workdir / "policy.yaml"),
            "--state-dir",
            str(state),
            "--mode",
            "transparent",
            "--http-server",
            server,
            "--log-level",
            "warning",
        ],
        uid=SIDECAR_UID,
        env=env,
        log=workdir / f"sidecar-{server}.log",
    )
    for port in (17001, 17000):
        harness.wait_port(topo.pod, "127.0.0.1", port, proc=sidecar)
    return sidecar


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def orchestrate(args: argparse.Namespace) -> None:
    reason = harness.skip_reason()
    if reason is not None:
        raise SystemExit(f"cannot run: {reason}")
    for uid in (SIDECAR_UID, AGENT_UID):
        problem = harness.interpreter_reachable_by(uid)
        if problem is not None:
            raise SystemExit(problem)
    servers = list(HTTP_SERVERS) if args.http_server == "both" else [args.http_server]
    workdir = Path(tempfile.mkdtemp(prefix="haltgate-bench-"))
    workdir.chmod(0o755)
    topo = harness.Topology.create(harness.free_tag())
    etc = Path("/etc/netns") / topo.pod.name
    procs: list[subprocess.Popen[bytes]] = []
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(workdir)}
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in servers}
    try:
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text(f"{harness.UPSTREAM_V4} llm.test\n127.0.0.1 localhost\n")
        (workdir / "policy.yaml").write_text(POLICY)
        up_log = workdir / "upstream.log"
        upstream = topo.upstream.popen(
            [sys.executable, __file__, "--serve-upstream", harness.UPSTREAM_V4], env=env, log=up_log
        )
        procs.append(upstream)
        _wait_ready(upstream, up_log, "stand-in LLM")
        topo.pod.run(
            [
                str(Path(sys.executable).parent / "haltgate"),
                "iptables",
                "apply",
                "--proxy-uid",
                str(SIDECAR_UID),
                "--no-dns",
                "--exclude-port",
                "8081",
            ]
        )
        # Rounds alternate the servers, and which goes first (llhttp, aiohttp; aiohttp,
        # llhttp; ...): the same topology, upstream and rules; one sidecar at a time.
        for round_no in range(args.rounds):
            for server in servers if round_no % 2 == 0 else servers[::-1]:
                print(f"\n=== round {round_no + 1}/{args.rounds}: --http-server {server} ===")
                run = sum(len(r) for r in results.values())
                sidecar = _start_sidecar(topo, workdir, env, server, run)
                try:
                    results[server].append(_run_client(args, topo, env, sidecar, upstream))
                finally:
                    _stop(sidecar)
        _summary(results)
    finally:
        for proc in procs:
            _stop(proc)
        topo.delete()
        shutil.rmtree(etc, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)


def _run_client(
    args: argparse.Namespace,
    topo: harness.Topology,
    env: dict[str, str],
    sidecar: subprocess.Popen[bytes],
    upstream: subprocess.Popen[bytes],
) -> dict[str, Any]:
    argv = [
        "setpriv",
        f"--reuid={AGENT_UID}",
        f"--regid={AGENT_UID}",
        "--clear-groups",
        "env",
        *(f"{k}={v}" for k, v in env.items()),
        sys.executable,
        __file__,
        "--client",
        "--sidecar-pid",
        str(_child_pid(sidecar)),
        "--upstream-pid",
        str(_child_pid(upstream)),
        "--requests",
        str(args.requests),
        "--rate",
        str(args.rate),
        "--seconds",
        str(args.seconds),
        "--concurrency",
        str(args.concurrency),
    ]
    timeout = 120 + args.requests * 3 / args.rate + args.seconds * 3
    done = subprocess.run(
        topo.pod.exec_argv(argv), text=True, capture_output=True, timeout=timeout, check=False
    )
    lines = done.stdout.splitlines()
    print("\n".join(line for line in lines if not line.startswith(RESULT)))
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
        raise SystemExit(done.returncode)
    found: dict[str, Any] = json.loads(
        next(line for line in lines if line.startswith(RESULT))[len(RESULT) :]
    )
    return found


def _summary(results: dict[str, list[dict[str, Any]]]) -> None:
    """The transparent target per server across rounds: each round's figure, the range."""
    if not any(results.values()):
        return
    print("\n4. server leg on the transparent path, per round (ranges across rounds)")
    print(
        f"   {'server':10}{'CPU-ms/call':>14}{'p50 ms':>10}{'added p50':>11}"
        f"{'added p99':>11}{'new-conn added p50':>20}{'load':>7}"
    )
    for server, rounds in results.items():
        for r in rounds:
            t = r["targets"]["transparent"]
            print(
                f"   {server:10}{t['cpu_ms']:14.3f}{t['p50']:10.3f}{t['added_p50']:11.3f}"
                f"{t['added_p99']:11.3f}{t['fresh_added_p50']:20.3f}{r['load']:7.1f}"
            )
    for key, label in (("cpu_ms", "CPU-ms per call"), ("added_p50", "added p50 ms")):
        spans = []
        for server, rounds in results.items():
            xs = [r["targets"]["transparent"][key] for r in rounds]
            spans.append(f"{server} {min(xs):.3f}-{max(xs):.3f}")
        print(f"   transparent {label}: " + "; ".join(spans))
    if len(results) == 2:
        a, b = (results[s] for s in HTTP_SERVERS)
        ratios = [
            x["targets"]["transparent"]["cpu_ms"] / y["targets"]["transparent"]["cpu_ms"]
            for x, y in zip(a, b, strict=False)
        ]
        print(
            f"   {HTTP_SERVERS[0]} / {HTTP_SERVERS[1]} CPU per call, round by round: "
            + ", ".join(f"{x:.2f}" for x in ratios)
        )


def _child_pid(proc: subprocess.Popen[bytes]) -> int:
    """The pid of the real process behind ``ip netns exec [setpriv] ...`` (it execs)."""
    # ip netns exec and setpriv both exec their command, so the pid is the process itself.
    return proc.pid


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-upstream":
        serve_upstream(sys.argv[2])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller run (smoke test)")
    ap.add_argument("--requests", type=int, default=2000, help="per target, latency run")
    ap.add_argument("--rate", type=float, default=200.0, help="requests/s, latency run")
    ap.add_argument("--seconds", type=float, default=8.0, help="per target, throughput run")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument(
        "--http-server",
        choices=[*HTTP_SERVERS, "both"],
        default="both",
        help="the sidecar's HTTP server; both: rounds alternate them in one run",
    )
    ap.add_argument("--rounds", type=int, default=2, help="rounds per server")
    ap.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--sidecar-pid", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--upstream-pid", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.requests, args.seconds = 300, 2.0
    if args.client:
        client(args)
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
