"""Everything in the "upstream" namespace, in one process (one event loop, quick to start).

On the named addresses (those the pod's /etc/hosts gives llm.test etc.):
  443  TLS  stand-in LLM         (llm.test, tls: inspect)
  80   HTTP stand-in MCP         (mcp.test)
  8080 HTTP stand-in HTTP API    (api.test)
  8443 TLS  stand-in HTTP API    (vault.test, tls: passthrough)
  53   UDP  the allowed "resolver" (answers ``RESOLVER``)

On the other addresses (nothing in the policy names them), canaries that prove a bypass:
TCP servers that greet with ``CANARY`` (plain on 80, 2222, 17020; TLS on 443, 8443 with a
certificate for every name the tests use), UDP servers answering ``CANARY`` on 53 and 9999.
Every canary contact is appended to the events file as a JSON line.

Usage: python -m tests.netns.upstream_side --named 10.77.0.1 fd77::1 --other 10.77.0.9 fd77::9
       --cert CERT --key KEY --events FILE
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import ssl
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from haltgate.testbed.standins import http_api, llm, mcp

CANARY_TCP_PLAIN = (53, 80, 2222, 17020)
CANARY_TCP_TLS = (443, 8443)
CANARY_UDP = (53, 9999)


class Events:
    def __init__(self, path: Path) -> None:
        self.path = path

    def add(self, **event: Any) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"time": time.time(), **event}) + "\n")


async def _serve_app(
    app: web.Application, hosts: list[str], port: int, ctx: ssl.SSLContext | None
) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    for host in hosts:
        await web.TCPSite(runner, host, port, ssl_context=ctx).start()
    return runner


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, answer: bytes, events: Events | None, where: str) -> None:
        self.answer, self.events, self.where = answer, events, where
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.events is not None:
            self.events.add(kind="udp", where=self.where, peer=str(addr[0]))
        assert self.transport is not None
        self.transport.sendto(self.answer + b" " + data[:64], addr)


async def _canary_tcp(
    host: str, port: int, ctx: ssl.SSLContext | None, events: Events
) -> asyncio.Server:
    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        events.add(kind="tcp", where=f"{host}:{port}", peer=str(peer[0]) if peer else "")
        try:
            writer.write(b"CANARY\n")
            await writer.drain()
            await asyncio.wait_for(reader.read(1024), 2)
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(greet, host, port, ssl=ctx)


async def main(args: argparse.Namespace) -> None:
    events = Events(Path(args.events))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(args.cert, args.key)
    loop = asyncio.get_running_loop()
    keep: list[Any] = [
        await _serve_app(llm.create_app(), args.named, 443, tls),
        await _serve_app(mcp.create_app(), args.named, 80, None),
        await _serve_app(http_api.create_app(), args.named, 8080, None),
        await _serve_app(http_api.create_app(), args.named, 8443, tls),
    ]
    for host in args.named:
        keep.append(
            await loop.create_datagram_endpoint(
                lambda: _Udp(b"RESOLVER", None, "resolver"), local_addr=(host, 53)
            )
        )
    for host in args.other:
        for port in CANARY_TCP_PLAIN:
            keep.append(await _canary_tcp(host, port, None, events))
        for port in CANARY_TCP_TLS:
            keep.append(await _canary_tcp(host, port, tls, events))
        for port in CANARY_UDP:
            where = f"{host}:{port}"
            keep.append(
                await loop.create_datagram_endpoint(
                    functools.partial(_Udp, b"CANARY", events, where), local_addr=(host, port)
                )
            )
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--named", nargs="+", required=True)
    parser.add_argument("--other", nargs="+", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--events", required=True)
    asyncio.run(main(parser.parse_args()))
