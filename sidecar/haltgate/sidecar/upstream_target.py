"""An upstream URL read for the upstream leg (:mod:`.upstream_pool`): its origin (scheme,
host, port: the pool's key, and the ``Host`` header), its request target, the request head
as it goes out, and whether a request may be sent twice."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

__all__ = ["Origin", "repeatable", "request_head", "split_url"]

_NO_LENGTH_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "CONNECT"})
_REPEATABLE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
"""Methods RFC 9110 calls idempotent: a stale pooled connection may be retried for them."""


class Origin:
    """An upstream URL's origin: TLS or not, host, port, pool key and Host header."""

    __slots__ = ("host", "host_header", "key", "port", "tls")

    def __init__(self, scheme: str, netloc: str) -> None:
        if scheme not in ("http", "https"):
            raise ValueError(f"upstream URL scheme must be http or https, got {scheme!r}")
        if not netloc or "@" in netloc:
            raise ValueError("upstream URL must name a host (and no user info)")
        self.tls = scheme == "https"
        port = 443 if self.tls else 80
        if netloc.startswith("["):
            end = netloc.find("]")
            host = netloc[1:end]
            rest = netloc[end + 1 :]
        else:
            host, sep, rest = netloc.partition(":")
            rest = sep + rest
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ValueError(f"upstream URL has a bad port: {netloc!r}")
            port = int(rest[1:])
        if not host:
            raise ValueError("upstream URL must name a host")
        self.host = host
        self.port = port
        self.key = (self.tls, host.lower(), port)
        self.host_header = netloc if netloc.isascii() else _idna(host, netloc)


def _idna(host: str, netloc: str) -> str:
    return host.encode("idna").decode("ascii") + netloc[netloc.find(host) + len(host) :]


def split_url(url: str) -> tuple[str, str]:
    """``scheme://netloc`` and the request target (path and query, ``/`` at least)."""
    sep = url.find("://")
    if sep <= 0:
        raise ValueError("upstream URL must be absolute")
    start = sep + 3
    end = len(url)
    for ch in "/?#":
        i = url.find(ch, start)
        if 0 <= i < end:
            end = i
    target = url[end:]
    if not target or target[0] != "/":
        target = "/" + target
    return url[:end], target


def request_head(
    method: str, target: str, host: str, headers: Iterable[tuple[str, str]], body_length: int
) -> bytes:
    """The request's head as it goes out (see the module docstring for what is in it)."""
    if not method.isascii() or " " in method or " " in target or not target.isprintable():
        raise ValueError("the request line cannot be sent as it is")
    lines = [method, " ", target, " HTTP/1.1\r\nHost: ", host, "\r\n"]
    for name, value in headers:
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
            raise ValueError(f"header {name[:64]!r} cannot be sent (line break in it)")
        if name.lower() == "host":  # kept in its first place (as aiohttp did)
            lines[4] = value
            continue
        lines += (name, ": ", value, "\r\n")
    if body_length or method not in _NO_LENGTH_METHODS:
        lines += ("Content-Length: ", str(body_length), "\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("utf-8", "surrogateescape")


def repeatable(method: str, headers: Iterable[tuple[str, str]]) -> bool:
    """May this request be sent twice (a stale pooled connection)? Idempotent methods, or
    a request the client marked with an ``Idempotency-Key`` (pure)."""
    return method in _REPEATABLE_METHODS or any(
        name.lower() == "idempotency-key" for name, _ in headers
    )
