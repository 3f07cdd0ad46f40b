"""The HTTP front ends behind the sidecar's listeners: on the llhttp server (the default) the
handlers of the explicit port, the transparent listener and inspected ``CONNECT`` tunnels;
on aiohttp (``--http-server aiohttp``) the explicit port's low-level server and the
transparent port's application (behind the framing and destination guards); ``/metrics``."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from haltgate.governance.errors import BadRequestError
from haltgate.sidecar import self_view
from haltgate.sidecar.destination_check import (
    DestinationVerifier,
    destination_guard,
    destination_refusal,
)
from haltgate.sidecar.framing_check import framing_guard, framing_refusal, refuse_framing
from haltgate.sidecar.llhttp_server import LlhttpServer
from haltgate.sidecar.target_resolution import (
    resolve_explicit,
    resolve_inspected,
    resolve_transparent,
)
from haltgate.sidecar.wire_request import WireRequest

__all__ = [
    "explicit_llhttp_server",
    "explicit_server",
    "inspected_llhttp_server",
    "metrics_app",
    "transparent_app",
    "transparent_llhttp_server",
]


def explicit_server(source: self_view.SelfSource, idle_timeout: float) -> web.Server:
    """aiohttp's low-level server: every request goes to the pipeline, so an
    Application's router, middlewares and Request objects would be cost without use
    (the body limit is the policy's, enforced by the pipeline)."""

    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        pipeline = source.pipeline
        assert pipeline is not None
        if (err := framing_refusal(request)) is not None:
            return await refuse_framing(pipeline, request, err)
        if request.raw_path.startswith(self_view.SELF_PATH) and self_view.is_self_request(
            request.raw_path
        ):
            return self_view.answer(request, source)  # the agent's read-only view
        if request.version == aiohttp.HttpVersion11 and "Expect" in request.headers:
            await _answer_expect(request)
        return await pipeline.handle(request, resolve_explicit(request, pipeline.controls))

    return web.Server(handler, access_log=None, keepalive_timeout=idle_timeout)


async def _answer_expect(request: web.BaseRequest) -> None:
    """``Expect: 100-continue``: tell the client to send its body (what an Application's
    router does for its routes); any other expectation cannot be met (417)."""
    if request.headers["Expect"].lower() != "100-continue":
        raise web.HTTPExpectationFailed(text=f"unknown Expect: {request.headers['Expect']}")
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # the answer's own byte count starts after this


async def _refuse_wire_framing(
    request: WireRequest, pipeline: Any, err: BadRequestError
) -> web.StreamResponse:
    """Framing the sidecar refuses (``framing_check``), on the llhttp server: typed,
    audited, answered on an HTTP/1 status line, the connection closed after it."""
    if request.version not in (aiohttp.HttpVersion10, aiohttp.HttpVersion11):
        request.version = aiohttp.HttpVersion11  # answered on an HTTP/1.1 line
    response: web.StreamResponse = await pipeline.handle(request, err)
    response.force_close()  # what follows the head cannot be framed safely
    return response


def _expect_refusal(request: WireRequest) -> web.Response | None:
    """``Expect`` on the llhttp server: ``100 Continue`` when the body is still to come;
    any other expectation cannot be met (the 417 returned)."""
    expect = request.expect
    if expect is not None and request.version == aiohttp.HttpVersion11:
        if expect.lower() != "100-continue":
            return web.Response(status=417, text=f"unknown Expect: {expect}")
        if not request.content.at_eof:
            request.writer.send_continue()
    return None


def explicit_llhttp_server(source: self_view.SelfSource, idle_timeout: float) -> LlhttpServer:
    """The explicit port on haltgate's own llhttp server (``--http-server llhttp``): the
    same steps as :func:`explicit_server`, on a :class:`WireRequest`."""

    async def handler(request: WireRequest) -> web.StreamResponse:
        pipeline = source.pipeline
        assert pipeline is not None
        # HTTP/1.1 (llhttp's own version object) is framing_refusal's first "nothing to
        # refuse", and most requests carry no Expect: neither check is entered then.
        if (
            request.version is not aiohttp.HttpVersion11
            and (err := framing_refusal(request)) is not None
        ):
            return await _refuse_wire_framing(request, pipeline, err)
        if request.raw_path.startswith(self_view.SELF_PATH) and self_view.is_self_request(
            request.raw_path
        ):
            return self_view.answer(request, source)
        if request.expect is not None and (refused := _expect_refusal(request)) is not None:
            return refused
        return await pipeline.handle(request, resolve_explicit(request, pipeline.controls))

    return LlhttpServer(handler, idle_timeout=idle_timeout)


def transparent_llhttp_server(
    source: self_view.SelfSource, verifier: DestinationVerifier, idle_timeout: float
) -> LlhttpServer:
    """The transparent listener's plain HTTP and inspected TLS connections on the llhttp
    server (``--http-server llhttp``): the steps of :func:`transparent_app` (framing
    first, then the Host against the connection's original destination, which each
    request carries), on a :class:`WireRequest`."""

    async def handler(request: WireRequest) -> web.StreamResponse:
        pipeline = source.pipeline
        assert pipeline is not None
        if (err := framing_refusal(request)) is not None:
            return await _refuse_wire_framing(request, pipeline, err)
        if (refused := await destination_refusal(request, verifier)) is not None:
            return refused
        if (refused := _expect_refusal(request)) is not None:
            return refused
        return await pipeline.handle(request, resolve_transparent(request, pipeline.controls))

    return LlhttpServer(handler, idle_timeout=idle_timeout)


class PipelineSource(Protocol):
    """What a handler reads of the running sidecar: its pipeline (set once started)."""

    @property
    def pipeline(self) -> Any: ...


def inspected_llhttp_server(
    source: PipelineSource, host: str, port: int, idle_timeout: float
) -> LlhttpServer:
    """The decrypted stream of one inspected ``CONNECT host:port`` on the llhttp server:
    framing, then each request governed with the ``CONNECT`` authority as its target."""

    async def handler(request: WireRequest) -> web.StreamResponse:
        pipeline = source.pipeline
        assert pipeline is not None
        if (err := framing_refusal(request)) is not None:
            return await _refuse_wire_framing(request, pipeline, err)
        if (refused := _expect_refusal(request)) is not None:
            return refused
        return await pipeline.handle(
            request, resolve_inspected(request, pipeline.controls, host, port)
        )

    return LlhttpServer(handler, idle_timeout=idle_timeout)


def transparent_app(source: self_view.SelfSource, verifier: DestinationVerifier) -> web.Application:
    """Requests of connections the transparent listener handed over (plain HTTP or
    inspected TLS); the guards refuse faulty framing, then a Host that disagrees with the
    connection."""
    app = web.Application(
        client_max_size=2**62, middlewares=[framing_guard(source), destination_guard(verifier)]
    )

    async def handler(request: web.Request) -> web.StreamResponse:
        pipeline = source.pipeline
        assert pipeline is not None
        return await pipeline.handle(request, resolve_transparent(request, pipeline.controls))

    app.router.add_route("*", "/{tail:.*}", handler)
    return app


def metrics_app(registry: CollectorRegistry) -> web.Application:
    """``GET /metrics`` in the Prometheus text format (rendered off the event loop)."""

    async def metrics(request: web.Request) -> web.Response:
        data = await asyncio.get_running_loop().run_in_executor(None, generate_latest, registry)
        return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app
