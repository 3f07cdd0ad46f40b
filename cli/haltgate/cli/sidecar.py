"""``haltgate sidecar``: run the governing proxy next to an agent."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import signal
from pathlib import Path
from typing import Any

import click

from haltgate.governance.pricing import PriceTableError
from haltgate.governance.request import AgentIdentity
from haltgate.governance.validation import PolicyFileError
from haltgate.sidecar.bodybudget import DEFAULT_BODY_BUDGET
from haltgate.sidecar.listeners import ListenerLimits
from haltgate.sidecar.pipeline_state import PipelineSettings
from haltgate.sidecar.server import Sidecar
from haltgate.sidecar.startup import (
    ADMIN_PORT,
    EXPLICIT_PORT,
    HTTP_SERVERS,
    METRICS_PORT,
    TRANSPARENT_PORT,
    HttpServerName,
    Listen,
    SidecarSettings,
    StartupError,
)

# Pod names of Deployments end in -<replicaset hash>-<5 chars>; of StatefulSets in -<n>.
_POD_SUFFIX = re.compile(r"(-[a-z0-9]{6,10})?-[a-z0-9]{5}$")


def workload_of(pod: str) -> str:
    """Best guess of the workload name from a pod name (bounded metric label)."""
    return _POD_SUFFIX.sub("", pod) if pod else ""


FLAGS = {
    "explicit": "--listen",
    "transparent": "--transparent-listen",
    "admin": "--admin-listen",
    "metrics": "--metrics-listen",
    "ca_dir": "--ca-dir",
    "policy_path": "--policy",
    "price_table": "--price-table",
    "audit_dir": "--audit-dir",
    "state_dir": "--state-dir",
    "upstream_ca_file": "--upstream-ca-file",
}
"""The flag of each :class:`SidecarSettings` field a start-up error can name."""


def _listen(value: str, port: int, flag: str) -> Listen:
    try:
        return Listen.parse(value, port)
    except ValueError as e:
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}", param_hint=flag) from e


def _path_option(
    flag: str,
    envvar: str,
    help: str,
    *names: str,
    directory: bool = False,
    **extra: Any,
) -> Any:
    """A path option also read from ``envvar``: a file, or a directory when ``directory``."""
    kind = click.Path(file_okay=not directory, dir_okay=directory, path_type=Path)
    return click.option(flag, *names, envvar=envvar, type=kind, help=help, **extra)


class StartFailed(click.ClickException):
    """A start-up error, shown as one line (no usage text, no traceback)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click reads it per instance

    def show(self, file: Any = None) -> None:
        click.echo(f"haltgate sidecar: {self.message}", err=True)


