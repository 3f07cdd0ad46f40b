"""CPU per call through the transparent listener's hand-over, llhttp vs aiohttp, in one
process without iptables (``bench/_floor_transparent.py``: a loopback front hands each
connection to a sidecar's ``TransparentListener.hand_over`` with the stand-in HTTP API as
its original destination; one sidecar per ``--http-server``, the full pipeline, guardrails
off, audit in memory).

Run: ``.venv/bin/python bench/transparent_handover.py [--blocks 10] [--per 500]``

Sequential keep-alive POSTs, in blocks of ``--per`` calls, the servers alternating block by
block (the order swapped every block). The client, both sidecars and the stand-in share the
process, so a block's CPU per call is all of them: the *difference* between the servers'
blocks is the server's, and the ratio understates it. For the real thing (iptables
REDIRECT, separate processes) see ``bench/transparent_overhead.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import aiohttp  # noqa: E402
import uvloop  # noqa: E402
from _floor_transparent import transparent_targets  # noqa: E402

from haltgate.testbed.standins import http_api, serve  # noqa: E402


def policy(url: str) -> dict[str, object]:
    return {
        "apiVersion": "haltgate.dev/v1alpha1",
        "kind": "GovernancePolicy",
        "metadata": {"name": "handover", "namespace": "bench"},
        "spec": {
            "upstreams": [{"name": "api", "url": url, "kind": "http"}],
            "tools": {
                "default": "deny",
                "rules": [{"name": "api", "action": "allow", "kind": "http", "methods": ["POST"]}],
            },
        },
    }


async def run(blocks: int, per: int) -> None:
    runner, url = await serve(http_api.create_app(record=False))
    port = int(url.rsplit(":", 1)[1])
    print(f"transparent hand-over, in process: load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="hg-handover-") as tmp:
        async with transparent_targets(Path(tmp), port, policy(url)) as fronts:
            cpu: dict[str, list[float]] = {n: [] for n in fronts}
            wall: dict[str, list[float]] = {n: [] for n in fronts}
            async with aiohttp.ClientSession() as session:

                async def call(front: int) -> None:
                    async with session.post(
                        f"http://127.0.0.1:{front}/echo/x",
                        json={"a": 1},
                        headers={"Host": f"127.0.0.1:{port}"},
                    ) as r:
                        await r.read()
                        assert r.status == 200, r.status

                for front in fronts.values():  # warm-up
                    for _ in range(200):
                        await call(front)
                for block in range(blocks):
                    order = list(fronts.items())
                    for name, front in order if block % 2 == 0 else order[::-1]:
                        c0, w0 = time.process_time(), time.perf_counter()
                        for _ in range(per):
                            await call(front)
                        cpu[name].append((time.process_time() - c0) * 1000 / per)
                        wall[name].append((time.perf_counter() - w0) * 1000 / per)
    await runner.cleanup()
    for name in cpu:
        xs = cpu[name]
        print(
            f"   {name:24} CPU-ms per call (whole process) median {statistics.median(xs):.3f}"
            f" ({min(xs):.3f}-{max(xs):.3f}), wall ms per call {statistics.median(wall[name]):.3f}"
        )
    a, b = list(cpu)
    diffs = [x - y for x, y in zip(cpu[a], cpu[b], strict=True)]
    print(
        f"   {a} - {b}, CPU-ms per call block by block: median {statistics.median(diffs):+.4f}"
        f" ({min(diffs):+.4f} to {max(diffs):+.4f})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--blocks", type=int, default=10, help="blocks per server")
    ap.add_argument("--per", type=int, default=500, help="calls per block")
    args = ap.parse_args()
    uvloop.run(run(args.blocks, args.per))


if __name__ == "__main__":
    main()
