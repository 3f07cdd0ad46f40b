"""The policy's upstreams as the transparent listener sees them: host, port and TLS mode."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from haltgate.governance.policy import GovernancePolicySpec
from haltgate.governance.policy_base import TLSMode


@dataclass(frozen=True, slots=True)
class TransparentUpstream:
    """An upstream as transparent mode sees it: a host and port, and what to do with TLS."""

    name: str
    host: str
    port: int
    scheme: str
    tls: TLSMode


_INDEX_CACHE: dict[str, tuple[GovernancePolicySpec, UpstreamIndex]] = {}


class UpstreamIndex:
    """The policy's upstreams by host name (lower case). Built once per policy version.

    When several upstreams share a host (two aliases on one API), ``inspect`` wins over
    ``passthrough``: the stricter reading of an ambiguous policy.
    """

    def __init__(self, upstreams: Iterable[TransparentUpstream] = ()) -> None:
        self._by_host: dict[str, TransparentUpstream] = {}
        for up in upstreams:
            known = self._by_host.get(up.host)
            if known is None or (known.tls is TLSMode.PASSTHROUGH and up.tls is TLSMode.INSPECT):
                self._by_host[up.host] = up

    @classmethod
    def from_spec(cls, spec: GovernancePolicySpec) -> UpstreamIndex:
        """The index of ``spec`` (cached for the current spec object: policies are immutable
        and replaced whole on reload, so callers may ask once per connection)."""
        cached = _INDEX_CACHE.get("last")
        if cached is not None and cached[0] is spec:
            return cached[1]
        index = cls._build(spec)
        _INDEX_CACHE["last"] = (spec, index)
        return index

    @classmethod
    def _build(cls, spec: GovernancePolicySpec) -> UpstreamIndex:
        out = []
        for up in spec.upstreams:
            url = urlsplit(up.url)
            if url.hostname is None:
                continue
            port = url.port or (443 if url.scheme == "https" else 80)
            out.append(TransparentUpstream(up.name, url.hostname.lower(), port, url.scheme, up.tls))
        return cls(out)

    def lookup(self, host: str) -> TransparentUpstream | None:
        return self._by_host.get(host.lower().rstrip("."))
