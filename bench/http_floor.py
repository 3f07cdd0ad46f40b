"""The floor of the hop (issue 18 item 6): leaner HTTP layers against today's aiohttp relay,
all in one run, on loopback.

Run: ``.venv/bin/python bench/http_floor.py [--quick]`` (speed) and
``.venv/bin/python bench/http_floor.py --framing`` (HTTP correctness of the candidates).
Needs the ``bench`` extra (``pip install -e '.[bench]'``: httptools, granian, pyreqwest; a
missing granian or pyreqwest skips its row) and, for the native floor, Debian's
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

The load generator, the pacing, the warm-up and the percentiles are
``bench/sidecar_overhead.py``'s (imported): latency at ~200 req/s sequential, round-robin
over the targets; streaming time to first byte; a closed loop per target. CPU time is the
target's whole process tree (granian and nginx run workers under a parent). Every figure is
also printed as a ratio to the aiohttp relay of the same run.

``--framing`` sends each framing or smuggling case on a fresh connection to the sidecar
(today's HTTP layer, explicit port) and to every relay, all in front of a recording
upstream, and prints what the client got and how many requests reached the upstream;
the candidates are checked against the sidecar (every case it refuses must stay refused).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import aiohttp
import psutil

try:
    import httptools
except ImportError:  # the bench extra
    raise SystemExit("bench/http_floor.py needs httptools: pip install -e '.[bench]'") from None

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import sidecar_overhead as so  # noqa: E402  (the load generator and the relay of record)

REPO = BENCH.parent
PY = sys.executable
RELAY = "aiohttp relay"
STANDIN = [PY, "-m", "haltgate.testbed.standins.llm"]


@dataclass
class Target:
    name: str
    port: int
    proc: subprocess.Popen[bytes]


def tree_cpu(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def nginx_conf(tmp: Path, port: int, upstream_port: int, ca: str | None) -> Path:
    conf = tmp / "nginx.conf"
    scheme = "https" if ca else "http"
    tls = (
        f"proxy_ssl_trusted_certificate {ca}; proxy_ssl_verify on; "
        "proxy_ssl_name localhost; proxy_ssl_session_reuse on;"
        if ca
        else ""
    )
    conf.write_text(
        f"""daemon off;
