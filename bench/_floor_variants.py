"""The relays ``bench/http_floor.py`` compares, each runnable on its own: the raw httptools
relay of ``bench/_floor_relay.py`` and the variants that swap one leg, to see which leg the
cost is in. Benchmark material, not product code.

Run: ``python bench/_floor_variants.py VARIANT PORT UPSTREAM_URL`` with VARIANT one of

- ``httptools``: raw server, raw upstream pool (``_floor_relay.serve``);
- ``httptools-pyreqwest``: raw server, upstream through pyreqwest (Rust reqwest/hyper);
- ``httptools-aiohttp``: raw server, upstream through an aiohttp ``ClientSession`` set up
  as the sidecar's (no cookies, no decompression, keep-alive);
- ``aiohttp-pool``: aiohttp's low-level ``web.Server`` (the sidecar's explicit port),
  upstream through the raw pool;

and ``rsgi_app`` is the raw-pool relay as an RSGI app for granian (``FLOOR_UPSTREAM`` names
the upstream): ``granian --interface rsgi _floor_variants:rsgi_app`` from ``bench/``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from _floor_relay import HOP_BY_HOP, Collected, Forward, Pending, RelayServer, UpstreamPool, serve


def strip_alias(path: str) -> str:
    slash = path.find("/", 1)
    return path[slash:] if slash > 0 else "/"


def pyreqwest_forward(upstream: str) -> Forward:
    """The upstream leg through pyreqwest, the server leg unchanged."""
    from pyreqwest.client import ClientBuilder

    builder = ClientBuilder().http1_only()
    ca = os.environ.get("SSL_CERT_FILE")
    if ca and upstream.startswith("https:"):  # rustls: its own roots, plus the bench's CA
        with open(ca, "rb") as f:
            builder = builder.add_root_certificate_pem(f.read())
    client = builder.build()
    base = upstream.rstrip("/")

    async def forward(server: RelayServer, req: Pending) -> None:
        headers = {
            n.decode("latin-1"): v.decode("latin-1")
            for n, v in req.headers
            if n.lower() not in HOP_BY_HOP
        }
        builder = client.request(req.method.decode(), base + req.target.decode("latin-1"))
        try:
            async with builder.headers(headers).body_bytes(req.body).build_streamed() as resp:
                length_text = resp.get_header("content-length")
                kept = [
                    (n.encode("latin-1"), v.encode("latin-1"))
                    for n, v in resp.headers.items()
                    if n.encode("latin-1").lower() not in HOP_BY_HOP
                ]
                server.head(resp.status, kept, int(length_text) if length_text else None, None)
                server.flush()
                reader = resp.body_reader
                while (piece := await reader.read_chunk()) is not None:
                    server.body(bytes(piece))
                    server.flush()
            server.end()
        except Exception as exc:
            server.fail(exc)

    return forward


def aiohttp_forward(upstream: str) -> Forward:
    """The upstream leg through aiohttp's client, the server leg unchanged."""
    import aiohttp

    session: aiohttp.ClientSession | None = None
    base = upstream.rstrip("/")

    async def forward(server: RelayServer, req: Pending) -> None:
        nonlocal session
        if session is None:
            session = aiohttp.ClientSession(
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            )
        headers = {
            n.decode("latin-1"): v.decode("latin-1")
            for n, v in req.headers
            if n.lower() not in HOP_BY_HOP
        }
        url = base + req.target.decode("latin-1")
        try:
            async with session.request(
                req.method.decode(), url, data=req.body, headers=headers
            ) as resp:
                kept = [(n, v) for n, v in resp.raw_headers if n.lower() not in HOP_BY_HOP]
                server.head(resp.status, kept, resp.content_length, None)
                server.flush()
                async for piece in resp.content.iter_any():
                    server.body(piece)
                    server.flush()
            server.end()
        except Exception as exc:
            server.fail(exc)

    return forward


async def serve_aiohttp_pool(port: int, upstream: str) -> None:
    """aiohttp's low-level server (as the sidecar's explicit port), the raw upstream pool."""
    from aiohttp import web

    pool = UpstreamPool(upstream)

    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        body = await request.read()
        target = strip_alias(request.raw_path)
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in request.headers.items()]
        sink = Collected()
        pool.send(pool.request_bytes(request.method.encode(), target.encode(), headers, body), sink)
        status, kept, length = await sink.started
        out = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in kept]
        if length is not None:
            pieces = [piece async for piece in sink.chunks()]
            return web.Response(status=status, headers=out, body=b"".join(pieces))
        resp = web.StreamResponse(status=status, headers=out)
        await resp.prepare(request)
        async for piece in sink.chunks():
            await resp.write(piece)
        await resp.write_eof()
        return resp

    runner = web.ServerRunner(web.Server(handler, access_log=None), handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


_rsgi_pool: UpstreamPool | None = None


async def rsgi_app(scope: Any, proto: Any) -> None:
    """The raw-pool relay as an RSGI app: granian's Rust HTTP server in front."""
    global _rsgi_pool
    if _rsgi_pool is None:
        _rsgi_pool = UpstreamPool(os.environ["FLOOR_UPSTREAM"])
    pool = _rsgi_pool
    body = await proto()
    target = strip_alias(scope.path) + ("?" + scope.query_string if scope.query_string else "")
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in scope.headers.items()]
    sink = Collected()
    pool.send(pool.request_bytes(scope.method.encode(), target.encode(), headers, body), sink)
    try:
        status, kept, length = await sink.started
    except Exception:
        proto.response_empty(502, [])
        return
    out = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in kept]
    if length is not None and length < 65536:
        pieces = [piece async for piece in sink.chunks()]
        proto.response_bytes(status, out, b"".join(pieces))
        return
    stream = proto.response_stream(status, out)
    async for piece in sink.chunks():
        await stream.send_bytes(piece)


VARIANTS = ("httptools", "httptools-pyreqwest", "httptools-aiohttp", "aiohttp-pool")


def main() -> None:
    if len(sys.argv) != 4 or sys.argv[1] not in VARIANTS:
        raise SystemExit(__doc__)
    variant, port, upstream = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    import uvloop

    if variant == "aiohttp-pool":
        uvloop.run(serve_aiohttp_pool(port, upstream))
    elif variant == "httptools-pyreqwest":
        uvloop.run(serve(port, upstream, pyreqwest_forward(upstream)))
    elif variant == "httptools-aiohttp":
        uvloop.run(serve(port, upstream, aiohttp_forward(upstream)))
    else:
        uvloop.run(serve(port, upstream))


if __name__ == "__main__":
    main()
