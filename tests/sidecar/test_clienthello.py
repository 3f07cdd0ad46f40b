"""The ClientHello SNI parser: real handshakes from Python's ssl, split, truncated and fuzzed."""

from __future__ import annotations

import ssl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from haltgate.sidecar.clienthello import Status, looks_like_tls, parse_client_hello


def real_hello(server_hostname: str | None, alpn: list[str] | None = None) -> bytes:
    """The first flight a real TLS client sends (Python's OpenSSL client)."""
    ctx = ssl.create_default_context()
    if server_hostname is None:
        ctx.check_hostname = False
    if alpn:
        ctx.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def split_records(hello: bytes, size: int) -> bytes:
    """Re-frame one handshake record as several records of ``size`` payload bytes."""
    header, payload = hello[:5], hello[5:]
    out = b""
    for i in range(0, len(payload), size):
        chunk = payload[i : i + size]
        out += header[:3] + len(chunk).to_bytes(2, "big") + chunk
    return out


HELLO = real_hello("api.example.com", ["h2", "http/1.1"])


def test_sni_and_alpn_of_a_real_client_hello() -> None:
    result = parse_client_hello(HELLO)
    assert result.status is Status.COMPLETE
    assert result.sni == "api.example.com"
    assert result.alpn == ("h2", "http/1.1")


def test_no_sni_when_connecting_by_address() -> None:
    result = parse_client_hello(real_hello(None))
    assert result.status is Status.COMPLETE
    assert result.sni is None


def test_trailing_application_bytes_are_ignored() -> None:
    assert parse_client_hello(HELLO + b"\x17\x03\x03\x00\x05hello").sni == "api.example.com"


@pytest.mark.parametrize("size", [1, 7, 100, 511])
def test_client_hello_split_over_records(size: int) -> None:
    assert parse_client_hello(split_records(HELLO, size)).sni == "api.example.com"


def test_every_truncation_asks_for_more() -> None:
    for cut in range(len(HELLO)):
        result = parse_client_hello(HELLO[:cut])
        assert result.status is Status.NEED_MORE, cut
        assert result.needed > cut


@pytest.mark.parametrize(
    "data",
    [b"GET / HTTP/1.1\r\n", b"PRI * HTTP/2.0\r\n", b"SSH-2.0-OpenSSH\r\n", b"\x00\x01"],
)
def test_other_protocols_are_not_tls(data: bytes) -> None:
    assert not looks_like_tls(data)
    assert parse_client_hello(data).status is Status.NOT_TLS


def test_a_server_hello_or_alert_is_malformed() -> None:
    alert = b"\x15\x03\x03\x00\x02\x02\x28"
    assert parse_client_hello(alert).status is Status.NOT_TLS
    not_hello = b"\x16\x03\x03\x00\x04\x02\x00\x00\x00"
    assert parse_client_hello(not_hello).status is Status.MALFORMED


def test_zero_length_record_is_malformed() -> None:
    assert parse_client_hello(b"\x16\x03\x01\x00\x00").status is Status.MALFORMED


def test_non_host_sni_is_malformed() -> None:
    bad = HELLO.replace(b"api.example.com", b"api.exa/ple.com")
    assert parse_client_hello(bad).status is Status.MALFORMED


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_arbitrary_bytes_never_raise(data: bytes) -> None:
    result = parse_client_hello(data)
    assert result.status in set(Status)
    if result.sni is not None:
        assert result.sni.isascii()


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_mutated_real_hello_never_raises(data: st.DataObject) -> None:
    buf = bytearray(HELLO)
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    result = parse_client_hello(bytes(buf))
    assert result.status in set(Status)


@settings(max_examples=100, deadline=None)
@given(st.from_regex(r"[a-z][a-z0-9]{0,19}(\.[a-z0-9]{1,20}){0,4}", fullmatch=True))
def test_fuzz_host_names_round_trip(host: str) -> None:
    assert parse_client_hello(real_hello(host)).sni == host
