"""The transparent listener's hand-over (``TransparentListener.hand_over``) to each HTTP
server (``--http-server llhttp``, the default, and ``aiohttp``): what a redirected connection
gets once it has been classified as plain HTTP or inspected TLS.

A loopback connection is accepted here and given to the running sidecar's listener with an
original destination, exactly as the listener gives a redirected one after reading
``SO_ORIGINAL_DST`` and peeking (the kernel's part, the REDIRECT and the peek, is tested for
real in tests/netns). Raw sockets: clients normalise most of this away.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest

from haltgate.sidecar.first_bytes import peek_first_bytes
from haltgate.sidecar.listeners import ListenerLimits
from haltgate.sidecar.original_destination import OriginalDestination
from haltgate.sidecar.startup import Listen
from haltgate.sidecar.tlsmint import CA_CERT_FILE, CertificateAuthority
from tests.sidecar.conftest import Running, SidecarFactory, Standins
from tests.sidecar.test_connect_inspect import CHAT, https_llm

__all__ = ["https_llm"]  # the fixture, imported for the inspected-TLS tests

STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


@pytest.fixture
def http_server(both_http_servers: str) -> str:
    """Every test here runs on both servers."""
    return both_http_servers


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def handed_over(
    sc: Running,
    od: OriginalDestination,
    *,
    first: bytes = b"",
    server_tls: ssl.SSLContext | None = None,
    client_tls: ssl.SSLContext | None = None,
) -> Conn:
    """A connection handed over by the sidecar's transparent listener as going to ``od``.
    ``first``: bytes the agent sent before the hand-over (still in the socket, as after the
    listener's peek); with ``server_tls`` the listener terminates TLS first."""
    transparent = sc.sidecar.transparent
    assert transparent is not None
    loop = asyncio.get_running_loop()
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        lsock.setblocking(False)
        host, port = lsock.getsockname()[:2]
        dial = asyncio.ensure_future(
            asyncio.open_connection(
                host,
                port,
                ssl=client_tls,
                server_hostname=od.sni if client_tls is not None else None,
            )
        )
        sock, _ = await loop.sock_accept(lsock)
    sock.setblocking(False)
    if server_tls is None:
        reader, writer = await dial
        if first:
            writer.write(first)
            await writer.drain()
            await peek_first_bytes(sock, 5.0, 64 * 1024)  # waiting, unread, as after a peek
        await transparent.hand_over(sock, od, None)
        return reader, writer
    await transparent.hand_over(sock, od, server_tls)
    return await dial


async def answers(reader: asyncio.StreamReader, n: int) -> list[tuple[bytes, bytes]]:
    """``n`` answers framed by Content-Length: (head, body) each."""
    out = []
    async with asyncio.timeout(5):
        for _ in range(n):
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)\r\ncontent-length: (\d+)", head)
            assert length is not None, head
            out.append((head, await reader.readexactly(int(length.group(1)))))
    return out


