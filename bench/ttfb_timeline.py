"""Where a call's wait goes: a timeline of one call through a real sidecar, sequential.

Run: ``.venv/bin/python bench/ttfb_timeline.py [--stream] [--requests 300] [--rate 50]
[--audit spool|memory] [--state disk|tmpfs|none] [--guardrails]``

A sidecar runs in this process (the policy of ``bench/sidecar_overhead.py``, uvloop, the
same ``Sidecar`` as ``haltgate sidecar``); the stand-in LLM and a raw-socket client are
subprocesses. The client sends one request at a time and notes (``time.perf_counter``:
``CLOCK_MONOTONIC``, the same clock in every process) when its last byte was sent, when
the answer's head arrived and when the first body byte did (``--stream``: a streamed
chat; else the whole answer). The sidecar's stages are timed by wrapping them here, in
the bench only (the product code is not changed for it): the handler entered, the body
read, the policy decided, the budget reserved, the intent record built and durable, the
upstream's head received, the agent's answer prepared (its head sent, or held for the
first body bytes), the first body bytes in and written. Printed: the p50 of each mark's
time after the client's last byte, over ``--requests`` calls after a warm-up, and of each
call's time from the upstream's head to the agent's first body byte (the relay's part).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import sidecar_overhead as overhead  # noqa: E402

CLIENT = r"""
import json, socket, sys, time
port, n, rate, stream, body = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), \
    sys.argv[4] == "1", sys.argv[5].encode()
head = (b"POST /llm/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
        + b"\r\n\r\n")
