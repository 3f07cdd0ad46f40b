"""Read the server name (SNI) from the first bytes of a TLS connection, without consuming them.

The transparent listener peeks at a redirected connection and must decide before any TLS
library touches it: inspect (terminate with a minted leaf), pass through, or refuse. This
parser is deliberately small and strict. It reassembles a ClientHello split over several
TLS records, bounds everything by the declared lengths, and never raises on hostile input:
it answers NEED_MORE, NOT_TLS or MALFORMED instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

RECORD_HEADER = 5
HANDSHAKE_HEADER = 4
CONTENT_HANDSHAKE = 0x16
HANDSHAKE_CLIENT_HELLO = 0x01
EXTENSION_SERVER_NAME = 0x0000
EXTENSION_ALPN = 0x0010
NAME_TYPE_HOST = 0x00
MAX_RECORD = 16384 + 2048
"""Largest TLS record payload a peer may send (2^14 plus the ciphertext allowance)."""
MAX_CLIENT_HELLO = 64 * 1024
"""ClientHellos larger than this are refused (real ones are a few KiB, even with PQ keys)."""

_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


class Status(StrEnum):
    COMPLETE = "complete"
    NEED_MORE = "need_more"
    NOT_TLS = "not_tls"
    MALFORMED = "malformed"


@dataclass(frozen=True, slots=True)
class ClientHello:
    """Outcome of parsing; ``sni`` and ``alpn`` only when ``status`` is COMPLETE."""

    status: Status
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    reason: str = ""
    needed: int = 0
    """For NEED_MORE: how many bytes in total the parser needs to go on (a lower bound)."""


def looks_like_tls(data: bytes) -> bool:
    """Whether the first bytes could start a TLS handshake record (SSL 3.0 .. TLS 1.3)."""
    if not data:
        return False
    if data[0] != CONTENT_HANDSHAKE:
        return False
    return len(data) < 2 or data[1] == 0x03


class _Reader:
    """Bounds-checked big-endian reads over one buffer; raises ValueError past the end."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise ValueError("truncated")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def vector(self, length_bytes: int) -> bytes:
        return self.take(self.uint(length_bytes))

    def done(self) -> bool:
        return self.pos == len(self.buf)


def _handshake_bytes(data: bytes) -> tuple[bytes, int] | ClientHello:
    """Concatenate handshake record payloads; returns (payload, bytes needed) or a verdict."""
    payload = bytearray()
    pos = 0
    while True:
        if len(data) - pos < RECORD_HEADER:
            return bytes(payload), pos + RECORD_HEADER
        content, major, _minor = data[pos], data[pos + 1], data[pos + 2]
        length = int.from_bytes(data[pos + 3 : pos + 5], "big")
        if content != CONTENT_HANDSHAKE or major != 0x03:
            return ClientHello(
                Status.NOT_TLS if pos == 0 else Status.MALFORMED,
                reason="not a TLS handshake record",
            )
        if length == 0 or length > MAX_RECORD:
            return ClientHello(Status.MALFORMED, reason=f"bad record length {length}")
        end = pos + RECORD_HEADER + length
        if len(data) < end:
            payload += data[pos + RECORD_HEADER :]
            return bytes(payload), end
        payload += data[pos + RECORD_HEADER : end]
        pos = end
        if len(payload) >= HANDSHAKE_HEADER:
            total = HANDSHAKE_HEADER + int.from_bytes(payload[1:4], "big")
            if len(payload) >= total:
                return bytes(payload), 0
        if len(payload) > MAX_CLIENT_HELLO:
            return ClientHello(Status.MALFORMED, reason="ClientHello too large")


def parse_client_hello(data: bytes) -> ClientHello:
    """Parse the ClientHello at the start of ``data`` (the bytes peeked from a connection)."""
    if not data:
        return ClientHello(Status.NEED_MORE, needed=RECORD_HEADER)
    if not looks_like_tls(data):
        return ClientHello(Status.NOT_TLS, reason="first byte is not a TLS handshake")
    joined = _handshake_bytes(data)
    if isinstance(joined, ClientHello):
        return joined
    payload, needed = joined
    if len(payload) >= 1 and payload[0] != HANDSHAKE_CLIENT_HELLO:
        return ClientHello(Status.MALFORMED, reason="first handshake message is not ClientHello")
    if len(payload) >= HANDSHAKE_HEADER:
        body_length = int.from_bytes(payload[1:4], "big")
        if body_length > MAX_CLIENT_HELLO:
            return ClientHello(Status.MALFORMED, reason="ClientHello too large")
        if len(payload) < HANDSHAKE_HEADER + body_length:
            return ClientHello(Status.NEED_MORE, needed=max(needed, len(data) + 1))
        body = payload[HANDSHAKE_HEADER : HANDSHAKE_HEADER + body_length]
        try:
            return _parse_body(body)
        except ValueError as e:
            return ClientHello(Status.MALFORMED, reason=f"ClientHello {e}")
    return ClientHello(Status.NEED_MORE, needed=max(needed, len(data) + 1))


def _parse_body(body: bytes) -> ClientHello:
    r = _Reader(body)
    if r.uint(1) != 0x03:
        raise ValueError("has an unknown legacy version")
    r.take(1 + 32)  # minor version, random
    r.vector(1)  # legacy session id
    suites = r.vector(2)
    if not suites or len(suites) % 2:
        raise ValueError("has bad cipher suites")
    r.vector(1)  # compression methods
    if r.done():
        return ClientHello(Status.COMPLETE)  # no extensions at all: no SNI
    extensions = _Reader(r.vector(2))
    if not r.done():
        raise ValueError("has trailing bytes")
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    seen: set[int] = set()
    while not extensions.done():
        ext_type = extensions.uint(2)
        ext = extensions.vector(2)
        if ext_type in seen:
            raise ValueError(f"repeats extension {ext_type}")
        seen.add(ext_type)
        if ext_type == EXTENSION_SERVER_NAME:
            sni = _server_name(ext)
        elif ext_type == EXTENSION_ALPN:
            alpn = _alpn(ext)
    return ClientHello(Status.COMPLETE, sni=sni, alpn=alpn)


def _server_name(ext: bytes) -> str | None:
    r = _Reader(ext)
    names = _Reader(r.vector(2))
    if not r.done():
        raise ValueError("server_name has trailing bytes")
    host: str | None = None
    while not names.done():
        name_type = names.uint(1)
        name = names.vector(2)
        if name_type != NAME_TYPE_HOST:
            continue
        if host is not None:
            raise ValueError("names two hosts")  # RFC 6066: one name per type
        host = _valid_host(name)
    return host


def _valid_host(raw: bytes) -> str:
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as e:
        raise ValueError("server name is not ASCII") from e
    host = text.lower().rstrip(".")
    if not host or len(host) > 253:
        raise ValueError("server name has a bad length")
    if not all(_HOST_LABEL.match(label) for label in host.split(".")):
        raise ValueError("server name is not a host name")
    return host


def _alpn(ext: bytes) -> tuple[str, ...]:
    r = _Reader(ext)
    protocols = _Reader(r.vector(2))
    out = []
    while not protocols.done():
        out.append(protocols.vector(1).decode("ascii", "replace"))
    return tuple(out)