async def until_closed(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(5):
        return await reader.read()


def api_destination(standins: Standins) -> tuple[OriginalDestination, str]:
    """Where an agent calling the ``api`` stand-in directly connects, and its Host."""
    url = urlsplit(standins.api)
    assert url.hostname is not None and url.port is not None
    return OriginalDestination(url.hostname, url.port, tls=False, sni=None), url.netloc


def get(path: str, host: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()


@pytest.fixture
async def sc(sidecar_factory: SidecarFactory) -> Running:
    return await sidecar_factory(
        transparent=Listen("127.0.0.1", 0), limits=ListenerLimits(idle_timeout=1.0)
    )


async def test_pipelined_requests_sent_before_the_hand_over_are_governed_in_order(
    sc: Running, standins: Standins
) -> None:
    """The bytes the agent sent while the listener classified the connection are parsed
    first; pipelined requests are answered in order and the connection kept alive; each
    request is governed with the connection's original destination as its target."""
    od, host = api_destination(standins)
    reader, writer = await handed_over(
        sc, od, first=get("/echo/one", host) + get("/echo/two?q=2", host)
    )
    try:
        first = await answers(reader, 2)
        assert [h.split(b" ", 2)[1] for h, _ in first] == [b"200", b"200"], first
        writer.write(get("/echo/three", host))  # the connection was kept alive
        ((head, _),) = await answers(reader, 1)
        assert head.startswith(b"HTTP/1.1 200 "), head
    finally:
        writer.close()
    seen = [r.path for r in standins.received("api").requests]
    assert seen == ["/echo/one", "/echo/two", "/echo/three"]
    assert standins.received("api").requests[1].raw_query == "q=2"
    intents = [r.target for r in sc.audit.records if r.phase == "intent"]
    assert intents == [f"GET http://{host}/echo/{n}" for n in ("one", "two?q=2", "three")]


@pytest.mark.parametrize(
    ("host_of", "code"),
    [
        (lambda port: f"127.0.0.1:{port + 1 if port < 65535 else 1}", "destination_port_mismatch"),
        (lambda port: f"192.0.2.1:{port}", "destination_address_mismatch"),
        (lambda port: "", "host_header_invalid"),
    ],
    ids=["other-port", "other-address", "no-host"],
)
async def test_a_host_that_disagrees_with_the_destination_is_refused(
    sc: Running, standins: Standins, host_of: object, code: str, http_server: str
) -> None:
    od, host = api_destination(standins)
    assert callable(host_of)
    other = host_of(od.port)
    head = get("/echo/x", other) if other else b"GET /echo/x HTTP/1.1\r\n\r\n"
    reader, writer = await handed_over(sc, od)
    try:
        writer.write(head + get("/echo/behind", host))
        answer = await until_closed(reader)  # refused, then the connection is closed
    finally:
        writer.close()
    assert len(STATUS_LINE.findall(answer)) == 1, answer
    assert not standins.received("api").requests
    if not other and http_server == "aiohttp":
        # aiohttp's parser refuses an HTTP/1.1 request without Host itself (plain text).
        assert answer.startswith(b"HTTP/1.0 400 ") and b"Missing 'Host'" in answer, answer
        return
    assert answer.startswith(b"HTTP/1.1 421 "), answer
    assert orjson.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == code


async def test_connect_on_a_redirected_connection_is_refused(
    sc: Running, standins: Standins
) -> None:
    od, host = api_destination(standins)
    reader, writer = await handed_over(sc, od)
    try:
        writer.write(f"CONNECT {host} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        answer = await until_closed(reader)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 421 "), answer
    assert b'"code":"connect_not_allowed"' in answer
    assert not standins.received("api").requests


SMUGGLE = b"POST /echo/x HTTP/1.1\r\nHost: %b\r\nContent-Length: 4\r\n" + (
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /echo/smuggled HTTP/1.1\r\nHost: %b\r\n\r\n"
)


def assert_refused_by(http_server: str, answer: bytes) -> None:
    """A parser-level refusal: the llhttp server's typed 400 (``malformed_request``), or
    aiohttp's plain-text one. Tells the servers apart on the wire: a hand-over that went to
    aiohttp under ``--http-server llhttp`` fails here."""
    head, _, body = answer.partition(b"\r\n\r\n")
    assert len(STATUS_LINE.findall(answer)) == 1, answer
    if http_server == "llhttp":
        assert head.startswith(b"HTTP/1.1 400 "), answer
        assert b"\r\nx-haltgate-code: malformed_request" in head, answer
        assert orjson.loads(body)["error"]["code"] == "malformed_request"
    else:
        assert head.startswith(b"HTTP/1.0 400 "), answer
        assert b"x-haltgate-code" not in head and b"text/plain" in head, answer


async def test_smuggling_is_refused_by_the_selected_server(
    sc: Running, standins: Standins, http_server: str
) -> None:
    od, host = api_destination(standins)
    reader, writer = await handed_over(sc, od)
    try:
        writer.write(SMUGGLE % (host.encode(), host.encode()))
        answer = await until_closed(reader)
    finally:
        writer.close()
    assert_refused_by(http_server, answer)
    assert not standins.received("api").requests


async def test_a_silent_handed_over_connection_is_closed(sc: Running, standins: Standins) -> None:
    """The header timeout (``idle_timeout``) runs from the hand-over."""
    od, _ = api_destination(standins)
    reader, writer = await handed_over(sc, od)
    try:
        assert await until_closed(reader) == b""
    finally:
        writer.close()


# ------------------------------------------------------------------ inspected TLS


@pytest.fixture
async def inspecting(
    sidecar_factory: SidecarFactory, https_llm: tuple[int, Path], tmp_path: Path
) -> tuple[Running, ssl.SSLContext, OriginalDestination]:
    """A sidecar whose policy inspects the HTTPS stand-in (``secure``), the TLS context of
    an agent trusting the haltgate CA, and where that agent's connection was going."""
    port, upstream_ca = https_llm
    CertificateAuthority.create().write(tmp_path / "hgca")
    sc = await sidecar_factory(
        {
            "spec": {
                "upstreams": [
                    {
                        "name": "secure",
                        "url": f"https://localhost:{port}",
                        "kind": "llm",
                        "provider": "openai",
                    }
                ]
            }
        },
        ca_dir=tmp_path / "hgca",
        upstream_ca_file=upstream_ca,
        transparent=Listen("127.0.0.1", 0),
    )
    agent_tls = ssl.create_default_context(cafile=str(tmp_path / "hgca" / CA_CERT_FILE))
    return sc, agent_tls, OriginalDestination("127.0.0.1", port, tls=True, sni="localhost")


async def _inspected(sc: Running, agent_tls: ssl.SSLContext, od: OriginalDestination) -> Conn:
    assert sc.sidecar.minter is not None and od.sni is not None
    ctx = sc.sidecar.minter.server_context(od.sni)
    return await handed_over(sc, od, server_tls=ctx, client_tls=agent_tls)


async def test_inspected_tls_streams_and_keeps_alive(
    inspecting: tuple[Running, ssl.SSLContext, OriginalDestination],
) -> None:
    sc, agent_tls, od = inspecting
    reader, writer = await _inspected(sc, agent_tls, od)
    body = orjson.dumps({**CHAT, "stream": True})
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost:{od.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    try:
        writer.write(head + body)
        async with asyncio.timeout(5):
            answer_head = await reader.readuntil(b"\r\n\r\n")
            assert answer_head.startswith(b"HTTP/1.1 200 "), answer_head
            assert b"text/event-stream" in answer_head.lower()
            assert re.search(rb"(?i)\r\ntransfer-encoding: chunked", answer_head)
            stream = await reader.readuntil(b"\r\n0\r\n\r\n")  # the chunked body's end
        assert b"data: [DONE]" in stream
        # Kept alive: a second request on the same TLS connection.
        writer.write(head.replace(b"Content-Length", b"X-Again: 1\r\nContent-Length") + body)
        async with asyncio.timeout(5):
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
    finally:
        writer.close()
    intents = [r.target for r in sc.audit.records if r.phase == "intent"]
    assert intents == [f"POST https://localhost:{od.port}/v1/chat/completions"] * 2


async def test_inspected_tls_checks_the_host_and_refuses_smuggling(
    inspecting: tuple[Running, ssl.SSLContext, OriginalDestination], http_server: str
) -> None:
    sc, agent_tls, od = inspecting
    reader, writer = await _inspected(sc, agent_tls, od)
    try:
        writer.write(get("/v1/models", "elsewhere.example"))
        mismatch = await until_closed(reader)
    finally:
        writer.close()
    assert mismatch.startswith(b"HTTP/1.1 421 ") and b'"code":"sni_host_mismatch"' in mismatch
    reader, writer = await _inspected(sc, agent_tls, od)
    host = f"localhost:{od.port}".encode()
    try:
        writer.write(SMUGGLE.replace(b"/echo/", b"/v1/") % (host, host))
        smuggled = await until_closed(reader)
    finally:
        writer.close()
    assert_refused_by(http_server, smuggled)
    assert not [r for r in sc.audit.records if r.phase == "intent"]
