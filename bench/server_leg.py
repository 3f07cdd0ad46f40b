"""The sidecar's server leg alone: the explicit port's two HTTP servers (haltgate's own over
llhttp, ``llhttp_server.py``, and aiohttp's low-level ``web.Server``) answering the same
handler, each in its own process, measured in the same run.

Run: ``.venv/bin/python bench/server_leg.py [--requests 2000] [--rate 200] [--seconds 4]
[--concurrency 32] [--rounds 3]``

The handler is what the pipeline asks of a server, without the pipeline: read the request
body as ``request_stages.read_body`` does (``read_nowait``, then ``readexactly``), answer a
``web.Response`` of a chat completion's size with the headers a relayed answer carries.
A streamed request (``"stream":true``) is answered with a few SSE events through
``start_answer`` and ``write`` as the stream relay does. The load is
``bench/sidecar_overhead.py``'s (imported): latency at ``--rate`` requests/s sequential,
round-robin over the two servers (p50/p99 and CPU-ms per call of each server process),
streamed time to first byte (round-robin), then ``--rounds`` interleaved closed loops
(requests per CPU-second of each server's process). Every figure of the llhttp server is
also given as a ratio to aiohttp's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import psutil
from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import sidecar_overhead as so  # noqa: E402

from haltgate.sidecar.pipeline_request import start_answer  # noqa: E402

SERVERS = ("aiohttp", "llhttp")
ANSWER = orjson.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "x" * 300},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 40, "completion_tokens": 16, "total_tokens": 56},
    }
)
ANSWER_HEADERS = {
    "Content-Type": "application/json",
    "openai-processing-ms": "12",
    "x-request-id": "req-bench",
    "x-haltgate-decision-id": "bench-1",
    "x-haltgate-overhead-ms": "0.100",
}


EVENT = b'data: {"choices":[{"index":0,"delta":{"content":"word "}}]}\n\n'


async def handler(request: Any) -> web.StreamResponse:
    length = request.content_length or 0
    body = request.content.read_nowait(length)
    if len(body) < length:
        body += await request.content.readexactly(length - len(body))
    if b'"stream":true' not in body:
        return web.Response(status=200, body=ANSWER, headers=ANSWER_HEADERS)
    # A streamed answer as the stream relay sends one: started, then event by event.
    resp = web.StreamResponse(
        status=200, headers={**ANSWER_HEADERS, "Content-Type": "text/event-stream"}
    )
    await start_answer(resp, request)
    for _ in range(4):
        await resp.write(EVENT)
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


async def serve(name: str, port: int) -> None:
    from haltgate.sidecar.llhttp_server import LlhttpServer

    factory: Any = (
        LlhttpServer(handler, idle_timeout=15.0)
        if name == "llhttp"
        else web.Server(handler, access_log=None, keepalive_timeout=15.0)
    )
    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        import uvloop

        uvloop.run(serve(sys.argv[2], int(sys.argv[3])))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=2000, help="per server, latency run")
    ap.add_argument("--rate", type=float, default=200.0, help="requests/s, latency run")
    ap.add_argument("--seconds", type=float, default=4.0, help="per server and round")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(REPO)) if p),
    }
    ports = {name: so.free_port() for name in SERVERS}
    procs = {
        name: subprocess.Popen(
            [so.PY, __file__, "--serve", name, str(port)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for name, port in ports.items()
    }
    try:
        for name, port in ports.items():
            so.wait_port(port, procs[name], f"{name} server")
        urls = {
            name: f"http://127.0.0.1:{port}/llm/v1/chat/completions" for name, port in ports.items()
        }
        ps = {name: psutil.Process(p.pid) for name, p in procs.items()}
        print(
            f"server leg bench: {os.cpu_count()} CPUs (shared), "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        cpu0 = {name: so.cpu_seconds(p) for name, p in ps.items()}
        lat = asyncio.run(so.latency(urls, args.requests, args.rate))
        calls = args.requests + 200
        cpu_ms = {name: (so.cpu_seconds(p) - cpu0[name]) * 1000 / calls for name, p in ps.items()}
        print(f"latency, {args.requests} requests per server, ~{args.rate:.0f} req/s sequential")
        base = SERVERS[0]
        for name in SERVERS:
            p50, p99 = so.pct(lat[name], 0.5), so.pct(lat[name], 0.99)
            b50 = so.pct(lat[base], 0.5)
            ratio = (
                f" ({p50 / b50:.2f}x p50, {cpu_ms[name] / cpu_ms[base]:.2f}x CPU)"
                if name != base
                else ""
            )
            print(
                f"   {name:8} p50 {p50:.3f} ms  p99 {p99:.3f} ms  "
                f"CPU-ms per call {cpu_ms[name]:.3f}{ratio}"
            )
        ttfb = asyncio.run(so.streaming(urls, max(50, args.requests // 2), args.rate))
        t_base = so.pct(ttfb[base], 0.5)
        print(
            "streaming time to first byte, p50: "
            + ", ".join(f"{n} {so.pct(ttfb[n], 0.5):.3f} ms" for n in SERVERS)
            + f" ({so.pct(ttfb['llhttp'], 0.5) / t_base:.2f}x)"
        )
        print(
            f"closed loop, {args.concurrency} in flight, {args.seconds:.0f} s per server and round"
        )
        for r in range(args.rounds):
            per_core = {}
            for name in SERVERS:
                _, per_core[name] = asyncio.run(
                    so.throughput(urls[name], args.seconds, args.concurrency, ps[name])
                )
            print(
                f"   round {r + 1}: "
                + ", ".join(f"{n} {per_core[n]:.0f} req per CPU-s" for n in SERVERS)
                + f" ({per_core['llhttp'] / per_core[base]:.2f}x)"
            )
    finally:
        for proc in procs.values():
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
