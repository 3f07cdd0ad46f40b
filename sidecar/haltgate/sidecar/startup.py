"""Start-up configuration of the sidecar process: its settings, listen addresses, default
ports, and the typed error (naming the setting at fault) that stops a start."""

from __future__ import annotations

import contextlib
import errno
import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from haltgate.governance.request import AgentIdentity
from haltgate.sidecar.listeners import ListenerLimits
from haltgate.sidecar.pipeline_state import PipelineSettings

__all__ = [
    "ADMIN_PORT",
    "EXPLICIT_PORT",
    "HTTP_SERVERS",
    "METRICS_PORT",
    "TRANSPARENT_PORT",
    "Listen",
    "SidecarSettings",
    "StartupError",
    "binding",
    "opening",
]

EXPLICIT_PORT = 17000
HttpServerName = Literal["llhttp", "aiohttp"]
HTTP_SERVERS: tuple[HttpServerName, ...] = ("llhttp", "aiohttp")
"""The HTTP servers of the proxy paths (``--http-server``)."""
TRANSPARENT_PORT = 17001
ADMIN_PORT = 17020
METRICS_PORT = 17090


class StartupError(Exception):
    """The sidecar cannot start with these settings; ``setting`` names the field of
    :class:`SidecarSettings` at fault (the CLI reports it as its flag)."""

    code = "startup_failed"

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting
        self.message = message


@dataclass(frozen=True, slots=True)
class Listen:
    host: str
    port: int

    @classmethod
    def parse(cls, value: str, default_port: int) -> Listen:
        """``host:port``, ``:port``, ``[v6]:port`` or ``host``."""
        if value.startswith("["):
            host, _, rest = value[1:].partition("]")
            return cls(host, _port(rest.lstrip(":") or default_port))
        host, sep, port = value.rpartition(":")
        if not sep:
            return cls(value, default_port)
        return cls(host or "127.0.0.1", _port(port))


def _port(value: str | int) -> int:
    port = int(value)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range 0-65535")
    return port


@dataclass(frozen=True, slots=True)
class SidecarSettings:
    """Process settings of the sidecar (policy is separate: it reloads)."""

    policy_path: Path
    """GovernancePolicy YAML (usually a mounted ConfigMap)."""
    admin_token_file: Path | None = None
    """File with the admin bearer token (a mounted Secret). None: admin API refuses all."""
    state_dir: Path | None = None
    """Where budget state and the run id persist across restarts. None: memory only."""
    audit_dir: Path | None = None
    """Audit spool directory. None: records kept in memory (tests, demos)."""
    explicit: Listen = Listen("127.0.0.1", EXPLICIT_PORT)
    admin: Listen = Listen("127.0.0.1", ADMIN_PORT)
    """Loopback by default; the injected sidecar listens on the pod IP (kubelet probes,
    the operator), never on every address."""
    metrics: Listen = Listen("127.0.0.1", METRICS_PORT)
    limits: ListenerLimits = field(default_factory=ListenerLimits)
    """Connection cap and header/idle timeout of every listener (listeners.py)."""
    http_server: HttpServerName = "llhttp"
    """The HTTP server of the proxy paths (the explicit port, the transparent listener's
    plain HTTP and inspected TLS, inspected ``CONNECT``): ``llhttp`` (haltgate's own,
    llhttp_server.py) or ``aiohttp``. Admin and metrics run on aiohttp."""
    transparent: Listen | None = None
    """Transparent listener (17001; ``::1`` on the same port is added). None: off."""
    ca_dir: Path | None = None
    """haltgate CA (``ca.crt``, ``ca.key``) for TLS inspection. None: nothing is inspected
    (CONNECT/TLS to ``inspect`` upstreams is refused)."""
    agent: AgentIdentity = field(default_factory=AgentIdentity)
    reload_interval: float = 1.0
    """Seconds between policy file checks."""
    opa_url: str = "http://127.0.0.1:8181"
    rego_dir: Path = Path("/etc/haltgate/opa")
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    upstream_connections: int = 256
    """Keep-alive pool size (all upstreams together)."""
    upstream_ca_file: Path | None = None
    """Extra CA bundle to trust for https upstreams (private APIs); system CAs otherwise."""
    pool_dsn: str | None = None
    """PostgreSQL URI of the BudgetPool database (needed when the policy names a pool)."""
    pool_fail_mode: str = "closed"
    """Pool database unreachable past the current lease: refuse (closed) or allow (open)."""
    policy_name: str = ""
    """Name of the GovernancePolicy (the ``policy`` metric label; empty: left out)."""
    price_table: Path | None = None
    """Price table file replacing the one shipped in the image (the chart's pricing.table,
    mounted with the policy). Re-read on each policy reload. None: the shipped table."""


@contextlib.contextmanager
def binding(setting: str, listen: Listen) -> Iterator[None]:
    """A listener that cannot bind its address is a :class:`StartupError` naming it."""
    try:
        yield
    except OSError as e:
        # uvloop's messages repeat the address; the errno says it all.
        reason = os.strerror(e.errno) if e.errno else str(e)
        if e.errno == errno.EADDRINUSE:
            reason = "address already in use"
        raise StartupError(
            setting, f"cannot listen on {listen.host}:{listen.port}: {reason}"
        ) from e


@contextlib.contextmanager
def opening(setting: str, what: str, path: Path | None = None) -> Iterator[None]:
    """A file or directory of a setting that cannot be used is a :class:`StartupError`."""
    try:
        yield
    except ssl.SSLError as e:
        raise StartupError(setting, f"{what} {path}: {e.reason or e}") from e
    except OSError as e:
        where = e.filename or path
        what = f"{what} {where}" if where else what
        raise StartupError(setting, f"{what}: {e.strerror or e}") from e
