"""The explicit port's llhttp server (``llhttp_server.py``) on the wire: keep-alive,
pipelined requests answered in order, ``Expect: 100-continue`` (also behind a pipelined
request), ``HEAD``, chunked request bodies, bodies past the read high-water mark, the
refusals it answers itself (nothing reaches the upstream) and the connection it closes.
Raw sockets: clients normalise most of this away."""

from __future__ import annotations

import asyncio
import re

import orjson
import pytest

from haltgate.sidecar.llhttp_server import BODY_HIGH_WATER
from tests.sidecar.conftest import SidecarFactory, Standins

STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


@pytest.fixture
def http_server() -> str:
    return "llhttp"


async def _open(sc_url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = sc_url.removeprefix("http://").rsplit(":", 1)
    return await asyncio.open_connection(host, int(port))


async def _answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One answer framed by Content-Length or chunked: (head, body)."""
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)\r\ncontent-length: (\d+)", head)
        if length is not None:
            return head, await reader.readexactly(int(length.group(1)))
        if re.search(rb"(?i)\r\ntransfer-encoding: chunked", head):
            body = b""
            while True:
                size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                chunk = await reader.readexactly(size + 2)
                if size == 0:
                    return head, body
                body += chunk[:-2]
        return head, b""


async def _until_closed(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(5):
        return await reader.read()


def _post(path: bytes, body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"POST " + path + b" HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body
    )


async def test_pipelined_requests_answered_in_order_on_one_connection(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory()
    reader, writer = await _open(sc.explicit)
    try:
        writer.write(b"".join(_post(b"/api/echo/" + str(i).encode(), b"{}") for i in range(5)))
        for i in range(5):
            head, body = await _answer(reader)
            assert head.startswith(b"HTTP/1.1 200 "), head
            assert orjson.loads(body)["path"].endswith(f"/echo/{i}"), body
        # Kept alive: one more on the same connection.
        writer.write(b"GET /api/items HTTP/1.1\r\nHost: a\r\n\r\n")
        head, _ = await _answer(reader)
        assert head.startswith(b"HTTP/1.1 200 "), head
    finally:
        writer.close()
    assert len(standins.received("api").requests) == 6


async def test_expect_100_continue_also_behind_a_pipelined_request(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory()
    reader, writer = await _open(sc.explicit)
    try:
        # A complete request, then the head of one that waits for 100 Continue.
        writer.write(
            _post(b"/api/echo/first", b"{}")
            + b"POST /api/echo/second HTTP/1.1\r\nHost: a\r\nContent-Type: application/json"
            b"\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
        )
        head, _ = await _answer(reader)
        assert head.startswith(b"HTTP/1.1 200 "), head
        async with asyncio.timeout(5):
            interim = await reader.readuntil(b"\r\n\r\n")
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"{}")
        head, body = await _answer(reader)
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert orjson.loads(body)["path"].endswith("/echo/second")
    finally:
        writer.close()


async def test_unknown_expectation_is_417(sidecar_factory: SidecarFactory) -> None:
    sc = await sidecar_factory()
    reader, writer = await _open(sc.explicit)
    try:
        writer.write(_post(b"/api/echo/x", b"{}", b"Expect: tea\r\n"))
        head, _ = await _answer(reader)
        assert head.startswith(b"HTTP/1.1 417 "), head
    finally:
        writer.close()


async def test_head_then_get_on_one_connection(sidecar_factory: SidecarFactory) -> None:
    rule = {"name": "api", "action": "allow", "kind": "http", "methods": ["GET", "HEAD"]}
    sc = await sidecar_factory({"spec": {"tools": {"rules": [rule]}}})
    reader, writer = await _open(sc.explicit)
    try:
        writer.write(
            b"HEAD /api/bytes/10 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /api/bytes/10 HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head  # no body follows a HEAD answer
        head, body = await _answer(reader)
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert len(body) == 10
    finally:
        writer.close()


async def test_chunked_and_large_bodies_are_read_whole(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory()
    reader, writer = await _open(sc.explicit)
    big = orjson.dumps({"x": "a" * (3 * BODY_HIGH_WATER)})
    try:
        writer.write(
            b"POST /api/echo/chunked HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
            b'Transfer-Encoding: chunked\r\n\r\n3\r\n{"a\r\n5\r\n": 1}\r\n0\r\n\r\n'
            + _post(b"/api/echo/big", big)
        )
        head, _ = await _answer(reader)
        assert head.startswith(b"HTTP/1.1 200 "), head
        head, _ = await _answer(reader)
        assert head.startswith(b"HTTP/1.1 200 "), head
    finally:
        writer.close()
    received = standins.received("api").requests
    assert [r.body for r in received] == [b'{"a": 1}', big]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GET /api/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "more than one Host header"),
        (b"GET /api/x HTTP/1.1\r\nHost: a\r\nX-A: " + b"a" * 9000 + b"\r\n\r\n", "header line"),
        (b"GET /api/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", "request target"),
        # A valid request in the same read as a faulty one is not served either.
        (
            b"GET /api/items HTTP/1.1\r\nHost: a\r\n\r\n"
            b"POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "framing",
        ),
        (b"GET /api/x HTTP/1.1\r\nHost: a\r\nX-A: a\r\n b\r\n\r\n", ""),  # obs-fold
    ],
)
async def test_refused_heads_reach_nothing(
    sidecar_factory: SidecarFactory, standins: Standins, data: bytes, message: str
) -> None:
    sc = await sidecar_factory()
    reader, writer = await _open(sc.explicit)
    try:
        writer.write(data)
        answer = await _until_closed(reader)
    finally:
        writer.close()
    assert STATUS_LINE.findall(answer) == [b"400"], answer
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"\r\nConnection: close" in head
    error = orjson.loads(body)["error"]
    assert error["code"] == "malformed_request"
    assert message in error["message"]
    assert not standins.received("api").requests


async def test_answer_before_the_body_ends_closes_the_connection(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    """A refusal answered before the body was read (unknown alias): what follows on the
    connection cannot be framed without reading it, so the connection ends."""
    sc = await sidecar_factory()
    reader, writer = await _open(sc.explicit)
    try:
        writer.write(b"POST /nowhere/x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n{")
        answer = await _until_closed(reader)
    finally:
        writer.close()
    assert STATUS_LINE.findall(answer) == [b"404"], answer
    assert not standins.received("api").requests


async def test_connect_after_a_request_is_refused_and_closes(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory()
    reader, writer = await _open(sc.explicit)
    try:
        writer.write(
            b"GET /api/items HTTP/1.1\r\nHost: a\r\n\r\n"
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
            b"GET /api/items HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        answer = await _until_closed(reader)
    finally:
        writer.close()
    assert STATUS_LINE.findall(answer) == [b"200", b"400"], answer
    assert len(standins.received("api").requests) == 1


async def test_http10_keep_alive_and_close(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory()
    reader, writer = await _open(sc.explicit)
    try:
        writer.write(b"GET /api/items HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n")
        head, _ = await _answer(reader)
        assert head.startswith(b"HTTP/1.0 200 "), head
        writer.write(b"GET /api/items HTTP/1.0\r\nHost: a\r\n\r\n")
        answer = await _until_closed(reader)  # no keep-alive asked: closed after it
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.0 200 "), answer
    assert len(standins.received("api").requests) == 2


async def test_stop_closes_idle_connections_and_finishes_answers(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    """On shutdown an idle keep-alive connection is closed at once; a call in flight gets
    its answer first, then its connection is closed."""
    sc = await sidecar_factory()
    idle_reader, idle_writer = await _open(sc.explicit)
    busy_reader, busy_writer = await _open(sc.explicit)
    try:
        idle_writer.write(b"GET /api/items HTTP/1.1\r\nHost: a\r\n\r\n")
        head, _ = await _answer(idle_reader)
        assert head.startswith(b"HTTP/1.1 200 "), head
        # The stand-in answers this one 0.3 s late: still in flight when the stop begins.
        busy_writer.write(b"GET /api/items HTTP/1.1\r\nHost: a\r\nx-standin-behavior: slow\r\n\r\n")
        for _ in range(500):  # until it reached the upstream (at most 5 s)
            if standins.received("api").requests[1:]:
                break
            await asyncio.sleep(0.01)
        await sc.sidecar.stop()
        assert await _until_closed(idle_reader) == b""
        answer = await _until_closed(busy_reader)
    finally:
        idle_writer.close()
        busy_writer.close()
    assert STATUS_LINE.findall(answer) == [b"200"], answer
