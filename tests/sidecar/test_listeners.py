"""Every listener is bounded: header/idle timeouts, a connection cap, loopback defaults;
passthrough tunnels end when idle in *both* directions, not in one (issue 16, items 7, 11).

The bounds below are tiny so that a test sees them act; the waits are generous upper
bounds (a hung socket fails the test), never speed assertions.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner

from haltgate.cli.main import main as haltgate_main
from haltgate.cli.sidecar import sidecar as sidecar_command
from haltgate.governance.policy_base import TLSMode
from haltgate.sidecar.listeners import ListenerLimits
from haltgate.sidecar.original_destination import OriginalDestination
from haltgate.sidecar.startup import SidecarSettings
from haltgate.sidecar.transparent import TransparentListener, TransparentSettings
from haltgate.sidecar.transparent_upstreams import TransparentUpstream, UpstreamIndex
from tests.sidecar.conftest import SidecarFactory, Standins


@pytest.fixture
def http_server(both_http_servers: str) -> str:
    """Every test here runs on both explicit-port servers (llhttp and aiohttp)."""
    return both_http_servers


pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def host_port(url: str) -> tuple[str, int]:
    rest = url.split("//", 1)[1]
    host, _, port = rest.rpartition(":")
    return host, int(port)


async def closed_by_server(reader: asyncio.StreamReader, within: float = 10.0) -> bytes:
    """Read until the server closes; fail if it has not within ``within`` seconds."""
    async with asyncio.timeout(within):
        return await reader.read()


def test_admin_and_metrics_default_to_loopback() -> None:
    settings = SidecarSettings(policy_path=__file__)  # type: ignore[arg-type]
    assert settings.admin.host == settings.metrics.host == "127.0.0.1"
    options = {p.name: p.default for p in sidecar_command.params}
    assert options["admin_listen"].startswith("127.0.0.1:")
    assert options["metrics_listen"].startswith("127.0.0.1:")
    # Through the root group: invoking the subcommand alone makes click cache a help option
    # without the group's `-h` on it, which breaks `haltgate sidecar -h` for later tests.
    help_text = CliRunner().invoke(haltgate_main, ["sidecar", "--help"]).output
    assert "0.0.0.0:17020" not in help_text and "0.0.0.0:17090" not in help_text
    from haltgate.cli.audit import ship

    assert {p.name: p.default for p in ship.params}["metrics_addr"] == "127.0.0.1"


def test_injected_sidecar_listens_on_the_pod_ip() -> None:
    from pathlib import Path

    template = (
        Path(__file__).parents[2] / "charts/haltgate/files/injection-template.yaml"
    ).read_text()
    assert "0.0.0.0:{{ .adminPort }}" not in template
    assert "$(HALTGATE_POD_IP):{{ .adminPort }}" in template
    assert "fieldPath: status.podIP" in template
    assert "livenessProbe:" in template
    assert "- --metrics-addr\n    - $(HALTGATE_POD_IP)" in template  # the shipper's


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="idle_timeout"):
        ListenerLimits(idle_timeout=0)
    with pytest.raises(ValueError, match="max_connections"):
        ListenerLimits(max_connections=0)


@pytest.mark.parametrize("listener", ["explicit", "admin", "metrics"])
@pytest.mark.parametrize(
    "sent", [b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\n", b"CONNE", b"CONNECT a.example:4"]
)
async def test_a_silent_or_slow_header_is_cut(
    sidecar_factory: SidecarFactory, listener: str, sent: bytes
) -> None:
    sc = await sidecar_factory(limits=ListenerLimits(idle_timeout=0.3))
    url = {"explicit": sc.explicit, "admin": sc.admin, "metrics": sc.metrics}[listener]
    reader, writer = await asyncio.open_connection(*host_port(url))
    writer.write(sent)
    # Keep dribbling bytes of one header line: a slowloris. The timer is not reset by them.
    for _ in range(3):
        await asyncio.sleep(0.1)
        if sent.startswith(b"CONNECT "):
            writer.write(b"4")  # still the CONNECT target
        elif sent and sent != b"CONNE":
            writer.write(b"X")
    answer = await closed_by_server(reader)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400")
    writer.close()


async def test_idle_keepalive_connection_is_closed(sidecar_factory: SidecarFactory) -> None:
    sc = await sidecar_factory(limits=ListenerLimits(idle_timeout=0.3))
    reader, writer = await asyncio.open_connection(*host_port(sc.admin))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    rest = await closed_by_server(reader)
    assert rest.endswith(b"}")  # the body, then the server closed the idle connection
    writer.close()


async def test_connection_cap_refuses_with_a_typed_503(sidecar_factory: SidecarFactory) -> None:
    sc = await sidecar_factory(limits=ListenerLimits(max_connections=4, max_admin_connections=3))
    held = [await asyncio.open_connection(*host_port(sc.explicit)) for _ in range(4)]
    await asyncio.sleep(0.05)
    reader, writer = await asyncio.open_connection(*host_port(sc.explicit))
    answer = await closed_by_server(reader)
    assert answer.startswith(b"HTTP/1.1 503")
    assert b'"code":"too_many_connections"' in answer
    writer.close()
    # The admin port has its own cap: probes still answer while the proxy port is full.
    async with aiohttp.ClientSession() as s, s.get(sc.admin + "/healthz") as r:
        assert r.status == 200
    # Capacity comes back when connections close.
    for _, w in held:
        w.close()
    for _ in range(100):
        async with aiohttp.ClientSession() as s, s.get(sc.explicit + "/api/healthz") as r:
            if r.status == 200:
                break
        await asyncio.sleep(0.05)
    assert r.status == 200
    # The refusals are counted per listener.
    async with aiohttp.ClientSession() as s, s.get(sc.metrics + "/metrics") as r:
        text = await r.text()
    assert 'haltgate_connections_refused_total{listener="explicit"' in text
    held_admin = [await asyncio.open_connection(*host_port(sc.admin)) for _ in range(3)]
    await asyncio.sleep(0.05)
    reader, writer = await asyncio.open_connection(*host_port(sc.admin))
    assert (await closed_by_server(reader)).startswith(b"HTTP/1.1 503")
    for _, w in [*held_admin, (reader, writer)]:
        w.close()


async def test_connect_tunnel_idle_either_way(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    """An explicit-mode CONNECT tunnel had no idle timeout at all: it held its two sockets
    forever. Now it ends once neither side sends for tunnel_idle_timeout."""
    sc = await sidecar_factory(
        {
            "spec": {
                "upstreams": [
                    {"name": "llm", "url": standins.llm, "kind": "llm", "provider": "openai"},
                    {"name": "api", "url": standins.api, "kind": "http", "tls": "passthrough"},
                ]
            }
        },
        limits=ListenerLimits(tunnel_idle_timeout=0.5),
    )
    host, port = host_port(standins.api)
    reader, writer = await asyncio.open_connection(*host_port(sc.explicit))
    writer.write(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert await closed_by_server(reader) == b""
    writer.close()


# ------------------------------------------------------------------ transparent passthrough


async def _dribbling_upstream(chunks: int, gap: float) -> tuple[asyncio.Server, int]:
    """A TLS-like server: after the client's first bytes it sends ``chunks`` pieces,
    ``gap`` seconds apart, and hangs up as soon as the client half-closes (as TLS servers
    do on an EOF without close_notify)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)

        async def hang_up_on_eof() -> None:
            await reader.read()
            writer.close()

        watcher = asyncio.ensure_future(hang_up_on_eof())
        try:
            for i in range(chunks):
                if writer.is_closing():
                    return
                writer.write(f"chunk-{i};".encode())
                await writer.drain()
                await asyncio.sleep(gap)
            writer.close()
        except (ConnectionError, OSError):
            pass
        finally:
            watcher.cancel()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _transparent_tunnel(
    listener: TransparentListener,
    up_port: int,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, asyncio.Task[Any]]:
    """A passthrough tunnel of the transparent listener, the agent side on a real socket
    (what iptables would have redirected; the original destination given directly)."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    lsock.setblocking(False)
    loop = asyncio.get_running_loop()
    connecting = asyncio.ensure_future(asyncio.open_connection(*lsock.getsockname()))
    server_side, _ = await loop.sock_accept(lsock)
    lsock.close()
    reader, writer = await connecting
    server_side.setblocking(False)
    od = OriginalDestination("127.0.0.1", up_port, tls=True, sni="up.test")
    upstream = TransparentUpstream("up", "127.0.0.1", up_port, "https", TLSMode.PASSTHROUGH)
    task = asyncio.ensure_future(listener._tunnel(server_side, od, upstream))
    return reader, writer, task


async def test_transparent_tunnel_idle_is_both_directions() -> None:
    """A download the client does not talk during is not idle: with a per-direction
    timeout the client->upstream side timed out, half-closed the upstream, and the answer
    was cut after the first second."""
    server, port = await _dribbling_upstream(chunks=8, gap=0.25)
    listener = TransparentListener(
        protocol_factory=lambda: asyncio.Protocol(),
        upstreams=lambda: UpstreamIndex(),
        minter=None,
        settings=TransparentSettings(tunnel_idle_timeout=0.8),
    )
    try:
        reader, writer, task = await _transparent_tunnel(listener, port)
        writer.write(b"\x16\x03\x01 hello")  # the client speaks once, then only listens
        received = await closed_by_server(reader)
        assert received.count(b"chunk-") == 8, received
        writer.close()
        async with asyncio.timeout(10):
            await task
    finally:
        server.close()


async def test_transparent_tunnel_closed_when_idle_both_ways() -> None:
    server, port = await _dribbling_upstream(chunks=1, gap=30)
    listener = TransparentListener(
        protocol_factory=lambda: asyncio.Protocol(),
        upstreams=lambda: UpstreamIndex(),
        minter=None,
        settings=TransparentSettings(tunnel_idle_timeout=0.5),
    )
    try:
        reader, writer, task = await _transparent_tunnel(listener, port)
        writer.write(b"\x16\x03\x01 hello")
        received = await closed_by_server(reader)
        assert received == b"chunk-0;"
        async with asyncio.timeout(10):
            await task
        writer.close()
    finally:
        server.close()
