"""The policy's upstreams, compiled for lookup by alias (explicit mode) or host (proxy)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from yarl import URL

from haltgate.governance.policy import Upstream
from haltgate.governance.policy_base import Provider, RequestKind, TLSMode

__all__ = ["ResolvedUpstream", "UpstreamTable", "default_port"]


def default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


@dataclass(frozen=True, slots=True)
class ResolvedUpstream:
    """One ``spec.upstreams`` entry, pre-parsed."""

    name: str
    kind: RequestKind
    provider: Provider | None
    tls: TLSMode
    scheme: str
    host: str
    port: int
    base_path: str
    """Path prefix of the upstream URL without trailing slash ('' for none)."""
    origin: str
    """``scheme://host[:port]`` as requests to it start."""

    @classmethod
    def from_spec(cls, up: Upstream) -> ResolvedUpstream:
        url = URL(up.url)
        scheme = url.scheme
        host = (url.host or "").lower()
        port = url.port or default_port(scheme)
        return cls(
            name=up.name,
            kind=up.kind,
            provider=up.provider,
            tls=up.tls,
            scheme=scheme,
            host=host,
            port=port,
            base_path=url.raw_path.rstrip("/"),
            origin=str(url.origin()),
        )


class UpstreamTable:
    """Lookup of upstreams by alias and by ``(host, port)``."""

    __slots__ = ("by_alias", "by_host")

    def __init__(self, upstreams: Iterable[Upstream]) -> None:
        self.by_alias: dict[str, ResolvedUpstream] = {}
        self.by_host: dict[tuple[str, int], ResolvedUpstream] = {}
        for up in upstreams:
            resolved = ResolvedUpstream.from_spec(up)
            self.by_alias[resolved.name] = resolved
            # The first entry for a host wins: aliases may share a host, proxy mode cannot
            # tell them apart.
            self.by_host.setdefault((resolved.host, resolved.port), resolved)

    def for_host(self, host: str, port: int) -> ResolvedUpstream | None:
        return self.by_host.get((host.lower(), port))
