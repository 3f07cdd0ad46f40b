"""Pieces of the transparent listener that need no namespace: parsing and the destination rule.

The listener itself (SO_ORIGINAL_DST, peeking, hand-over, TLS) is exercised for real in
tests/netns, where iptables can REDIRECT connections to it.
"""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st

from haltgate.governance.policy import GovernancePolicySpec
from haltgate.governance.policy_base import TLSMode
from haltgate.sidecar.destination_check import (
    DestinationMismatch,
    DestinationVerifier,
    _host_and_port,
    destination_guard,
    is_local_address,
    refusal_response,
)
from haltgate.sidecar.first_bytes import http_verdict
from haltgate.sidecar.original_destination import OriginalDestination, connection_info
from haltgate.sidecar.transparent_upstreams import UpstreamIndex


def _spec(*upstreams: dict[str, str]) -> GovernancePolicySpec:
    return GovernancePolicySpec.model_validate({"upstreams": list(upstreams)})


def test_index_by_host_with_default_ports() -> None:
    index = UpstreamIndex.from_spec(
        _spec(
            {"name": "llm", "url": "https://API.example.com/v1", "kind": "llm"},
            {"name": "tool", "url": "http://tool.example:8080", "kind": "http"},
        )
    )
    llm = index.lookup("api.example.com.")
    assert llm is not None and (llm.port, llm.scheme, llm.tls) == (443, "https", TLSMode.INSPECT)
    tool = index.lookup("TOOL.example")
    assert tool is not None and tool.port == 8080
    assert index.lookup("evil.example") is None


def test_inspect_wins_when_a_host_is_listed_twice() -> None:
    for order in (1, -1):
        ups = [
            {"name": "a", "url": "https://h.example", "kind": "http", "tls": "passthrough"},
            {"name": "b", "url": "https://h.example", "kind": "llm", "tls": "inspect"},
        ]
        up = UpstreamIndex.from_spec(_spec(*ups[::order])).lookup("h.example")
        assert up is not None and up.tls is TLSMode.INSPECT


@pytest.mark.parametrize(
    ("header", "default", "expected"),
    [
        ("api.example.com", 443, ("api.example.com", 443)),
        ("API.example.com.:8443", 443, ("api.example.com", 8443)),
        ("[fd00::1]:80", 443, ("fd00::1", 80)),
        ("[fd00::1]", 80, ("fd00::1", 80)),
        ("", 80, None),
        ("host:0", 80, None),
        ("host:99999", 80, None),
        ("host:8o", 80, None),
        ("[fd00::1", 80, None),
        ("[fd00::1]x", 80, None),
    ],
)
def test_host_header_parsing(header: str, default: int, expected: tuple[str, int] | None) -> None:
    assert _host_and_port(header, default) == expected


@pytest.mark.parametrize(
    ("data", "verdict"),
    [
        (b"GET / HTTP/1.1\r\n", True),
        (b"POST /v1/chat", True),
        (b"CONNECT evil:443 HTTP/1.1", True),
        (b"G", None),
        (b"DELETE", None),
        (b"GET ", None),
        (b"PRI * HTTP/2.0\r\n\r\nSM", False),
        (b"SSH-2.0-OpenSSH_9.6\r\n", False),
        (b"get / HTTP/1.1\r\n", False),
        (b"\x00\x00\x00\x00\x00\x00\x00\x00\x00", False),
    ],
)
def test_http_verdict(data: bytes, verdict: bool | None) -> None:
    assert http_verdict(data) is verdict


@given(st.binary(max_size=64))
def test_http_verdict_never_raises(data: bytes) -> None:
    assert http_verdict(data) in (True, False, None)


async def test_verifier_address_and_port_rule() -> None:
    verifier = DestinationVerifier()
    od = OriginalDestination("127.0.0.1", 8080, tls=False, sni=None)
    await verifier.check(od, "localhost", 8080)
    await verifier.check(od, "127.0.0.1", 8080)
    with pytest.raises(DestinationMismatch) as e:
        await verifier.check(od, "localhost", 80)
    assert e.value.code == "destination_port_mismatch"
    with pytest.raises(DestinationMismatch) as e:
        await verifier.check(OriginalDestination("10.9.9.9", 8080, False, None), "localhost", 8080)
    assert e.value.code == "destination_address_mismatch"
    with pytest.raises(DestinationMismatch):
        await verifier.check(od, "does-not-resolve.invalid", 8080)


async def test_ipv4_mapped_original_address_matches_ipv4() -> None:
    od = OriginalDestination("::ffff:127.0.0.1", 80, tls=False, sni=None)
    await DestinationVerifier().check(od, "127.0.0.1", 80)


async def test_guard_leaves_requests_without_original_destination_alone() -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text=f"ok {connection_info(request)}")

    app = web.Application(middlewares=[destination_guard(DestinationVerifier())])
    app.router.add_get("/", ok)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/", headers={"Host": "anything.example"})
        assert resp.status == 200
        assert await resp.text() == "ok None"


def test_refusal_response_is_typed_and_closes() -> None:
    resp = refusal_response("sni_host_mismatch", "Host differs")
    assert resp.status == 421
    assert resp.headers["x-haltgate-decision-id"]
    assert isinstance(resp.body, bytes) and b'"code":"sni_host_mismatch"' in resp.body
    assert resp.keep_alive is False


def test_index_is_cached_per_spec_object() -> None:
    a = _spec({"name": "x", "url": "https://x.example", "kind": "http"})
    b = _spec({"name": "y", "url": "https://y.example", "kind": "http"})
    first = UpstreamIndex.from_spec(a)
    assert UpstreamIndex.from_spec(a) is first
    other = UpstreamIndex.from_spec(b)
    assert other is not first
    assert other.lookup("y.example") is not None and other.lookup("x.example") is None


def test_local_addresses_are_recognised() -> None:
    import ipaddress

    assert is_local_address(ipaddress.ip_address("127.0.0.1"))
    assert not is_local_address(ipaddress.ip_address("192.0.2.1"))  # TEST-NET-1
