"""Benchmark: the sidecar's own time for MCP batches now that every message is decided and
reserved on its own (issue 15).

    .venv/bin/python bench/mcp_batch.py [--rounds 300] [--sizes 1,10,50]

A real sidecar in front of the stand-in MCP server on loopback, a policy with a calls
budget (so every message is reserved and settled) and the test suite's tool rules. Batches
of 1, 10 and 50 ``tools/call`` are sent one at a time, interleaved in one run; the figure is
``x-haltgate-overhead-ms`` (the sidecar's time, upstream wait excluded), p50 and p99, and
per message.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

from haltgate.governance.audit import MemoryAuditSink
from haltgate.sidecar.server import Sidecar
from haltgate.sidecar.startup import Listen, SidecarSettings
from haltgate.testbed.standins import mcp, serve

SIZES = (1, 10, 50)


def batch(n: int) -> bytes:
    msgs = [
        {
            "jsonrpc": "2.0",
            "id": i,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": f"t{i}"}},
        }
        for i in range(n)
    ]
    return orjson.dumps(msgs[0] if n == 1 else msgs)


def policy(url: str) -> dict[str, Any]:
    return {
        "apiVersion": "haltgate.dev/v1alpha1",
        "kind": "GovernancePolicy",
        "metadata": {"name": "bench", "namespace": "agents"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "upstreams": [{"name": "mcp", "url": url + "/mcp", "kind": "mcp"}],
            "budgets": {"calls": {"limit": 10**9}, "distinctTools": {"limit": 100}},
            "tools": {
                "default": "deny",
                "rules": [
                    {
                        "name": "tools",
                        "action": "allow",
                        "kind": "mcp",
                        "mcpTools": ["echo", "add", "search"],
                        "risk": 0.0,
                    },
                    {
                        "name": "no-delete",
                        "action": "deny",
                        "kind": "mcp",
                        "mcpTools": ["delete_*"],
                    },
                ],
            },
        },
    }


async def run(rounds: int, sizes: tuple[int, ...]) -> None:
    app = mcp.create_app(record=False)
    runner, url = await serve(app)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "policy.yaml").write_text(yaml.safe_dump(policy(url)))
        (tmp / "token").write_text("t" * 32)
        sidecar = Sidecar(
            SidecarSettings(
                policy_path=tmp / "policy.yaml",
                admin_token_file=tmp / "token",
                state_dir=tmp / "state",
                explicit=Listen("127.0.0.1", 0),
                admin=Listen("127.0.0.1", 0),
                metrics=Listen("127.0.0.1", 0),
            ),
            audit=MemoryAuditSink(),
        )
        await sidecar.start()
        host, port = sidecar.addresses["explicit"]
        endpoint = f"http://{host}:{port}/mcp"
        bodies = {n: batch(n) for n in sizes}
        overhead: dict[int, list[float]] = {n: [] for n in sizes}
        try:
            async with aiohttp.ClientSession() as s:
                for i in range(rounds + 20):
                    for n in sizes:
                        async with s.post(
                            endpoint, data=bodies[n], headers={"Content-Type": "application/json"}
                        ) as r:
                            await r.read()
                            assert r.status == 200, r.status
                            if i >= 20:  # warm-up
                                overhead[n].append(float(r.headers["x-haltgate-overhead-ms"]))
        finally:
            await sidecar.stop()
            await runner.cleanup()
    print(f"sidecar time per MCP request (x-haltgate-overhead-ms), {rounds} rounds")
    print("batch  p50 ms  p99 ms  p50 per message ms")
    for n in sizes:
        xs = sorted(overhead[n])
        p50 = statistics.median(xs)
        p99 = xs[min(len(xs) - 1, int(len(xs) * 0.99))]
        print(f"{n:5d}  {p50:6.3f}  {p99:6.3f}  {p50 / n:8.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument(
        "--sizes", default=",".join(map(str, SIZES)), help="batch sizes, comma-separated"
    )
    args = parser.parse_args()
    if args.rounds < 1:
        sys.exit("--rounds must be at least 1")
    try:
        sizes = tuple(int(x) for x in args.sizes.split(","))
    except ValueError:
        sys.exit("--sizes must be integers separated by commas")
    if not sizes or min(sizes) < 1:
        sys.exit("--sizes must be at least 1 each")
    asyncio.run(run(args.rounds, sizes))


if __name__ == "__main__":
    main()
