"""HTTP correctness of the relays (``bench/http_floor.py --framing``): each framing or
smuggling case on a fresh connection to the sidecar's explicit port on each of its servers
(aiohttp's first, the reference; then haltgate's own over llhttp, ``--http-server``), to its
transparent listener's hand-over on each server (``_floor_transparent.py``: ``Host`` names
the upstream there) and to every relay, all in front of a recording upstream; printed: the
client's status codes and how many requests reached the upstream, and whether each target
refuses every case the sidecar on aiohttp refuses.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
from pathlib import Path
from typing import cast

import httptools
import sidecar_overhead as so
from _floor_targets import bench_env, start_targets, stop
from _floor_transparent import for_transparent, transparent_targets


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
    ("control: HEAD, then GET", req(line=b"HEAD /api/x HTTP/1.1") + req(line=GET)),
    ("control: Expect 100-continue", req(b"Expect: 100-continue\r\nContent-Length: 2\r\n", b"{}")),
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
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
        self.transport.write(head if self.parser.get_method() == b"HEAD" else head + b"ok")


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
                    {
                        "name": "api",
                        "action": "allow",
                        "kind": "http",
                        "methods": ["GET", "HEAD", "POST"],
                    }
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
        # The sidecar on each of its explicit-port servers: aiohttp's first (the reference
        # every candidate is checked against), then haltgate's own over llhttp.
        sidecars: dict[str, int] = {}
        for name in ("aiohttp", "llhttp"):
            sc_port = so.free_port()
            (work / name).mkdir()
            sidecar = so.start_sidecar(
                argparse.Namespace(state="none", audit="memory"),
                work / name, sc_port, framing_policy(upstream), env, [], name,
            )  # fmt: skip
            procs.append(sidecar)
            await asyncio.to_thread(so.wait_port, sc_port, sidecar, f"sidecar ({name})")
            sidecars[f"sidecar ({name})"] = sc_port
        targets = await asyncio.to_thread(
            start_targets, upstream, up_port, env, tmp, skipped, False
        )
        procs += [t.proc for t in targets]
        async with transparent_targets(tmp, up_port, framing_policy(upstream)) as transparent:
            ports = {**sidecars, **transparent, **{t.name: t.port for t in targets}}
            results: dict[str, dict[str, str]] = {name: {} for name in ports}
            for case, data in CASES:
                for name, port in ports.items():
                    seen.clear()
                    sent = for_transparent(data, up_port) if name in transparent else data
                    answer = await exchange(port, sent)
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
