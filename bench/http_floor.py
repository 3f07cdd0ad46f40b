"""The floor of the hop (issue 18 item 6): leaner HTTP layers against today's aiohttp relay,
all in one run, on loopback.

Run: ``.venv/bin/python bench/http_floor.py [--quick]`` (speed) and
``.venv/bin/python bench/http_floor.py --framing`` (HTTP correctness of the candidates).
Needs the ``bench`` extra (``pip install -e '.[bench]'``: granian, pyreqwest; a missing one
skips its row; httptools is a main dependency) and, for the native floor, Debian's
``nginx-light``.

Targets, each its own process relaying to the same stand-in LLM
(``haltgate.testbed.standins.llm``, recording off), with no governance at all:

- ``aiohttp relay``: today's floor, the bare relay of ``bench/sidecar_overhead.py`` (aiohttp
  server and client, uvloop), started from that file so the figures are the same thing;
- ``httptools relay``: ``bench/_floor_relay.py`` (run by ``bench/_floor_variants.py``), raw
  asyncio protocols with llhttp parsing on both legs, a persistent upstream pool, uvloop;
- ``httptools + aiohttp client`` and ``aiohttp server + raw pool``: one leg swapped back to
  aiohttp, to see which leg the cost is in (speed run only);
- ``httptools + pyreqwest``: the same server leg, the upstream leg through pyreqwest
  (Rust reqwest/hyper);
- ``granian RSGI``: granian's Rust HTTP server (1 worker, uvloop) running the same relay as
  an RSGI app with the raw upstream pool;
- ``nginx``: one worker, upstream keep-alive, no buffering (the native floor), when the
  ``nginx`` binary is installed (``apt-get install nginx-light``).

``--tls``: the stand-in also listens with TLS (a throwaway trustme CA, trusted by the relays
through ``SSL_CERT_FILE``) and every relay forwards over TLS, as to a real provider; direct
stays plain HTTP on the same process, so "added" includes the upstream leg's TLS.

The load generator, the pacing, the warm-up and the percentiles are
``bench/sidecar_overhead.py``'s (imported): latency at ~200 req/s sequential, round-robin
over the targets; streaming time to first byte; a closed loop per target. CPU time is the
target's whole process tree (granian and nginx run workers under a parent). Every figure is
also printed as a ratio to the aiohttp relay of the same run.

``--framing`` sends each framing or smuggling case on a fresh connection to the sidecar
(explicit port, on aiohttp's server and on haltgate's llhttp one) and to every relay, all
in front of a recording upstream, and prints what the client got and how many requests
reached the upstream; the candidates are checked against the sidecar on aiohttp (every
case it refuses must stay refused).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp
import psutil

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
try:
    import httptools  # noqa: F401  (the relays' parser: checked here, used in the helpers)
except ImportError:  # a main dependency (the sidecar's upstream leg)
    raise SystemExit("bench/http_floor.py needs httptools: pip install -e .") from None

import sidecar_overhead as so  # noqa: E402  (the load generator and the relay of record)
from _floor_framing import framing_run  # noqa: E402
from _floor_targets import (  # noqa: E402
    PY,
    RELAY,
    STANDIN,
    Target,
    bench_env,
    spawn,
    start_targets,
    stop,
    tls_files,
    tree_cpu,
)

# ------------------------------------------------------------------ speed


def x(value: float, ref: float) -> str:
    return f"({value / ref:.2f}x)" if ref > 0 else "(n/a)"


def speed(args: argparse.Namespace) -> None:
    env = bench_env()
    up_port = so.free_port()
    direct_url = f"http://127.0.0.1:{up_port}"
    procs: list[subprocess.Popen[bytes]] = []
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="hg-floor-") as tmp:
        try:
            if args.tls:
                # The same stand-in on a plain port (direct, the baseline) and a TLS port
                # (what the relays forward to, verifying a throwaway CA's certificate).
                tls_port = so.free_port()
                chain = tls_files(Path(tmp), env)
                upstream = spawn(
                    [
                        PY,
                        str(BENCH / "_floor_targets.py"),
                        "--serve-tls-upstream",
                        str(up_port),
                        str(tls_port),
                        chain,
                    ],
                    env,
                )
                upstream_url, relay_port = f"https://127.0.0.1:{tls_port}", tls_port
            else:
                upstream = spawn(
                    [*STANDIN, "--port", str(up_port), "--no-record"],
                    env,
                )
                upstream_url, relay_port = direct_url, up_port
            procs.append(upstream)
            so.wait_port(relay_port, upstream, "stand-in LLM")
            so.wait_port(up_port, upstream, "stand-in LLM")
            targets = start_targets(upstream_url, relay_port, env, Path(tmp), skipped, tls=args.tls)
            procs += [t.proc for t in targets]
            measure(args, upstream, direct_url, targets, skipped)
        finally:
            stop(procs)


async def fidelity(urls: dict[str, str]) -> dict[str, bool]:
    """Whether each relay's body equals the direct answer's, plain and streamed (the
    stand-in's answers are deterministic for a given request)."""
    out: dict[str, bool] = {}
    async with aiohttp.ClientSession() as s:
        want: list[bytes] = []
        for body in (so.CHAT, so.STREAM_CHAT):
            async with s.post(urls["direct"], data=body) as r:
                want.append(await r.read())
        for name, url in urls.items():
            got = []
            for body in (so.CHAT, so.STREAM_CHAT):
                async with s.post(url, data=body) as r:
                    got.append(await r.read())
            out[name] = got == want
    del out["direct"]
    return out


def measure(
    args: argparse.Namespace,
    upstream: subprocess.Popen[bytes],
    direct_url: str,
    targets: list[Target],
    skipped: list[str],
) -> None:
    urls = {"direct": f"{direct_url}/v1/chat/completions"}
    urls.update({t.name: f"http://127.0.0.1:{t.port}/llm/v1/chat/completions" for t in targets})
    procs = {"direct": psutil.Process(upstream.pid)}
    procs.update({t.name: psutil.Process(t.proc.pid) for t in targets})
    print(
        f"http floor bench: {os.cpu_count()} CPUs (shared), load average "
        f"{os.getloadavg()[0]:.1f}; {args.requests} requests per target at ~{args.rate:.0f} "
        f"req/s sequential, {args.seconds:.0f} s closed loop with {args.concurrency} in flight"
        + ("; relays forward over TLS, direct is plain HTTP" if args.tls else "")
    )
    for line in skipped:
        print(f"   skipped: {line}")
    same = asyncio.run(fidelity(urls))
    print(
        "   answers byte-identical to direct (a chat and a streamed chat): "
        + ", ".join(f"{n}: {'yes' if ok else 'NO'}" for n, ok in same.items())
    )
    cpu0 = {name: tree_cpu(p) for name, p in procs.items()}
    lat = asyncio.run(so.latency(urls, args.requests, args.rate))
    calls = args.requests + 200
    cpu_ms = {n: (tree_cpu(p) - cpu0[n]) * 1000 / calls for n, p in procs.items()}
    cpu_ms["direct"] /= len(urls)
    d50, d99 = so.pct(lat["direct"], 0.5), so.pct(lat["direct"], 0.99)
    added = {n: (so.pct(lat[n], 0.5) - d50, so.pct(lat[n], 0.99) - d99) for n in urls}

    n_stream = max(50, args.requests // 2)
    ttfb = asyncio.run(so.streaming(urls, n_stream, args.rate))
    t50 = so.pct(ttfb["direct"], 0.5)
    ttfb_added = {n: so.pct(ttfb[n], 0.5) - t50 for n in urls}

    rps: dict[str, tuple[float, float]] = {}
    for name, url in urls.items():
        c0 = tree_cpu(procs[name])
        n, wall = asyncio.run(so.closed_loop(url, args.seconds, args.concurrency))
        cpu = tree_cpu(procs[name]) - c0
        rps[name] = (n / wall, n / cpu if cpu > 0 else float("inf"))

    r50, r99 = added[RELAY]
    print(
        f"\n   direct: p50 {d50:.3f} ms, p99 {d99:.3f} ms, TTFB p50 {t50:.3f} ms, "
        f"{rps['direct'][0]:.0f} req/s wall"
    )
    head = (
        f"   {'target':28}{'added p50 ms':>18}{'added p99 ms':>18}{'CPU-ms/call':>18}"
        f"{'req/s wall':>18}{'req per CPU-s':>20}{'added TTFB p50':>18}"
    )
    print(head)
    for t in targets:
        a50, a99 = added[t.name]
        wall, per_cpu = rps[t.name]
        print(
            f"   {t.name:28}"
            f"{a50:9.3f} {x(a50, r50):>8}"
            f"{a99:9.3f} {x(a99, r99):>8}"
            f"{cpu_ms[t.name]:9.3f} {x(cpu_ms[t.name], cpu_ms[RELAY]):>8}"
            f"{wall:9.0f} {x(wall, rps[RELAY][0]):>8}"
            f"{per_cpu:11.0f} {x(per_cpu, rps[RELAY][1]):>8}"
            f"{ttfb_added[t.name]:9.3f} {x(ttfb_added[t.name], ttfb_added[RELAY]):>8}"
        )
    print(
        "   (ratios: x the aiohttp relay of this run; req/s wall is capped by the one-process "
        "Python load generator, req per CPU-s of the target's process tree is the fair one)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller run (smoke test)")
    ap.add_argument("--framing", action="store_true", help="HTTP correctness, not speed")
    ap.add_argument("--requests", type=int, default=2000, help="per target, latency run")
    ap.add_argument("--rate", type=float, default=200.0, help="requests/s, latency run")
    ap.add_argument("--seconds", type=float, default=8.0, help="per target, closed loop")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument(
        "--tls",
        action="store_true",
        help="the relays forward over TLS (a throwaway CA); direct stays plain HTTP",
    )
    args = ap.parse_args()
    if args.quick:
        args.requests, args.seconds = 300, 2.0
    if args.framing:
        with tempfile.TemporaryDirectory(prefix="hg-floor-") as tmp:
            asyncio.run(framing_run(Path(tmp), []))
        return
    speed(args)


if __name__ == "__main__":
    main()
