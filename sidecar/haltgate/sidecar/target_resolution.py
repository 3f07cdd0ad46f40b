"""Where a request is going: the :class:`Target` of a request on the explicit port, inside an
inspected CONNECT tunnel, or on the transparent port, with its path read once canonically."""

from __future__ import annotations

from yarl import URL

from haltgate.governance.canonical import CanonicalPath, canonical_path
from haltgate.governance.errors import (
    BadRequestError,
    DeniedError,
    HaltgateError,
    NotFoundError,
)
from haltgate.governance.policy_base import FailureType
from haltgate.sidecar.classify import Target
from haltgate.sidecar.controls import Controls
from haltgate.sidecar.original_destination import connection_info
from haltgate.sidecar.pipeline_request import PipelineRequest
from haltgate.sidecar.upstreams import default_port

__all__ = ["resolve_explicit", "resolve_inspected", "resolve_transparent"]


def _canonical(raw_path: str, controls: Controls) -> CanonicalPath:
    """The one reading of a raw path (see ``haltgate.governance.canonical``): dot segments,
    encoded slashes and the like are refused, the canonical form is what is forwarded."""
    return canonical_path(
        raw_path or "/", parameters=controls.spec.limits.path_parameters == "allow"
    )


def _raw_path_and_query(request: PipelineRequest) -> tuple[str, str]:
    """The path and query of the request line as sent (no decoding, no normalisation; a
    fragment is dropped, as aiohttp's ``rel_url`` drops it)."""
    raw = request.raw_path
    if raw.startswith("/"):
        path, _, query = raw.partition("#")[0].partition("?")
        return path, query
    try:
        url = URL(raw, encoded=True)  # absolute-form
    except ValueError as e:
        raise BadRequestError("invalid request target", code="invalid_request") from e
    return url.raw_path, url.raw_query_string


class _Resolved:
    """The alias-path targets resolved under one policy (``Controls``), by request target
    as sent: an agent calls the same few endpoints again and again, and a :class:`Target`
    is immutable and a function of the raw target and the policy alone. Bounded: emptied
    when full; long targets and refusals are never kept."""

    MAX_ENTRIES = 256
    MAX_TARGET_CHARS = 512

    def __init__(self) -> None:
        self.controls: Controls | None = None
        self.targets: dict[str, Target] = {}

    def get(self, raw_target: str, controls: Controls) -> Target | None:
        if controls is not self.controls:
            return None
        return self.targets.get(raw_target)

    def keep(self, raw_target: str, controls: Controls, target: Target) -> None:
        if len(raw_target) > self.MAX_TARGET_CHARS:
            return
        if controls is not self.controls:
            self.controls = controls  # a new policy: what the old one resolved is dropped
            self.targets = {}
        elif len(self.targets) >= self.MAX_ENTRIES:
            self.targets.clear()
        self.targets[raw_target] = target


_resolved = _Resolved()


def resolve_explicit(request: PipelineRequest, controls: Controls) -> Target | HaltgateError:
    """Target of a request on the explicit port: absolute-form (proxy) or alias path."""
    raw_target = request.raw_path
    if request.method == "CONNECT":
        return BadRequestError(
            "CONNECT is handled before HTTP parsing; not here", code="invalid_request"
        )
    if controls is _resolved.controls and raw_target.startswith("/"):
        # _Resolved.get, read here: this runs for every call on the explicit port.
        known = _resolved.targets.get(raw_target)
        if known is not None:
            return known
    try:
        if not raw_target.startswith("/"):
            # absolute-form: the agent uses the sidecar as its HTTP proxy.
            try:
                url = URL(raw_target, encoded=True)
            except ValueError:
                return BadRequestError("invalid request target", code="invalid_request")
            scheme = url.scheme
            if scheme not in ("http", "https") or not url.raw_host:
                return BadRequestError(
                    "absolute-form target must be http(s)", code="invalid_request"
                )
            host = url.raw_host.lower()
            port = url.port or default_port(scheme)
            cp = _canonical(url.raw_path, controls)
            return Target(
                scheme=scheme,
                host=host,
                port=port,
                path=cp.forward,
                query=url.raw_query_string,
                upstream=controls.upstreams.for_host(host, port),
                rule_path=cp.match,
            )
        # origin-form: split the raw target ourselves (cheaper than building a URL object)
        raw, _, query = raw_target.partition("?")
        cp = _canonical(raw, controls)
        alias, sep, rest = cp.match[1:].partition("/")
        upstream = controls.upstreams.by_alias.get(alias)
        if upstream is None:
            return NotFoundError(
                f"no upstream named {alias[:64]!r} in the policy", code="unknown_upstream"
            )
        base = upstream.base_path
        if not sep:
            return Target(
                scheme=upstream.scheme,
                host=upstream.host,
                port=upstream.port,
                path=base or "/",
                query=query,
                upstream=upstream,
            )
        forward = cp.forward[1:].partition("/")[2]
        target = Target(
            scheme=upstream.scheme,
            host=upstream.host,
            port=upstream.port,
            path=base + "/" + forward,
            query=query,
            upstream=upstream,
            rule_path=base + "/" + rest,
        )
        _resolved.keep(raw_target, controls, target)
        return target
    except HaltgateError as e:
        return e


def _host_header(request: PipelineRequest, default: int) -> tuple[str, int] | None:
    raw = request.headers.get("Host", "")
    try:
        url = URL(f"http://{raw}", encoded=True) if raw else None
    except ValueError:
        return None
    if url is None or not url.raw_host:
        return None
    port = url.explicit_port if url.explicit_port is not None else default
    return url.raw_host.lower().rstrip("."), port


def resolve_inspected(
    request: PipelineRequest, controls: Controls, host: str, port: int
) -> Target | HaltgateError:
    """Target of a request inside an inspected CONNECT tunnel: the CONNECT authority."""
    parsed = _host_header(request, 443)
    if parsed is None or parsed != (host, port):
        return DeniedError(
            f"Host header differs from the CONNECT target {host}:{port}",
            code="sni_host_mismatch",
            failure_type=FailureType.SAFETY,
        )
    try:
        raw_path, query = _raw_path_and_query(request)
        cp = _canonical(raw_path, controls)
    except HaltgateError as e:
        return e
    return Target(
        scheme="https",
        host=host,
        port=port,
        path=cp.forward,
        query=query,
        upstream=controls.upstreams.for_host(host, port),
        rule_path=cp.match,
    )


def resolve_transparent(request: PipelineRequest, controls: Controls) -> Target | HaltgateError:
    """Target of a request on the transparent port: where the agent was connecting to.

    The Host header was already checked against the SNI / original address by
    ``destination_check.destination_guard``.
    """
    od = connection_info(request)
    if od is None:
        return BadRequestError(
            "no original destination for this connection", code="no_original_destination"
        )
    scheme = "https" if od.tls else "http"
    parsed = _host_header(request, od.port)
    host = od.sni if od.tls and od.sni else (parsed[0] if parsed else od.ip)
    try:
        raw_path, query = _raw_path_and_query(request)
        cp = _canonical(raw_path, controls)
    except HaltgateError as e:
        return e
    return Target(
        scheme=scheme,
        host=host,
        port=od.port,
        path=cp.forward,
        query=query,
        upstream=controls.upstreams.for_host(host, od.port),
        destination_checked=True,
        rule_path=cp.match,
    )
