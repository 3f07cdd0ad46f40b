"""Request framing the HTTP parser accepts but the sidecar refuses, on every listener that
speaks HTTP/1 (the explicit port, the transparent port, inspected CONNECT tunnels).

aiohttp's parser (llhttp, strict) refuses most framing and smuggling tricks itself, with a
plain-text 400 before any request exists. Two it hands over, and both are refused here
with a typed error, audited like every refusal, on a connection that is then closed:

- ``Transfer-Encoding`` in an HTTP/1.0 request (code ``transfer_encoding_in_http10``).
  Transfer codings do not exist in HTTP/1.0; RFC 9112 section 6.1: such a message's
  framing is faulty, and the connection is closed after the answer. An upstream or
  intermediary reading it by ``Content-Length`` or to the end of the connection would see
  other bytes than the sidecar governed.
- A request line with any version but ``HTTP/1.0`` and ``HTTP/1.1`` (llhttp also passes
  ``HTTP/2.0`` and ``HTTP/0.9``; code ``unsupported_http_version``). These listeners speak
  HTTP/1 only; the answer is an ``HTTP/1.1`` status line, not one echoing the version.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import HttpVersion10, HttpVersion11, web
from aiohttp.http import RawRequestMessage

from haltgate.governance.errors import BadRequestError
from haltgate.sidecar import self_view
from haltgate.sidecar.pipeline_request import PipelineRequest

__all__ = ["framing_guard", "framing_refusal", "refuse_framing"]

_SPOKEN = (HttpVersion10, HttpVersion11)


def framing_refusal(request: PipelineRequest) -> BadRequestError | None:
    """The typed error for a request whose framing the sidecar refuses, else ``None``."""
    version = request.version
    if version not in _SPOKEN:
        return BadRequestError(
            f"request line version HTTP/{version.major}.{version.minor}: this listener "
            "speaks HTTP/1.0 and HTTP/1.1 only",
            code="unsupported_http_version",
        )
    if version == HttpVersion10 and "Transfer-Encoding" in request.headers:
        return BadRequestError(
            "Transfer-Encoding in an HTTP/1.0 request: its framing is faulty "
            "(RFC 9112 section 6.1)",
            code="transfer_encoding_in_http10",
        )
    return None


async def refuse_framing(
    pipeline: Any, request: web.BaseRequest, err: BadRequestError
) -> web.StreamResponse:
    """Refuse through the pipeline (audited, typed JSON) and send the answer here; the
    connection is then closed: what follows the head on it cannot be framed safely. (aiohttp
    first drains a declared body, unread by any stage, for at most its lingering time of
    10 s; no request behind it is served.)"""
    if request.version not in _SPOKEN:
        # aiohttp writes the status line in the version of the request it is given: the
        # same request, read as HTTP/1.1.
        head = RawRequestMessage(
            method=request.method,
            path=request.raw_path,
            version=HttpVersion11,
            headers=request.headers,
            raw_headers=request.raw_headers,
            should_close=True,
            compression=None,
            upgrade=False,
            chunked=False,
            url=request.rel_url,
        )
        request = web.BaseRequest(
            head,
            request.content,
            request.protocol,
            request.writer,
            request.task,
            asyncio.get_running_loop(),
        )
    response: web.StreamResponse = await pipeline.handle(request, err)
    response.force_close()
    await response.prepare(request)  # aiohttp's own prepare after the handler is a no-op
    await response.write_eof()
    return response


def framing_guard(source: self_view.SelfSource) -> Any:
    """aiohttp middleware (first of the transparent application's): the same refusal before
    any other check answers (so even that answer is an HTTP/1.1 one on a closed connection)."""

    @web.middleware
    async def guard(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        err = framing_refusal(request)
        if err is None:
            return await handler(request)
        return await refuse_framing(source.pipeline, request, err)

    return guard
