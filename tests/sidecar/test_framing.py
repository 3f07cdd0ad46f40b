"""Framing aiohttp's parser hands over but the sidecar refuses (``framing_check``): a
``Transfer-Encoding`` in an HTTP/1.0 request and a request-line version other than 1.0/1.1.
Raw sockets (clients normalise both away); each answer is a typed 400 (on an HTTP/1.1
status line, not one echoing the version), the connection is closed, nothing reaches the
upstream and the refusal is audited."""

from __future__ import annotations

import asyncio
import re

import orjson
import pytest

from haltgate.sidecar.startup import Listen
from tests.sidecar.conftest import SidecarFactory, Standins
from tests.sidecar.test_transparent_handover import api_destination, handed_over


@pytest.fixture
def http_server(both_http_servers: str) -> str:
    """Every test here runs on both servers (llhttp and aiohttp)."""
    return both_http_servers


TE = b"Transfer-Encoding: chunked\r\n"
STATUS_LINE = re.compile(rb"(?:^|\r\n)HTTP/\d\.\d \d{3} ")
SMUGGLED = b"GET /api/echo/smuggled HTTP/1.1\r\nHost: a\r\n\r\n"

REFUSED = [
    pytest.param(
        b"POST /api/echo/x HTTP/1.0\r\nHost: a\r\n" + TE + b"\r\n2\r\n{}\r\n0\r\n\r\n",
        "transfer_encoding_in_http10",
        id="http10-chunked",
    ),
    pytest.param(
        # Kept alive, with a request smuggled behind the chunked body: neither is forwarded.
        b"POST /api/echo/x HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n"
        + TE
        + b"\r\n0\r\n\r\n"
        + SMUGGLED,
        "transfer_encoding_in_http10",
        id="http10-chunked-keepalive-smuggle",
    ),
    pytest.param(
        b"GET /api/echo/x HTTP/2.0\r\nHost: a\r\n\r\n", "unsupported_http_version", id="http2.0"
    ),
    pytest.param(
        b"GET /api/echo/x HTTP/0.9\r\nHost: a\r\n\r\n", "unsupported_http_version", id="http0.9"
    ),
    pytest.param(
        b"GET /haltgate/v1/self HTTP/2.0\r\nHost: a\r\n\r\n",
        "unsupported_http_version",
        id="http2.0-self-view",
    ),
]


async def until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes (bounded: a kept connection fails)."""
    async with asyncio.timeout(5):
        return await reader.read()


async def send(host: str, port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        await writer.drain()
        return await until_closed(reader)
    finally:
        writer.close()


def assert_refused(answer: bytes, code: str) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    # An HTTP/1.0 request is answered in HTTP/1.0; any other version in HTTP/1.1.
    line = b"HTTP/1.0 400 " if code == "transfer_encoding_in_http10" else b"HTTP/1.1 400 "
    assert head.startswith(line), answer
    # One answer: nothing sent behind the refused head was served.
    assert len(STATUS_LINE.findall(answer)) == 1, answer
    error = orjson.loads(body)["error"]
    assert (error["type"], error["code"]) == ("invalid_request", code)


@pytest.mark.parametrize(("data", "code"), REFUSED)
async def test_explicit_port_refuses(
    sidecar_factory: SidecarFactory, standins: Standins, data: bytes, code: str
) -> None:
    sc = await sidecar_factory()
    host, port = sc.explicit.removeprefix("http://").rsplit(":", 1)
    assert_refused(await send(host, int(port), data), code)
    assert not standins.received("api").requests
    assert [r.code for r in sc.audit.records] == [code]


async def test_http10_without_transfer_encoding_is_served(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    """The control: HTTP/1.0 with Content-Length is governed and forwarded as before."""
    sc = await sidecar_factory()
    host, port = sc.explicit.removeprefix("http://").rsplit(":", 1)
    answer = await send(
        host, int(port), b"POST /api/echo/x HTTP/1.0\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}"
    )
    assert answer.startswith(b"HTTP/1.0 200 "), answer
    assert len(standins.received("api").requests) == 1


@pytest.mark.parametrize(("data", "code"), REFUSED)
async def test_transparent_listener_refuses_first(
    sidecar_factory: SidecarFactory, standins: Standins, data: bytes, code: str
) -> None:
    """On a connection the transparent listener handed over (the ``api`` stand-in as its
    original destination): refused before the Host is checked against it."""
    sc = await sidecar_factory(transparent=Listen("127.0.0.1", 0))
    od, _ = api_destination(standins)
    reader, writer = await handed_over(sc, od, first=data)
    try:
        answer = await until_closed(reader)
    finally:
        writer.close()
    assert_refused(answer, code)
    assert not standins.received("api").requests
    assert [r.code for r in sc.audit.records] == [code]
