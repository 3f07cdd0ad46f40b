"""HTTPS_PROXY with TLS inspection: CONNECT, a leaf minted by the haltgate CA, governed
requests inside, forwarded over TLS to an https upstream."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import trustme

from haltgate.sidecar.tlsmint import CA_CERT_FILE, CertificateAuthority
from haltgate.testbed.standins import llm, serve
from tests.sidecar.conftest import Running, SidecarFactory


@pytest.fixture
def http_server(both_http_servers: str) -> str:
    """Every test here runs on both servers (the tunnels' requests are parsed by it)."""
    return both_http_servers


CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "a b"}], "max_tokens": 3}


@pytest.fixture
async def https_llm(tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    """The stand-in LLM over TLS (a trustme CA): (port, CA file the sidecar must trust)."""
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(ctx)
    runner, url = await serve(llm.create_app(), "127.0.0.1", 0, ssl_context=ctx)
    ca_file = tmp_path / "upstream-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    yield int(url.rsplit(":", 1)[1]), ca_file
    await runner.cleanup()


async def inspecting_sidecar(
    sidecar_factory: SidecarFactory, https_llm: tuple[int, Path], tmp_path: Path
) -> tuple[Running, ssl.SSLContext]:
    """A sidecar with a haltgate CA that inspects CONNECT tunnels to the HTTPS stand-in
    (upstream ``secure``), and the TLS context of an agent that trusts that CA."""
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
    )
    return sc, ssl.create_default_context(cafile=str(tmp_path / "hgca" / CA_CERT_FILE))


async def test_connect_inspected(
    sidecar_factory: SidecarFactory, https_llm: tuple[int, Path], tmp_path: Path
) -> None:
    port = https_llm[0]
    sc, agent_tls = await inspecting_sidecar(sidecar_factory, https_llm, tmp_path)
    url = f"https://localhost:{port}/v1/chat/completions"
    async with aiohttp.ClientSession() as s:
        async with s.post(url, json=CHAT, proxy=sc.explicit, ssl=agent_tls) as r:
            assert r.status == 200
            assert r.headers["x-haltgate-decision-id"]
            body = await r.json()
        assert body["usage"]["completion_tokens"] == 3
        # The same connection pool keeps governing: a denied model inside the tunnel.
        async with s.post(url, json={**CHAT, "model": 5}, proxy=sc.explicit, ssl=agent_tls) as r:
            assert r.status == 400
    records = [rec for rec in sc.audit.records if rec.phase == "intent"]
    assert records and records[0].target == f"POST https://localhost:{port}/v1/chat/completions"


async def test_connect_inspected_host_mismatch(
    sidecar_factory: SidecarFactory, https_llm: tuple[int, Path], tmp_path: Path
) -> None:
    port = https_llm[0]
    sc, agent_tls = await inspecting_sidecar(sidecar_factory, https_llm, tmp_path)
    async with aiohttp.ClientSession() as s:
        async with s.post(
            f"https://localhost:{port}/v1/chat/completions",
            json=CHAT,
            proxy=sc.explicit,
            ssl=agent_tls,
            headers={"Host": "elsewhere.example"},
        ) as r:
            assert r.status == 403
            assert (await r.json())["error"]["code"] == "sni_host_mismatch"


@pytest.mark.parametrize(
    ("line", "extra", "code"),
    [
        (b"GET /v1/models HTTP/2.0", b"", "unsupported_http_version"),
        (
            b"POST /v1/chat/completions HTTP/1.0",
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "transfer_encoding_in_http10",
        ),
    ],
)
async def test_connect_inspected_refuses_faulty_framing(
    sidecar_factory: SidecarFactory,
    https_llm: tuple[int, Path],
    tmp_path: Path,
    line: bytes,
    extra: bytes,
    code: str,
) -> None:
    """Inside the tunnel as on the plain ports (``framing_check``): typed 400, closed."""
    port = https_llm[0]
    sc, agent_tls = await inspecting_sidecar(sidecar_factory, https_llm, tmp_path)
    host, sidecar_port = sc.explicit.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(sidecar_port))
    try:
        writer.write(
            f"CONNECT localhost:{port} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n".encode()
        )
        async with asyncio.timeout(5):
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
            await writer.start_tls(agent_tls, server_hostname="localhost")
            writer.write(line + f"\r\nHost: localhost:{port}\r\n".encode() + (extra or b"\r\n"))
            answer = await reader.read()  # until the sidecar closes the connection
    finally:
        writer.close()
    assert answer.startswith(line[-8:].replace(b"2.0", b"1.1") + b" 400 "), answer
    assert f'"code":"{code}"'.encode() in answer
    assert not [r for r in sc.audit.records if r.phase == "intent"]


async def test_connect_inspected_smuggling_is_refused_by_the_selected_server(
    sidecar_factory: SidecarFactory,
    https_llm: tuple[int, Path],
    tmp_path: Path,
    http_server: str,
) -> None:
    """Content-Length with Transfer-Encoding inside the tunnel: the parser refuses it; the
    llhttp server with its typed 400 (a tunnel handed to aiohttp under ``llhttp`` fails)."""
    from tests.sidecar.test_transparent_handover import SMUGGLE, assert_refused_by

    port = https_llm[0]
    sc, agent_tls = await inspecting_sidecar(sidecar_factory, https_llm, tmp_path)
    host, sidecar_port = sc.explicit.removeprefix("http://").rsplit(":", 1)
    authority = f"localhost:{port}".encode()
    reader, writer = await asyncio.open_connection(host, int(sidecar_port))
    try:
        writer.write(b"CONNECT %b HTTP/1.1\r\nHost: %b\r\n\r\n" % (authority, authority))
        async with asyncio.timeout(5):
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
            await writer.start_tls(agent_tls, server_hostname="localhost")
            writer.write(SMUGGLE.replace(b"/echo/", b"/v1/") % (authority, authority))
            answer = await reader.read()
    finally:
        writer.close()
    assert_refused_by(http_server, answer)
    assert not [r for r in sc.audit.records if r.phase == "intent"]
