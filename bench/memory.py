"""Sidecar memory under concurrent large bodies: peak RSS against the injected limit.

Run: ``.venv/bin/python bench/memory.py [--concurrency 4,16,60] [--mb 9.7]``

Two processes: the stand-in LLM (``haltgate.testbed.standins.llm``, recording off) and the
sidecar (``haltgate sidecar``, explicit mode, the durable spool with fsync, ``payload:
full`` so each body is also an audit record; ``--guardrails on``: PII + secrets on the
request and ``payload: redacted``). For each
concurrency level a fresh sidecar is started, then that many chat requests of ``--mb`` MB
each (one large user message, just under the default 10 MiB body limit) are sent at once,
three rounds. Printed per level: the sidecar's idle RSS, its peak RSS (``VmHWM`` from
/proc, the kernel's own high-water mark, so no sample can miss a peak), the answers by
status and code, and whether the peak stayed under the injected memory limit
(``limits.memory: 512Mi`` in charts/haltgate/files/injection-template.yaml).

Calls past the sidecar-wide body budget (``--body-budget-mb``) are answered 503
``memory_budget_exhausted`` with ``Retry-After``: that is the bound working, not a failure.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sidecar_overhead import free_port, wait_port

from haltgate.testbed.cli_processes import explicit_sidecar_argv

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
LIMIT_BYTES = 512 * 1024 * 1024
"""The sidecar container's memory limit in the injection template (512Mi)."""


def policy(upstream: str, guardrails: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "haltgate.dev/v1alpha1",
        "kind": "GovernancePolicy",
        "metadata": {"name": "bench", "namespace": "bench"},
        "spec": {
            "selector": {"matchLabels": {"app": "bench"}},
            "upstreams": [{"name": "llm", "url": upstream, "kind": "llm", "provider": "openai"}],
            "budgets": {"calls": {"limit": 10**9}},
            "tools": {
                "default": "deny",
                "rules": [{"name": "llm", "action": "allow", "kind": "llm"}],
            },
            "audit": {"payload": "full"},
        },
    }
    if guardrails:
        doc["spec"]["guardrails"] = {
            "pii": {"enabled": True, "direction": "request", "action": "redact"},
            "secrets": {"enabled": True, "direction": "request", "action": "block"},
        }
        doc["spec"]["audit"] = {"payload": "redacted"}
    return doc


def body_of(mb: float) -> bytes:
    words = b"lorem ipsum dolor sit amet consectetur adipiscing elit "
    text = (words * (int(mb * 1_000_000) // len(words) + 1))[: int(mb * 1_000_000)]
    return orjson.dumps(
        {
            "model": "gpt-4o-mini",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": text.decode()}],
        }
    )


def status_of(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of ``pid`` in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


async def fire(url: str, body: bytes, n: int) -> collections.Counter[str]:
    results: collections.Counter[str] = collections.Counter()
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def one() -> None:
            try:
                async with session.post(
                    url, data=body, headers={"Content-Type": "application/json"}
                ) as r:
                    data = await r.read()
                    code = r.headers.get("x-haltgate-code", "")
                    results[f"{r.status} {code}".strip()] += 1
                    del data
            except (aiohttp.ClientError, TimeoutError) as e:
                results[f"client error {type(e).__name__}"] += 1

        await asyncio.gather(*(one() for _ in range(n)))
    return results


def run_level(
    n: int, body: bytes, rounds: int, extra: list[str], guardrails: bool
) -> dict[str, Any]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(REPO)) if p),
    }
    up_port, sc_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="hg-mem-") as tmp:
        policy_path = Path(tmp) / "policy.yaml"
        policy_path.write_text(yaml.safe_dump(policy(f"http://127.0.0.1:{up_port}", guardrails)))
        upstream = subprocess.Popen(
            [PY, "-m", "haltgate.testbed.standins.llm", "--port", str(up_port), "--no-record"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        cmd = explicit_sidecar_argv(
            policy_path, sc_port, "--state-dir", str(Path(tmp) / "state"), *extra
        )
        sidecar = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            wait_port(up_port, upstream, "stand-in LLM")
            wait_port(sc_port, sidecar, "sidecar")
            time.sleep(0.5)
            idle = status_of(sidecar.pid)["VmRSS"]
            url = f"http://127.0.0.1:{sc_port}/llm/v1/chat/completions"
            results: collections.Counter[str] = collections.Counter()
            started = time.perf_counter()
            for _ in range(rounds):
                results += asyncio.run(fire(url, body, n))
            elapsed = time.perf_counter() - started
            alive = sidecar.poll() is None
            peak = status_of(sidecar.pid)["VmHWM"] if alive else -1
            return {
                "concurrency": n,
                "idle_rss": idle,
                "peak_rss": peak,
                "alive": alive,
                "results": dict(results),
                "seconds": elapsed,
            }
        finally:
            for proc in (sidecar, upstream):
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--concurrency", default="4,16,60")
    ap.add_argument("--mb", type=float, default=9.7, help="body size in MB (10^6 bytes)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--guardrails",
        choices=["on", "off"],
        default="off",
        help="off: payload full in the audit; on: PII + secrets on the request, payload redacted",
    )
    ap.add_argument(
        "--body-budget-mb",
        type=int,
        default=None,
        help="the sidecar's --body-memory-budget (default: its own default)",
    )
    args = ap.parse_args()
    body = body_of(args.mb)
    extra = (
        []
        if args.body_budget_mb is None
        else ["--body-memory-budget", str(args.body_budget_mb * 1024 * 1024)]
    )
    print(
        f"body {len(body) / 1e6:.1f} MB, {args.rounds} rounds per level, "
        f"limit {LIMIT_BYTES >> 20} MiB"
    )
    print(f"{'conc':>5} {'idle RSS':>9} {'peak RSS':>9} {'under limit':>11} {'s':>6}  answers")
    for n in (int(x) for x in args.concurrency.split(",")):
        r = run_level(n, body, args.rounds, extra, args.guardrails == "on")
        under = "yes" if 0 < r["peak_rss"] < LIMIT_BYTES else "NO"
        print(
            f"{n:>5} {r['idle_rss'] / 2**20:>8.0f}M {r['peak_rss'] / 2**20:>8.0f}M "
            f"{under:>11} {r['seconds']:>6.1f}  {r['results']}"
            + ("" if r["alive"] else "  (sidecar died)"),
            flush=True,
        )


if __name__ == "__main__":
    main()
