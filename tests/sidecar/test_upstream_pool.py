"""The sidecar's upstream leg (upstream_pool.py, upstream_response.py) against a stand-in
upstream that answers byte by byte as each test scripts it (tests/sidecar/raw_upstream.py):
what goes on the wire, every body framing, interim and body-less answers, faults, timeouts,
the keep-alive pool (reuse, stale connections, the connection limit) and TLS."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme

from haltgate.sidecar.upstream_pool import UpstreamClient
from haltgate.sidecar.upstream_response import (
    UpstreamProtocolError,
    UpstreamResponse,
    UpstreamTimeout,
)
from tests.sidecar.raw_upstream import OK_HI, Exchange, raw_upstream, send

BOUNDS = UpstreamTimeout(connect=5, read=5)


@pytest.fixture
async def client() -> AsyncIterator[UpstreamClient]:
    c = UpstreamClient(limit=8)
    yield c
    await c.close()


async def call(
    client: UpstreamClient,
    port: int,
    method: str = "GET",
    target: str = "/x",
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
    bounds: UpstreamTimeout = BOUNDS,
) -> tuple[UpstreamResponse, bytes]:
    resp = await client.request(
        method, f"http://127.0.0.1:{port}{target}", headers or [], body, bounds
    )
    try:
        data = await resp.read()
    finally:
        resp.release()
    return resp, data


# ------------------------------------------------------------------------ the request


async def test_the_request_goes_out_exactly_as_decided(client: UpstreamClient) -> None:
    async with raw_upstream(send(OK_HI)) as up:
        headers = [
            ("Authorization", "Bearer k"),
            ("content-type", "application/json"),
            ("X-Dup", "1"),
            ("X-Dup", "2"),
            ("Accept-Encoding", "identity"),
        ]
        target = "/v1/a%2Fb;p=1?q=%41&z"
        await call(client, up.port, "POST", target, b'{"a":1}', headers)
        assert up.requests == [
            b"POST /v1/a%2Fb;p=1?q=%41&z HTTP/1.1\r\n"
            + f"Host: 127.0.0.1:{up.port}\r\n".encode()
            + b"Authorization: Bearer k\r\n"
            b"content-type: application/json\r\n"
            b"X-Dup: 1\r\nX-Dup: 2\r\n"
            b"Accept-Encoding: identity\r\n"
            b'Content-Length: 7\r\n\r\n{"a":1}'
        ]


async def test_no_length_without_a_body_except_for_body_methods(client: UpstreamClient) -> None:
    async with raw_upstream(send(OK_HI)) as up:
        await call(client, up.port, "GET")
        await call(client, up.port, "POST")
        get, post = up.requests
        assert b"content-length" not in get.lower()
        assert post.endswith(b"\r\nContent-Length: 0\r\n\r\n")
        for raw in (get, post):  # nothing of the client's own
            for name in (b"user-agent", b"accept:", b"accept-encoding", b"connection"):
                assert name not in raw.lower()


async def test_a_header_with_a_line_break_is_not_sent(client: UpstreamClient) -> None:
    async with raw_upstream(send(OK_HI)) as up:
        with pytest.raises(ValueError, match="X-Bad"):
            await call(client, up.port, headers=[("X-Bad", "a\r\nX-Injected: 1")])
        assert up.requests == []


# ------------------------------------------------------------------------- the answer


async def test_content_length_answer_and_the_connection_is_reused(
    client: UpstreamClient,
) -> None:
    async with raw_upstream(send(OK_HI)) as up:
        for _ in range(3):
            resp, data = await call(client, up.port)
            assert (resp.status, resp.reason, data) == (200, "OK", b"hi")
            assert resp.content_type == "text/plain" and resp.content_length == 2
        assert up.connections == 1


async def test_chunked_answer_with_trailers_ignored(client: UpstreamClient) -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    async with raw_upstream(send(answer)) as up:
        resp, data = await call(client, up.port)
        assert data == b"abcde" and resp.content_length is None
        assert "X-Trailer" not in resp.headers and resp.headers["Transfer-Encoding"] == "chunked"
        await call(client, up.port)
        assert up.connections == 1  # the chunked answer ended cleanly: reused


async def test_close_delimited_answer(client: UpstreamClient) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: 1\n\ndata: 2\n\n"
    async with raw_upstream(send(answer, close=True)) as up:
        resp, data = await call(client, up.port)
        assert data == b"data: 1\n\ndata: 2\n\n" and resp.content_type == "text/event-stream"
        await call(client, up.port)
        assert up.connections == 2  # the first one ended with its answer


async def test_head_answer_has_no_body_whatever_its_length(client: UpstreamClient) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
    async with raw_upstream(send(answer)) as up:
        resp, data = await call(client, up.port, "HEAD")
        assert (resp.status, resp.content_length, data) == (200, 5, b"")


@pytest.mark.parametrize("status", [204, 304])
async def test_bodiless_statuses(client: UpstreamClient, status: int) -> None:
    answer = f"HTTP/1.1 {status} Nothing\r\nETag: x\r\n\r\n".encode()
    async with raw_upstream(send(answer)) as up:
        for _ in range(2):
            resp, data = await call(client, up.port)
            assert (resp.status, data) == (status, b"")
        assert up.connections == 1


async def test_interim_answers_are_skipped(client: UpstreamClient) -> None:
    answer = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" + OK_HI
    )
    async with raw_upstream(send(answer)) as up:
        resp, data = await call(client, up.port, "POST", body=b"x")
        assert (resp.status, data) == (200, b"hi") and "Link" not in resp.headers
        await call(client, up.port)
        assert up.connections == 1


async def test_switching_protocols_is_refused(client: UpstreamClient) -> None:
    answer = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
    )
    async with raw_upstream(send(answer)) as up:
        with pytest.raises(UpstreamProtocolError, match="101"):
            await call(client, up.port)
        assert client.in_use == 0


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\nhi",  # bare LF
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi",
        b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.0\r\n\r\n",
    ],
)
async def test_malformed_answers_are_an_upstream_fault(
    client: UpstreamClient, answer: bytes
) -> None:
    async with raw_upstream(send(answer)) as up:
        with pytest.raises(UpstreamProtocolError):
            await call(client, up.port)
        await asyncio.sleep(0)
        assert client.in_use == 0 and client.idle == 0


async def test_a_malformed_chunk_mid_body_ends_the_read(client: UpstreamClient) -> None:
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\nzz\r\n"
    async with raw_upstream(send(answer)) as up:
        resp = await client.request("GET", f"http://127.0.0.1:{up.port}/", [], b"", BOUNDS)
        with pytest.raises(UpstreamProtocolError):
            while await resp.readany():
                pass
        resp.release()
        assert client.idle == 0


async def test_a_head_past_the_limit_is_refused() -> None:
    client = UpstreamClient(limit=2, max_head_bytes=2048)
    big = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 4096 + b"\r\nContent-Length: 0\r\n\r\n"

    async def trickle(ex: Exchange) -> None:  # a head that never ends, in small writes
        ex.writer.write(b"HTTP/1.1 200 OK\r\n")
        for _ in range(100):
            ex.writer.write(b"X-More: " + b"b" * 90 + b"\r\n")
            await ex.writer.drain()
            await asyncio.sleep(0.001)

    try:
        for answer in (send(big), trickle):
            async with raw_upstream(answer) as up:
                with pytest.raises(UpstreamProtocolError, match="2048"):
                    await call(client, up.port)
    finally:
        await client.close()


# ------------------------------------------------------------------- faults, timeouts


async def test_connection_refused_is_an_os_error(client: UpstreamClient) -> None:
    async with raw_upstream(send(OK_HI)) as up:
        port = up.port
    with pytest.raises(OSError):
        await call(client, port)
    assert client.in_use == 0


async def test_no_answer_head_in_time(client: UpstreamClient) -> None:
    async def silent(ex: Exchange) -> None:
        await asyncio.sleep(5)

    async with raw_upstream(silent) as up:
        with pytest.raises(TimeoutError):
            await call(client, up.port, bounds=UpstreamTimeout(connect=5, read=0.2))
        assert client.in_use == 0 and client.idle == 0


async def test_a_silence_inside_the_body_times_out_and_the_connection_is_dropped(
    client: UpstreamClient,
) -> None:
    async def stall(ex: Exchange) -> None:
        if ex.index == 0:
            ex.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            await ex.writer.drain()
            await asyncio.sleep(5)
        else:
            ex.writer.write(OK_HI)

    async with raw_upstream(stall) as up:
        bounds = UpstreamTimeout(connect=5, read=0.2)
        resp = await client.request("GET", f"http://127.0.0.1:{up.port}/", [], b"", bounds)
        assert await resp.readany() == b"abc"
        with pytest.raises(TimeoutError):
            await resp.readany()
        resp.release()
        _, data = await call(client, up.port)
        assert data == b"hi" and up.connections == 2


async def test_connect_timeout_covers_a_tls_handshake_that_never_ends(
    client: UpstreamClient,
) -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # never answers the ClientHello

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(TimeoutError):
            await client.request(
                "GET", f"https://127.0.0.1:{port}/", [], b"", UpstreamTimeout(connect=0.3, read=5)
            )
        assert client.in_use == 0
    finally:
        for w in accepted:
            w.close()
        server.close()


async def test_an_answer_cut_short_is_an_error_not_an_end(client: UpstreamClient) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"
    async with raw_upstream(send(answer, close=True)) as up:
        resp = await client.request("GET", f"http://127.0.0.1:{up.port}/", [], b"", BOUNDS)
        with pytest.raises(ConnectionError):
            await resp.read()
        resp.release()


# ---------------------------------------------------------------------------- the pool


async def test_a_stale_pooled_connection_is_retried_once_on_a_new_one(
    client: UpstreamClient,
) -> None:
    async def close_second(ex: Exchange) -> None:
        if ex.conn == 0 and ex.index == 1:
            ex.writer.close()  # the idle connection went away as the request arrived
            return
        ex.writer.write(OK_HI)

    async with raw_upstream(close_second) as up:
        await call(client, up.port)
        resp, data = await call(client, up.port, "PUT", body=b"payload")
        assert (resp.status, data) == (200, b"hi")
        assert up.connections == 2
        assert up.requests[1] == up.requests[2]  # the same request, once more
        assert [e.conn for e in up.exchanges] == [0, 0, 1]


async def test_a_post_on_a_stale_connection_is_not_sent_twice(client: UpstreamClient) -> None:
    """The upstream may have run it (a completion, a side effect): a POST without an
    Idempotency-Key fails instead of being repeated; with the key it is retried."""

    async def close_second(ex: Exchange) -> None:
        if ex.conn == 0 and ex.index == 1:
            ex.writer.close()
            return
        ex.writer.write(OK_HI)

    async with raw_upstream(close_second) as up:
        await call(client, up.port)
        with pytest.raises(ConnectionError):
            await call(client, up.port, "POST", body=b"payload")
        assert len(up.requests) == 2  # sent once, not repeated
    async with raw_upstream(close_second) as up:
        await call(client, up.port)
        url = f"http://127.0.0.1:{up.port}/"
        resp = await client.request("POST", url, [("Idempotency-Key", "k-1")], b"x", BOUNDS)
        assert (resp.status, await resp.read()) == (200, b"hi")
        resp.release()
        assert up.requests[1] == up.requests[2] and len(up.requests) == 3


async def test_a_new_connection_closed_before_answering_is_not_retried(
    client: UpstreamClient,
) -> None:
    async with raw_upstream(send(b"", close=True)) as up:
        with pytest.raises(ConnectionError):
            await call(client, up.port, "POST", body=b"x")
        assert len(up.requests) == 1


async def test_a_partly_read_answer_is_never_reused(client: UpstreamClient) -> None:
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1_000_000
    async with raw_upstream(send(big)) as up:
        resp = await client.request("GET", f"http://127.0.0.1:{up.port}/", [], b"", BOUNDS)
        assert await resp.readany()
        resp.release()
        assert client.in_use == 0 and client.idle == 0
        resp, data = await call(client, up.port)
        assert len(data) == 1_000_000 and up.connections == 2


async def test_the_connection_limit_is_held() -> None:
    client = UpstreamClient(limit=2)
    release = asyncio.Event()

    async def slow(ex: Exchange) -> None:
        await release.wait()
        ex.writer.write(OK_HI)

    try:
        async with raw_upstream(slow) as up:
            calls = [asyncio.create_task(call(client, up.port)) for _ in range(5)]
            for _ in range(50):
                await asyncio.sleep(0.01)
                if len(up.exchanges) == 2:
                    break
            assert client.in_use == 2 and up.connections == 2
            # A caller that cannot get a slot in its connect time gets a timeout.
            with pytest.raises(TimeoutError):
                await call(client, up.port, bounds=UpstreamTimeout(connect=0.1, read=5))
            release.set()
            results = await asyncio.gather(*calls)
            assert [data for _, data in results] == [b"hi"] * 5
            assert up.most_open == 2 and client.in_use == 0
    finally:
        await client.close()


# ----------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(ctx)
    return ctx


async def test_tls_upstream_with_the_ca_bundle_and_sni(ca: trustme.CA, tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    client = UpstreamClient(limit=4, ssl_context=ssl.create_default_context(cafile=str(bundle)))
    try:
        async with raw_upstream(send(OK_HI), tls=server_tls(ca)) as up:
            for _ in range(2):
                resp = await client.request(
                    "GET", f"https://localhost:{up.port}/v1", [], b"", BOUNDS
                )
                assert await resp.read() == b"hi"
                resp.release()
            assert up.server_names == ["localhost"] and up.connections == 1
            assert up.requests[0].startswith(
                f"GET /v1 HTTP/1.1\r\nHost: localhost:{up.port}\r\n".encode()
            )
            # The name is checked: the same server under a name its certificate lacks.
            with pytest.raises(ssl.SSLCertVerificationError):
                await client.request("GET", f"https://127.0.0.1:{up.port}/", [], b"", BOUNDS)
    finally:
        await client.close()


async def test_tls_upstream_not_trusted_without_the_bundle(ca: trustme.CA) -> None:
    client = UpstreamClient(limit=4)  # the system trust store only
    try:
        async with raw_upstream(send(OK_HI), tls=server_tls(ca)) as up:
            with pytest.raises(ssl.SSLCertVerificationError):
                await client.request("GET", f"https://localhost:{up.port}/", [], b"", BOUNDS)
            assert up.requests == [] and client.in_use == 0
    finally:
        await client.close()


async def test_a_compressed_answer_is_not_decoded(client: UpstreamClient) -> None:
    import gzip

    packed = gzip.compress(b'{"ok": true}')
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
        + f"Content-Length: {len(packed)}\r\n\r\n".encode()
        + packed
    )
    async with raw_upstream(send(answer)) as up:
        resp, data = await call(client, up.port)
        assert data == packed and resp.headers["Content-Encoding"] == "gzip"


async def test_a_large_answer_read_slowly_arrives_whole(client: UpstreamClient) -> None:
    """Past 256 KiB unread the connection stops reading (and reads again when the relay
    catches up): nothing is lost or reordered."""
    pieces = [bytes([65 + i % 26]) * 65536 for i in range(64)]  # 4 MiB, chunked

    async def stream(ex: Exchange) -> None:
        ex.writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in pieces:
            ex.writer.write(b"%x\r\n%b\r\n" % (len(piece), piece))
            await ex.writer.drain()
        ex.writer.write(b"0\r\n\r\n")

    async with raw_upstream(stream) as up:
        resp = await client.request("GET", f"http://127.0.0.1:{up.port}/", [], b"", BOUNDS)
        got = []
        while chunk := await resp.readany():
            got.append(chunk)
            await asyncio.sleep(0.001)  # a relay slower than the upstream
        resp.release()
        assert b"".join(got) == b"".join(pieces)
        await call(client, up.port)
        assert up.connections == 1  # read to its end: reused


async def test_close_delimited_answer_over_tls(ca: trustme.CA, tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    client = UpstreamClient(limit=4, ssl_context=ssl.create_default_context(cafile=str(bundle)))
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: 1\n\n"
    try:
        async with raw_upstream(send(answer, close=True), tls=server_tls(ca)) as up:
            resp = await client.request("GET", f"https://localhost:{up.port}/", [], b"", BOUNDS)
            assert await resp.read() == b"data: 1\n\n"
            resp.release()
    finally:
        await client.close()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi",
    ],
)
async def test_an_answer_that_ends_its_connection_is_not_reused(
    client: UpstreamClient, answer: bytes
) -> None:
    async with raw_upstream(send(answer)) as up:
        for _ in range(2):
            _, data = await call(client, up.port)
            assert data == b"hi"
        assert up.connections == 2 and client.idle == 0
