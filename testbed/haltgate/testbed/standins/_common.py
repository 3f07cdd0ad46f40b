"""Shared plumbing of the stand-in servers: request recording, serving, the CLI."""

from __future__ import annotations

import argparse
import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson
from aiohttp import web

BEHAVIOR_HEADER = "x-standin-behavior"
"""Request header selecting a test behaviour, e.g. ``error``, ``truncate``, ``slow``, ``sse``."""

MAX_RECORDED = 10_000
"""Recorded requests kept per app (oldest dropped): bounded memory under benchmarks."""


@dataclass(slots=True)
class ReceivedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    raw_path: str = ""
    """The path as it came on the request line (not decoded)."""
    raw_query: str = ""
    """The query as it came on the request line (not decoded, without ``?``)."""

    def as_json(self) -> dict[str, object]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": self.body.decode("utf-8", "replace"),
            "raw_path": self.raw_path,
            "raw_query": self.raw_query,
        }


@dataclass(slots=True)
class Recorded:
    """What a stand-in received, in order. ``enabled=False`` skips recording (benchmarks)."""

    requests: list[ReceivedRequest] = field(default_factory=list)
    enabled: bool = True

    def add(self, r: ReceivedRequest) -> None:
        if not self.enabled:
            return
        if len(self.requests) >= MAX_RECORDED:
            del self.requests[0]
        self.requests.append(r)

    def clear(self) -> None:
        self.requests.clear()


RECORDED = web.AppKey("standin_recorded", Recorded)


def behavior(request: web.Request) -> str:
    """The test behaviour asked for by the client ('' for none)."""
    return request.headers.get(BEHAVIOR_HEADER, "")


def recording_app(*, record: bool = True) -> web.Application:
    """An application that records each request (with its body) before its handler runs."""

    @web.middleware
    async def record_mw(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not request.path.startswith("/_standin/"):
            body = await request.read()
            request.app[RECORDED].add(
                ReceivedRequest(
                    request.method,
                    request.path,
                    request.query_string,
                    {str(k): v for k, v in request.headers.items()},
                    body,
                    request.raw_path.partition("?")[0],
                    request.raw_path.partition("?")[2],
                )
            )
        return await handler(request)

    app = web.Application(middlewares=[record_mw], client_max_size=64 * 1024 * 1024)
    app[RECORDED] = Recorded(enabled=record)

    async def list_requests(request: web.Request) -> web.Response:
        data = [r.as_json() for r in request.app[RECORDED].requests]
        return web.Response(body=orjson.dumps(data), content_type="application/json")

    async def clear_requests(request: web.Request) -> web.Response:
        request.app[RECORDED].clear()
        return web.Response(status=204)

    app.router.add_get("/_standin/requests", list_requests)
    app.router.add_delete("/_standin/requests", clear_requests)
    return app


def json_response(obj: object, status: int = 200, **headers: str) -> web.Response:
    return web.Response(
        body=orjson.dumps(obj), status=status, content_type="application/json", headers=headers
    )


def sse_event(data: object | str, event: str | None = None) -> bytes:
    """One server-sent event. ``data`` is JSON-encoded unless already a string."""
    payload = data if isinstance(data, str) else orjson.dumps(data).decode()
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


async def start_sse(request: web.Request, **headers: str) -> web.StreamResponse:
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **headers}
    )
    await resp.prepare(request)
    return resp


def cut_connection(request: web.Request) -> None:
    """Drop the connection mid-response (a truncated stream, as a crashed upstream gives)."""
    transport = request.transport
    if transport is not None:
        transport.close()


async def serve(
    app: web.Application,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[web.AppRunner, str]:
    """Start ``app`` on ``host:port`` (0: a free port); returns the runner and base URL.
    With ``ssl_context`` it serves HTTPS (the URL then starts with ``https://``)."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    sock = runner.addresses[0]
    bound_host = f"[{sock[0]}]" if ":" in sock[0] else sock[0]
    scheme = "https" if ssl_context is not None else "http"
    return runner, f"{scheme}://{bound_host}:{sock[1]}"


def run_cli(name: str, factory: Callable[..., web.Application]) -> None:
    """``python -m haltgate.testbed.standins.<name> --host H --port P [--no-record]``."""
    parser = argparse.ArgumentParser(prog=f"python -m haltgate.testbed.standins.{name}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--no-record", action="store_true", help="do not keep received requests (benchmarks)"
    )
    args = parser.parse_args()

    async def _main() -> None:
        runner, url = await serve(factory(record=not args.no_record), args.host, args.port)
        print(f"{name} stand-in listening on {url}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    try:
        import uvloop

        uvloop.run(_main())
    except ImportError:  # pragma: no cover - uvloop is a runtime dependency
        asyncio.run(_main())
    except KeyboardInterrupt:
        pass
