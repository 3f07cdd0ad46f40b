"""A minimal governed handler behind the real transparent listener, for the boundary tests.

It stands in for the sidecar's full pipeline where only the boundary is under test: the
transparent listener, TLS inspection, the destination guard and passthrough are the real
code; the request decision here is the simplest one the policy allows (known upstream host
and port: forward and record; anything else: 403). Also serves stand-in admin (17020) and
metrics (17090) ports that answer ``ADMIN``/``METRICS`` so that reaching them is visible.

Usage: python -m tests.netns.forwarder --policy FILE --ca-dir DIR --record FILE
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
from pathlib import Path

import aiohttp
from aiohttp import web

from haltgate.governance.validation import load_policy_file
from haltgate.sidecar import transparent
from haltgate.sidecar.destination_check import (
    DestinationVerifier,
    destination_guard,
    refusal_response,
)
from haltgate.sidecar.original_destination import connection_info
from haltgate.sidecar.tlsmint import CertificateAuthority, LeafMinter
from haltgate.sidecar.transparent_gate import LoggingConnectionGate
from haltgate.sidecar.transparent_upstreams import UpstreamIndex

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
    "proxy-connection",
    "proxy-authorization",
    "host",
    "content-length",
}


def make_handler(index: UpstreamIndex, record: Path, session: aiohttp.ClientSession) -> web.Server:
    verifier = DestinationVerifier()
    guard = destination_guard(verifier)

    async def decide(request: web.Request) -> web.StreamResponse:
        od = connection_info(request)
        if od is None or request.method == "CONNECT":
            return refusal_response("denied", "not a governed request")
        host = request.host.split(":")[0].lower() if not request.host.startswith("[") else ""
        upstream = index.lookup(host)
        if upstream is None or (upstream.scheme == "https") != od.tls or (upstream.port != od.port):
            return web.json_response({"error": {"code": "unknown_upstream"}}, status=403)
        url = f"{upstream.scheme}://{upstream.host}:{upstream.port}{request.path_qs}"
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read()
        async with session.request(request.method, url, headers=headers, data=body) as up:
            resp = web.StreamResponse(
                status=up.status,
                headers={k: v for k, v in up.headers.items() if k.lower() not in HOP_BY_HOP},
            )
            await resp.prepare(request)
            async for chunk in up.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
        with record.open("a") as f:
            f.write(
                json.dumps(
                    {
                        "host": upstream.host,
                        "path": request.path,
                        "status": up.status,
                        "tls": od.tls,
                        "ip": od.ip,
                    }
                )
                + "\n"
            )
        return resp

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        return await guard(request, decide)

    return web.Server(handle)


async def _fixed(text: str, hosts: list[str], port: int) -> web.AppRunner:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(text=text)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    for host in hosts:
        await web.TCPSite(runner, host, port).start()
    return runner


async def main(args: argparse.Namespace) -> None:
    policy = load_policy_file(args.policy)
    index = UpstreamIndex.from_spec(policy.spec)
    minter = LeafMinter(CertificateAuthority.load_or_create(Path(args.ca_dir)))
    client_ctx = ssl.create_default_context()  # SSL_CERT_FILE: the upstreams' test CA
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ctx))
    gate = LoggingConnectionGate()
    listener = transparent.TransparentListener(
        protocol_factory=make_handler(index, Path(args.record), session),
        upstreams=lambda: index,
        minter=minter,
        gate=gate,
        settings=transparent.TransparentSettings(peek_timeout=args.peek_timeout),
    )
    await listener.start(port=args.port)
    keep = [
        await _fixed("ADMIN", ["0.0.0.0", "::"], 17020),
        await _fixed("METRICS", ["0.0.0.0", "::"], 17090),
    ]
    print("ready", flush=True)
    stats_file = Path(args.record + ".stats")
    try:
        while True:
            await asyncio.sleep(0.5)
            stats = json.dumps(
                {
                    "outcomes": dict(listener.stats.outcomes),
                    "passthrough_opened": gate.opened_total,
                    "passthrough_closed": gate.closed_total,
                }
            )
            await asyncio.to_thread(stats_file.write_text, stats)
    finally:
        del keep
        await session.close()


if __name__ == "__main__":
    import logging

    import uvloop

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    parser = argparse.ArgumentParser()
    parser.add_argument("--policy", required=True)
    parser.add_argument("--ca-dir", required=True)
    parser.add_argument("--record", required=True)
    parser.add_argument("--port", type=int, default=transparent.TRANSPARENT_PORT)
    parser.add_argument("--peek-timeout", type=float, default=1.0)
    uvloop.run(main(parser.parse_args()))