req = head + body
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
buf = b""
def one():
    global buf
    buf = b""
    s.sendall(req)
    sent = time.perf_counter()
    t_head = t_body = None
    while True:
        data = s.recv(65536)
        now = time.perf_counter()
        if not data:
            raise SystemExit("closed")
        buf += data
        if t_head is None and b"\r\n\r\n" in buf:
            t_head = now
        if t_head is not None:
            h, _, rest = buf.partition(b"\r\n\r\n")
            if rest and t_body is None:
                t_body = now
            if b"content-length:" in h.lower():
                n = int(h.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(rest) >= n:
                    return sent, t_head, t_body or now, now
            elif rest.endswith(b"0\r\n\r\n"):
                return sent, t_head, t_body, now
out = []
for i in range(n):
    t0 = time.perf_counter()
    out.append(one())
    delay = 1.0 / rate - (time.perf_counter() - t0)
    if delay > 0:
        time.sleep(delay)
print(json.dumps(out))
"""


class Marks:
    """perf_counter marks of the call in flight (one at a time), by name."""

    def __init__(self) -> None:
        self.current: dict[str, float] = {}
        self.calls: list[dict[str, float]] = []

    def mark(self, name: str) -> None:
        self.current.setdefault(name, time.perf_counter())

    def done(self) -> None:
        self.calls.append(self.current)
        self.current = {}


def wrap_async(cls: Any, name: str, marks: Marks, label: str) -> None:
    original = getattr(cls, name)

    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = await original(*args, **kwargs)
        marks.mark(label)
        return result

    setattr(cls, name, wrapped)


def wrap_sync(cls: Any, name: str, marks: Marks, label: str) -> None:
    original: Callable[..., Any] = getattr(cls, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        marks.mark(label)
        return result

    setattr(cls, name, wrapped)


def instrument(marks: Marks) -> None:
    from aiohttp import web

    from haltgate.sidecar import stream_relay, upstream_pool, upstream_response
    from haltgate.sidecar.pipeline import Pipeline

    handle = Pipeline.handle

    async def timed_handle(self: Any, request: Any, target: Any) -> Any:
        marks.mark("handler entered")
        try:
            return await handle(self, request, target)
        finally:
            marks.mark("handler returned")
            # The call's marks are complete once its answer's last write is done.
            asyncio.get_running_loop().call_later(0.002, marks.done)

    Pipeline.handle = timed_handle  # type: ignore[method-assign]
    wrap_async(Pipeline, "read_body", marks, "body read")
    wrap_sync(Pipeline, "authorize_tools", marks, "classified, tools")
    wrap_sync(Pipeline, "check_flows", marks, "flows")
    wrap_async(Pipeline, "decide_policy", marks, "policy (OPA)")  # awaited only with OPA
    wrap_sync(Pipeline, "reserve_budget", marks, "budget reserved")
    wrap_sync(Pipeline, "_record", marks, "intent record built")
    wrap_async(Pipeline, "audit_intent", marks, "intent durable")
    wrap_async(upstream_pool.UpstreamClient, "request", marks, "upstream head in")
    wrap_async(web.StreamResponse, "prepare", marks, "answer prepared (head sent or held)")
    wrap_async(web.StreamResponse, "write", marks, "first body write")
    wrap_async(web.StreamResponse, "write_eof", marks, "eof written")
    wrap_async(upstream_response.UpstreamResponse, "readany", marks, "first body bytes in")
    scan_events = stream_relay.scan_events

    async def timed_scan(*args: Any, **kwargs: Any) -> Any:
        result = await scan_events(*args, **kwargs)
        marks.mark("first events scanned")
        return result

    stream_relay.scan_events = timed_scan
    for fn, label in (
        ("response_headers", "answer head built"),
        ("meter_events", "first events metered"),
    ):
        original = getattr(stream_relay, fn)

        def timed(*args: Any, _f: Any = original, _l: str = label, **kwargs: Any) -> Any:
            result = _f(*args, **kwargs)
            marks.mark(_l)
            return result

        setattr(stream_relay, fn, timed)


async def run(args: argparse.Namespace, tmp: Path, up_port: int) -> None:
    from haltgate.sidecar.server import Sidecar
    from haltgate.sidecar.startup import Listen, SidecarSettings

    policy_path = tmp / "policy.yaml"
    policy_path.write_text(
        yaml.safe_dump(
            overhead.policy(
                f"http://127.0.0.1:{up_port}",
                guardrails=args.guardrails,
                durability=args.durability,
            )
        )
    )
    port = overhead.free_port()
    settings = SidecarSettings(
        policy_path=policy_path,
        state_dir=tmp / "state" if args.state != "none" else None,
        audit_dir=tmp / "audit" if args.audit == "spool" else None,
        explicit=Listen("127.0.0.1", port),
        admin=Listen("127.0.0.1", 0),
        metrics=Listen("127.0.0.1", 0),
    )
    marks = Marks()
    instrument(marks)
    sidecar = Sidecar(settings)
    await sidecar.start()
    body = overhead.STREAM_CHAT if args.stream else overhead.CHAT
    try:
        client = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CLIENT,
            str(port),
            str(args.requests + args.warmup),
            str(args.rate),
            "1" if args.stream else "0",
            body.decode(),
            stdout=subprocess.PIPE,
        )
        out, _ = await client.communicate()
    finally:
        await sidecar.stop()
    seen = json.loads(out)[args.warmup :]
    calls = marks.calls[args.warmup :]
    offsets: dict[str, list[float]] = {}
    for (sent, t_head, t_body, _), m in zip(seen, calls, strict=False):
        marked = {**m, "client has head": t_head, "client has first body byte": t_body}
        for name, t in marked.items():
            offsets.setdefault(name, []).append((t - sent) * 1e6)
    print(
        f"{'streamed' if args.stream else 'plain'} chat, audit={args.audit} state={args.state} "
        f"durability={args.durability}, {len(seen)} calls at {args.rate:g}/s, load "
        f"{os.getloadavg()[0]:.1f}; p50 us from the client's last byte sent to each mark "
        "(and the step from the previous line)"
    )
    after_head = [
        (t_body - m["upstream head in"]) * 1e6
        for (_, _, t_body, _), m in zip(seen, calls, strict=False)
        if "upstream head in" in m
    ]
    if after_head:
        print(
            f"  upstream's head in -> agent's first body byte, p50 of each call's: "
            f"{statistics.median(after_head):.1f} us"
        )
    prev = 0.0
    for name, xs in sorted(offsets.items(), key=lambda kv: statistics.median(kv[1])):
        p50 = statistics.median(xs)
        print(f"  {p50:8.1f} {p50 - prev:+8.1f}  {name} (n={len(xs)})")
        prev = p50


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--audit", choices=["spool", "memory"], default="spool")
    ap.add_argument("--state", choices=["disk", "tmpfs", "none"], default="disk")
    ap.add_argument("--durability", choices=["strict", "overlapped"], default="strict")
    ap.add_argument("--guardrails", action="store_true", help="sidecar_overhead.py's GUARDRAILS on")
    args = ap.parse_args()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(REPO)) if p),
    }
    overhead.run_with_standin_llm(
        lambda tmp, port: run(args, tmp, port),
        prefix="hg-ttfb-",
        tmp_dir="/dev/shm" if args.state == "tmpfs" else None,
        env=env,
    )


if __name__ == "__main__":
    main()
