"""What the request pipeline reads of a request, whichever HTTP server parsed it.

Two servers hand requests to the pipeline: aiohttp's (``web.BaseRequest``: the transparent
port, inspected TLS, and the explicit port under ``--http-server aiohttp``) and haltgate's
own over llhttp (:mod:`.wire_request`, the explicit port by default). Both satisfy
:class:`PipelineRequest`; the stages are typed against it and read nothing else.

Answers are aiohttp response objects (``web.Response``, ``web.StreamResponse``) on both
servers: they carry status, headers and body and compute the framing (length or chunked,
``HEAD``, ``204``/``304``, ``Connection``). A streamed answer is started with
:func:`start_answer`; each server gives the response the writer it writes through.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol, cast

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http import HttpVersion
from multidict import CIMultiDictProxy

__all__ = ["BodySource", "PipelineRequest", "start_answer"]


class BodySource(Protocol):
    """The request body as it arrives (aiohttp's ``StreamReader`` or ours)."""

    def read_nowait(self, n: int = -1) -> bytes: ...

    async def readexactly(self, n: int) -> bytes: ...

    def iter_any(self) -> AsyncIterator[bytes]: ...


class PipelineRequest(Protocol):
    """One parsed request: its head as it came on the wire and its body."""

    @property
    def method(self) -> str: ...

    @property
    def raw_path(self) -> str:
        """The request target as sent (origin-form or absolute-form), undecoded."""
        ...

    @property
    def version(self) -> HttpVersion: ...

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """Every header line as sent, in order (repeated names kept)."""
        ...

    @property
    def content_type(self) -> str:
        """``type/subtype`` of ``Content-Type``, lowercased; ``application/octet-stream``
        when absent."""
        ...

    @property
    def content_length(self) -> int | None: ...

    @property
    def body_exists(self) -> bool:
        """A body follows the head (a ``Content-Length`` above 0 or chunked)."""
        ...

    @property
    def content(self) -> BodySource: ...

    @property
    def transport(self) -> asyncio.Transport | None: ...


async def start_answer(
    response: web.StreamResponse, request: PipelineRequest
) -> AbstractStreamWriter | None:
    """Start a streamed answer (``prepare``: its status line and headers, sent at once or
    with the first body bytes as the response asks), through the writer of the server that
    parsed ``request``; that writer."""
    # aiohttp's prepare reads the request's version, keep-alive, method and its writer;
    # wire_request.WireRequest provides the same (its writer is the llhttp server's).
    return await response.prepare(cast(web.BaseRequest, request))