worker_processes 1;
user root;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  upstream llm {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location ~ ^/[^/]+(/.*)$ {{
      proxy_pass {scheme}://llm$1$is_args$args;
      {tls}
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
"""
    )
    return conf


def spawn(cmd: list[str], env: dict[str, str], cwd: Path = REPO) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def start_targets(
    upstream: str,
    up_port: int,
    env: dict[str, str],
    tmp: Path,
    skipped: list[str],
    hybrids: bool = True,
    tls: bool = False,
) -> list[Target]:
    """The relays (and nginx), listening; ``hybrids``: also the two one-leg swaps."""
    targets: list[Target] = []

    def add(
        name: str, cmd: list[str], cwd: Path = REPO, extra: dict[str, str] | None = None
    ) -> None:
        port = so.free_port()
        cmd = [c.replace("{port}", str(port)) for c in cmd]
        targets.append(Target(name, port, spawn(cmd, {**env, **(extra or {})}, cwd)))

    add(RELAY, [PY, str(BENCH / "sidecar_overhead.py"), "--serve-bare-relay", "{port}", upstream])
    variants = str(BENCH / "_floor_variants.py")
    add("httptools relay", [PY, variants, "httptools", "{port}", upstream])
    if hybrids:
        add("httptools + aiohttp client", [PY, variants, "httptools-aiohttp", "{port}", upstream])
        add("aiohttp server + raw pool", [PY, variants, "aiohttp-pool", "{port}", upstream])
    if importlib.util.find_spec("pyreqwest"):
        add("httptools + pyreqwest", [PY, variants, "httptools-pyreqwest", "{port}", upstream])
    else:
        skipped.append("httptools + pyreqwest: pyreqwest is not installed (bench extra)")
    if importlib.util.find_spec("granian"):
        add(
            "granian RSGI",
            [
                PY, "-m", "granian", "--interface", "rsgi", "--host", "127.0.0.1",
                "--port", "{port}", "--workers", "1", "--loop", "uvloop", "--no-ws",
                "--http", "1", "--log-level", "warning", "--no-access-log",
                "_floor_variants:rsgi_app",
            ],
            cwd=BENCH,
            extra={"FLOOR_UPSTREAM": upstream},
        )  # fmt: skip
    else:
        skipped.append("granian RSGI: granian is not installed (bench extra)")
    nginx = shutil.which("nginx")
    if nginx:
        port = so.free_port()
        conf = nginx_conf(tmp, port, up_port, env.get("SSL_CERT_FILE") if tls else None)
        targets.append(Target("nginx (native floor)", port, spawn([nginx, "-c", str(conf)], env)))
    else:
        skipped.append("nginx: not installed (apt-get install nginx-light)")
    for t in targets:
        so.wait_port(t.port, t.proc, t.name)
    return targets


def bench_env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(REPO)) if p),
    }


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(procs):
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


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
                    [PY, __file__, "--serve-tls-upstream", str(up_port), str(tls_port), chain],
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


def tls_files(tmp: Path, env: dict[str, str]) -> str:
    """A throwaway CA (trusted by the relays through ``SSL_CERT_FILE``) and the stand-in's
    certificate for 127.0.0.1 and localhost; returns the key + chain file."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp / "server.pem"))
    env["SSL_CERT_FILE"] = str(tmp / "ca.pem")
    return str(tmp / "server.pem")


def serve_tls_upstream(plain_port: int, tls_port: int, chain: str) -> None:
    """The stand-in LLM on a plain and a TLS port, one process, one app."""
    import ssl

    import uvloop
    from aiohttp import web

    from haltgate.testbed.standins import llm

    async def run() -> None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(chain)
        runner = web.AppRunner(llm.create_app(record=False), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", plain_port).start()
        await web.TCPSite(runner, "127.0.0.1", tls_port, ssl_context=ctx).start()
        await asyncio.Event().wait()

    uvloop.run(run())


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


# ------------------------------------------------------------------ framing


def req(head: bytes = b"", body: bytes = b"", line: bytes = b"POST /api/x HTTP/1.1") -> bytes:
    """A request with ``Host: a``, the extra header lines ``head`` and ``body`` as given."""
    return line + b"\r\nHost: a\r\n" + head + b"\r\n" + body


GET = b"GET /api/x HTTP/1.1"
TE = b"Transfer-Encoding: chunked\r\n"
END = b"0\r\n\r\n"
SMUGGLED = b"GET /api/smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
CASES: list[tuple[str, bytes]] = [
    ("control: GET", req(line=GET)),
    ("control: POST Content-Length", req(b"Content-Length: 2\r\n", b"{}")),
    ("control: POST chunked", req(TE, b"2\r\n{}\r\n" + END)),
    ("control: 2 pipelined GETs", req(line=GET) * 2),
    ("control: POST 256 KB, Content-Length", req(b"Content-Length: 262144\r\n", b"x" * 262144)),
    ("control: POST 64 chunks", req(TE, b"4\r\nabcd\r\n" * 64 + END)),
    ("control: HTTP/1.0 GET", req(line=b"GET /api/x HTTP/1.0")),
    ("duplicate Content-Length, same", req(b"Content-Length: 2\r\n" * 2, b"{}")),
    (
        "duplicate Content-Length, differ",
        req(b"Content-Length: 2\r\nContent-Length: 40\r\n", b"{}"),
    ),
    ("Content-Length list 2, 2", req(b"Content-Length: 2, 2\r\n", b"{}")),
    ("Content-Length +2", req(b"Content-Length: +2\r\n", b"{}")),
    ("Content-Length x", req(b"Content-Length: x\r\n")),
    ("CL + TE chunked (smuggle)", req(b"Content-Length: 4\r\n" + TE, END + SMUGGLED)),
    ("TE chunked + CL (smuggle)", req(TE + b"Content-Length: 40\r\n", END + SMUGGLED)),
    ("TE chunked, identity", req(b"Transfer-Encoding: chunked, identity\r\n", END)),
    ("TE identity", req(b"Transfer-Encoding: identity\r\n", b"{}")),
    ("TE xchunked", req(b"Transfer-Encoding: xchunked\r\n", END)),
    ("TE twice", req(TE * 2, END)),
    ("TE with space before colon", req(b"Transfer-Encoding : chunked\r\n", END)),
    ("TE obs-folded", req(b"Transfer-Encoding:\r\n chunked\r\n", END)),
    ("TE chunked in HTTP/1.0", req(TE, END, line=b"POST /api/x HTTP/1.0")),
    ("obs-fold in a header", req(b"X-A: 1\r\n 2\r\n", line=GET)),
    ("chunk size zz", req(TE, b"zz\r\n")),
    ("chunk size -1", req(TE, b"-1\r\nx\r\n" + END)),
    ("chunk size overflow", req(TE, b"fffffffffffffffff1\r\nx\r\n" + END)),
    ("chunk data too long", req(TE, b"1\r\nxyz\r\n" + END)),
    ("chunk extension bare LF", req(TE, b"1;a\nx\r\n" + END)),
    ("chunk size with space", req(TE, b"1 \r\nx\r\n" + END)),
    ("trailer Content-Length", req(TE, b"0\r\nContent-Length: 5\r\n\r\n")),
    ("bare LF line ends", req(line=GET).replace(b"\r\n", b"\n")),
    ("bare CR in a value", req(b"X-A: a\rb\r\n", line=GET)),
    ("NUL in a value", req(b"X-A: a\x00b\r\n", line=GET)),
    ("space in a header name", req(b"X A: b\r\n", line=GET)),
    ("header line without colon", req(b"X-A\r\n", line=GET)),
    ("two Host headers", req(b"Host: b\r\n", line=GET)),
    ("lowercase method", req(line=b"get /api/x HTTP/1.1")),
    ("HTTP/2.0 request line", req(line=b"GET /api/x HTTP/2.0")),
    ("extra token in request line", req(line=b"GET /api/x HTTP/1.1 x")),
    ("64 KB header", req(b"X-A: " + b"a" * 65536 + b"\r\n", line=GET)),
    ("TLS bytes on the plain port", b"\x16\x03\x01\x00\xff garbage\r\n\r\n"),
    ("valid, then bad chunked (pipelined)", req(line=GET) + req(TE, b"zz\r\n")),
]
STATUS = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


class Recorder(asyncio.Protocol):
    """The framing upstream: counts the requests it parses (strictly), answers each 200."""

    def __init__(self, seen: list[str]) -> None:
        self.seen = seen
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.seen.append("unparseable")
            assert self.transport is not None
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_message_complete(self) -> None:
        self.seen.append(self.url.decode("latin-1"))
        assert self.transport is not None
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


async def exchange(port: int, data: bytes) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    got = b""
    try:
        writer.write(data)
        await writer.drain()
        while True:  # until closed, 1.5 s with no answer, or 0.3 s idle after one
            async with asyncio.timeout(0.3 if got else 1.5):
                chunk = await reader.read(65536)
            if not chunk:
                break
            got += chunk
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()
    codes = [m.decode() for m in STATUS.findall(got)]
    return ",".join(codes) if codes else "none"


def framing_policy(upstream: str) -> dict[str, object]:
    return {
        "apiVersion": "haltgate.dev/v1alpha1",
        "kind": "GovernancePolicy",
        "metadata": {"name": "framing", "namespace": "bench"},
        "spec": {
            "selector": {"matchLabels": {"app": "bench"}},
            "upstreams": [{"name": "api", "url": upstream, "kind": "http"}],
            "tools": {
                "default": "deny",
                "rules": [
                    {"name": "api", "action": "allow", "kind": "http", "methods": ["GET", "POST"]}
                ],
            },
        },
    }  # fmt: skip


async def framing_run(tmp: Path, skipped: list[str]) -> None:
    seen: list[str] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Recorder(seen), "127.0.0.1", 0)
    up_port = server.sockets[0].getsockname()[1]
    upstream = f"http://127.0.0.1:{up_port}"
    env = bench_env()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        work = tmp / "sidecar"
        work.mkdir()
        sc_port = so.free_port()
        sidecar = so.start_sidecar(
            argparse.Namespace(state="none", audit="memory"),
            work, sc_port, framing_policy(upstream), env, [],
        )  # fmt: skip
        procs.append(sidecar)
        targets = await asyncio.to_thread(
            start_targets, upstream, up_port, env, tmp, skipped, False
        )
        procs += [t.proc for t in targets]
        await asyncio.to_thread(so.wait_port, sc_port, sidecar, "sidecar")
        ports = {"sidecar (today)": sc_port, **{t.name: t.port for t in targets}}
        results: dict[str, dict[str, str]] = {name: {} for name in ports}
        for case, data in CASES:
            for name, port in ports.items():
                seen.clear()
                answer = await exchange(port, data)
                await asyncio.sleep(0.05)
                results[name][case] = f"{answer} up:{len(seen)}"
        report(results, skipped)
    finally:
        server.close()
        await asyncio.to_thread(stop, procs)


def refused(verdict: str) -> bool:
    answer, up = verdict.split(" up:")
    return up == "0" and not any(c.startswith("2") for c in answer.split(","))


def report(results: dict[str, dict[str, str]], skipped: list[str]) -> None:
    names = list(results)
    print("framing and smuggling cases: client's status codes, requests that reached the upstream")
    for line in skipped:
        print(f"   skipped: {line}")
    print("   " + f"{'case':38}" + "".join(f"{n[:20]:>22}" for n in names))
    for case, _ in CASES:
        print("   " + f"{case:38}" + "".join(f"{results[n][case]:>22}" for n in names))
    today = results[names[0]]
    for name in names[1:]:
        lost = [c for c, _ in CASES if refused(today[c]) and not refused(results[name][c])]
        differs = [c for c, _ in CASES if today[c] != results[name][c]]
        stricter = [c for c, _ in CASES if refused(results[name][c]) and not refused(today[c])]
        print(
            f"   {name}: refuses every case the sidecar refuses: {'yes' if not lost else 'NO'}"
            + (f" (not refused: {', '.join(lost)})" if lost else "")
            + f"; {len(differs)} case(s) answered differently"
            + (f", refuses what the sidecar accepts: {', '.join(stricter)}" if stricter else "")
        )


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--serve-tls-upstream":
        serve_tls_upstream(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
        return
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
