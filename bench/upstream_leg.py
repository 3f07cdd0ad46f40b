"""The sidecar's upstream leg alone: CPU per call of ``UpstreamClient`` (upstream_pool.py,
llhttp over asyncio) against aiohttp's ``ClientSession`` set up as the sidecar had it, on
the same upstream, in one process, interleaved.

Run: ``.venv/bin/python bench/upstream_leg.py [--calls 4000] [--concurrency 16] [--rounds 3]``

The upstream is a subprocess (the stand-in LLM of ``haltgate.testbed.standins.llm``,
recording off); this process runs uvloop and sends the same chat request with each client
in turn (``--concurrency`` in flight), reading every answer whole. Printed per round and
client: CPU microseconds per call of this process (``time.process_time``) and calls per
wall second. Only the client differs: the request bytes on the wire are the same.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import aiohttp
import uvloop

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import sidecar_overhead as so  # noqa: E402

from haltgate.sidecar.upstream_pool import UpstreamClient  # noqa: E402
from haltgate.sidecar.upstream_response import UpstreamTimeout  # noqa: E402

HEADERS = [("Content-Type", "application/json"), ("Authorization", "Bearer sk-bench")]
BOUNDS = UpstreamTimeout(connect=10, read=30)


async def run_ours(url: str, calls: int, concurrency: int) -> None:
    client = UpstreamClient(limit=256)
    try:

        async def worker(n: int) -> None:
            for _ in range(n):
                resp = await client.request("POST", url, HEADERS, so.CHAT, BOUNDS)
                try:
                    await resp.read()
                finally:
                    resp.release()

        await asyncio.gather(*(worker(calls // concurrency) for _ in range(concurrency)))
    finally:
        await client.close()


async def run_aiohttp(url: str, calls: int, concurrency: int) -> None:
    connector = aiohttp.TCPConnector(limit=256, limit_per_host=0, keepalive_timeout=30)
    session = aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
    )
    timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=30)
    try:

        async def worker(n: int) -> None:
            for _ in range(n):
                async with session.request(
                    "POST", url, data=so.CHAT, headers=HEADERS, timeout=timeout
                ) as resp:
                    await resp.read()

        await asyncio.gather(*(worker(calls // concurrency) for _ in range(concurrency)))
    finally:
        await session.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=4000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    port = so.free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    upstream = so.start_standin_llm(port, env)
    try:
        so.wait_port(port, upstream, "stand-in LLM")
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        print(
            f"upstream leg: {args.calls} calls, {args.concurrency} in flight,"
            f" load average {os.getloadavg()[0]:.1f}"
        )
        clients = {"aiohttp ClientSession": run_aiohttp, "UpstreamClient (llhttp)": run_ours}
        for r in range(args.rounds):
            for name, run in clients.items():
                uvloop.run(run(url, args.calls // 10, args.concurrency))  # warm-up
                cpu, wall = time.process_time(), time.perf_counter()
                uvloop.run(run(url, args.calls, args.concurrency))
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                print(
                    f"   round {r + 1}  {name:26} {cpu / args.calls * 1e6:7.1f} us CPU per call"
                    f"  {args.calls / wall:8.0f} calls/s"
                )
    finally:
        upstream.terminate()
        upstream.wait(timeout=5)


if __name__ == "__main__":
    main()