class _OneLineErrors(click.Command):
    """Bad flag values are reported as one line naming the flag (exit 2)."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as e:
            raise StartFailed(e.format_message(), 2) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as e:
            raise StartFailed(e.format_message(), 2) from None


@click.command(name="sidecar", cls=_OneLineErrors)
@_path_option(
    "--policy",
    "HALTGATE_POLICY_FILE",
    "GovernancePolicy YAML (reloaded when it changes).",
    "policy_path",
    required=True,
)
@_path_option(
    "--admin-token-file",
    "HALTGATE_ADMIN_TOKEN_FILE",
    "File holding the admin API bearer token. Without it the admin API refuses every request.",
)
@_path_option(
    "--state-dir",
    "HALTGATE_STATE_DIR",
    "Directory for budget state and run id (survives restarts).",
    directory=True,
)
@_path_option(
    "--audit-dir",
    "HALTGATE_AUDIT_DIR",
    "Audit spool directory (default: <state-dir>/audit; memory if neither).",
    directory=True,
)
@click.option(
    "--audit-sink",
    type=click.Choice(["spool", "memory"]),
    default="spool",
    show_default=True,
    help="spool: durable local spool (production). memory: records kept in memory "
    "only, lost on exit (tests, demos, benchmarks).",
)
@click.option(
    "--mode",
    envvar="HALTGATE_MODE",
    default="transparent",
    show_default=True,
    type=click.Choice(["transparent", "explicit"]),
    help="transparent also listens on 17001 for redirected connections.",
)
@_path_option(
    "--ca-dir",
    "HALTGATE_CA_DIR",
    "haltgate CA (ca.crt, ca.key) used to mint inspection certificates.",
    directory=True,
)
@_path_option(
    "--upstream-ca-file",
    "HALTGATE_UPSTREAM_CA_FILE",
    "Extra CA bundle trusted for https upstreams (system CAs otherwise).",
)
@click.option(
    "--listen",
    "explicit_listen",
    default=f"127.0.0.1:{EXPLICIT_PORT}",
    show_default=True,
    help="Explicit mode (base-URL aliases, HTTP(S)_PROXY).",
)
@click.option(
    "--transparent-listen",
    default=f"127.0.0.1:{TRANSPARENT_PORT}",
    show_default=True,
    help="Transparent mode listener (IPv4; ::1 is added).",
)
@click.option(
    "--admin-listen",
    default=f"127.0.0.1:{ADMIN_PORT}",
    show_default=True,
    help="Admin API and probes. Loopback by default; the injected sidecar listens "
    "on the pod IP (kubelet probes, the operator). Avoid 0.0.0.0.",
)
@click.option(
    "--metrics-listen",
    default=f"127.0.0.1:{METRICS_PORT}",
    show_default=True,
    help="Prometheus /metrics. Loopback by default; the injected sidecar listens "
    "on the pod IP (scrapes).",
)
@click.option(
    "--max-connections",
    default=2048,
    show_default=True,
    type=click.IntRange(min=1),
    help="Live connections per proxy listener; more get 503 too_many_connections.",
)
@click.option(
    "--idle-timeout",
    default=15.0,
    show_default=True,
    type=click.FloatRange(min=0.001),
    help="Seconds a connection may stay without a complete request head (header "
    "timeout, keep-alive idle timeout) on every listener.",
)
@click.option(
    "--http-server",
    default="llhttp",
    show_default=True,
    type=click.Choice(HTTP_SERVERS),
    help="HTTP server of the proxy paths (explicit port, transparent listener, inspected "
    "CONNECT): llhttp (haltgate's own, over httptools) or aiohttp. Admin and metrics run "
    "on aiohttp.",
)
@click.option(
    "--agent-namespace",
    envvar="HALTGATE_POD_NAMESPACE",
    default="",
    help="Agent namespace (downward API).",
)
@click.option("--agent-pod", envvar="HALTGATE_POD_NAME", default="", help="Agent pod name.")
@click.option(
    "--agent-workload",
    envvar="HALTGATE_WORKLOAD",
    default="",
    help="Agent workload name (default: derived from the pod name).",
)
@click.option(
    "--policy-name",
    envvar="HALTGATE_POLICY_NAME",
    default="",
    help="GovernancePolicy name, exported as the policy metric label.",
)
@click.option(
    "--opa-url", envvar="HALTGATE_OPA_URL", default="http://127.0.0.1:8181", show_default=True
)
@click.option(
    "--rego-dir",
    envvar="HALTGATE_REGO_DIR",
    default="/etc/haltgate/opa",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
)
@click.option(
    "--reload-interval",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0.01),
    help="Seconds between policy file checks.",
)
@click.option(
    "--default-max-output-tokens",
    default=4096,
    show_default=True,
    type=click.IntRange(min=1),
    help="Output tokens reserved for LLM calls that set no max_tokens, when the "
    "price table does not know the model's largest completion (a known "
    "model reserves its real maximum).",
)
@click.option(
    "--body-memory-budget",
    default=DEFAULT_BODY_BUDGET,
    show_default=True,
    type=click.IntRange(min=1),
    help="Bytes of request and response bodies all calls together may hold in "
    "memory; past it calls get 503 memory_budget_exhausted (Retry-After). "
    "The process needs about three times this on top of its idle size.",
)
@click.option(
    "--pool-dsn",
    envvar="HALTGATE_POOL_DSN",
    default=None,
    help="PostgreSQL URI of the BudgetPool database (when the policy names a pool; "
    "best from a mounted Secret via the environment).",
)
@click.option(
    "--pool-fail-mode",
    envvar="HALTGATE_POOL_FAIL_MODE",
    default="closed",
    show_default=True,
    type=click.Choice(["closed", "open"]),
    help="Pool database unreachable past the current lease: refuse calls (closed) "
    "or allow them uncounted (open).",
)
@_path_option(
    "--price-table",
    "HALTGATE_PRICE_TABLE",
    "Price table (YAML, the layout of the shipped one) replacing the table "
    "shipped in the image; spec.pricing still overrides single models. "
    "Re-read on policy reload.",
    default=None,
)
@click.option(
    "--log-level",
    envvar="HALTGATE_LOG_LEVEL",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
def sidecar(
    policy_path: Path,
    admin_token_file: Path | None,
    state_dir: Path | None,
    audit_dir: Path | None,
    audit_sink: str,
    mode: str,
    ca_dir: Path | None,
    upstream_ca_file: Path | None,
    explicit_listen: str,
    transparent_listen: str,
    admin_listen: str,
    metrics_listen: str,
    max_connections: int,
    idle_timeout: float,
    http_server: HttpServerName,
    agent_namespace: str,
    agent_pod: str,
    agent_workload: str,
    policy_name: str,
    opa_url: str,
    rego_dir: Path,
    reload_interval: float,
    default_max_output_tokens: int,
    body_memory_budget: int,
    pool_dsn: str | None,
    pool_fail_mode: str,
    price_table: Path | None,
    log_level: str,
) -> None:
    """Run the governing proxy next to an agent.

    Ports: 17000 explicit mode, 17001 transparent mode, 17020 admin API, 17090 metrics.
    Exit codes: 0 stopped by a signal; 1 cannot start with these settings (invalid policy
    or price table, unusable CA, address in use), one line naming the flag; 2 a bad flag
    value (one line naming the flag).
    """
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    flags = dict(FLAGS)
    if audit_sink == "memory":
        audit_dir = None
    elif audit_dir is None and state_dir is not None:
        audit_dir = state_dir / "audit"
        flags["audit_dir"] = "--state-dir"  # the spool's directory comes from it
    settings = SidecarSettings(
        policy_path=policy_path,
        admin_token_file=admin_token_file,
        state_dir=state_dir,
        audit_dir=audit_dir,
        ca_dir=ca_dir,
        upstream_ca_file=upstream_ca_file,
        explicit=_listen(explicit_listen, EXPLICIT_PORT, "--listen"),
        transparent=_listen(transparent_listen, TRANSPARENT_PORT, "--transparent-listen")
        if mode == "transparent"
        else None,
        admin=_listen(admin_listen, ADMIN_PORT, "--admin-listen"),
        metrics=_listen(metrics_listen, METRICS_PORT, "--metrics-listen"),
        limits=ListenerLimits(idle_timeout=idle_timeout, max_connections=max_connections),
        http_server=http_server,
        agent=AgentIdentity(
            namespace=agent_namespace,
            pod=agent_pod,
            workload=agent_workload or workload_of(agent_pod),
        ),
        reload_interval=reload_interval,
        opa_url=opa_url,
        rego_dir=rego_dir,
        pipeline=PipelineSettings(
            default_max_output_tokens=default_max_output_tokens,
            body_memory_budget=body_memory_budget,
        ),
        pool_dsn=pool_dsn,
        pool_fail_mode=pool_fail_mode,
        policy_name=policy_name,
        price_table=price_table,
    )
    try:
        _run(settings)
    except PolicyFileError as e:
        raise StartFailed(f"--policy: invalid policy: {_one_line(e)}", 1) from None
    except PriceTableError as e:
        raise StartFailed(f"--price-table: invalid price table: {_one_line(e)}", 1) from None
    except StartupError as e:
        flag = flags.get(e.setting, e.setting)
        raise StartFailed(f"{flag}: {_one_line(e)}", 1) from None


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def freeze_startup_objects() -> None:
    """Leave what start-up built (policy, compiled detectors, modules, metrics) out of the
    cyclic garbage collector's full passes: they live as long as the process, and a full
    pass over them (~80k objects) took tens of milliseconds every few thousand calls under
    load. Reference counting still frees them; only a cycle among them (the first policy's,
    after a reload) is never collected, once.

    And collect the young generation after 10,000 net allocations instead of 700: a call's
    objects die by reference counting, so under load the default threshold ran a young
    collection every couple of calls (~90 ms per 9,000 calls at 16 in flight) that found
    next to nothing; cyclic garbage now waits a little longer (bounded: a few MB)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(10_000, older, oldest)


def _run(settings: SidecarSettings) -> None:
    async def main() -> None:
        sidecar = Sidecar(settings)
        await sidecar.start()
        freeze_startup_objects()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        click.echo(f"haltgate sidecar ready: {sidecar.addresses}", err=True)
        try:
            await stop.wait()
        finally:
            await sidecar.stop()

    if os.environ.get("HALTGATE_NO_UVLOOP") != "1":
        try:
            import uvloop

            uvloop.run(main())
            return
        except ImportError:
            pass
    asyncio.run(main())
