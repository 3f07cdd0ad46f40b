"""``haltgate iptables apply|remove``: the init container's egress rules.

Exit codes: 0 done; 1 an iptables command failed; 2 usage error (bad port, bad address).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import click

from haltgate.sidecar import iptables as rules

_backend = click.option(
    "--backend",
    type=click.Choice([b.value for b in rules.Backend]),
    default=rules.Backend.AUTO.value,
    show_default=True,
    help="iptables flavour: the one on PATH, or iptables-nft / iptables-legacy explicitly.",
)


@click.group(name="iptables")
def iptables() -> None:
    """Install or remove the egress redirection rules of a pod (IPv4 and IPv6).

    Every TCP connection from a UID other than the sidecar's is redirected to the
    transparent listener; other egress is dropped except DNS to the given resolvers.
    """


@iptables.command()
@click.option("--proxy-uid", type=int, required=True, help="UID the sidecar runs as.")
@click.option(
    "--proxy-port",
    type=int,
    default=rules.DEFAULT_PROXY_PORT,
    show_default=True,
    help="Transparent listener port connections are redirected to.",
)
@click.option(
    "--exclude-port",
    "exclude_ports",
    type=int,
    multiple=True,
    help="Outbound TCP port that bypasses the sidecar (repeatable). A deliberate hole.",
)
@click.option(
    "--protect-port",
    "protect_ports",
    type=int,
    multiple=True,
    help="Port other UIDs may not connect to (repeatable; default: 17020 and 17090).",
)
@click.option(
    "--dns",
    "dns_servers",
    multiple=True,
    help="Resolver other UIDs may query on port 53 (repeatable; default: /etc/resolv.conf).",
)
@click.option("--no-dns", is_flag=True, help="Allow no DNS at all to other UIDs.")
@click.option(
    "--mesh-uids",
    default="",
    show_default=False,
    help="Comma-separated UIDs of a service mesh proxy (e.g. 1337 for Istio's Envoy): "
    "neither redirected nor dropped, so haltgate's traffic continues to the mesh.",
)
@click.option("--ipv4-only", is_flag=True, help="Skip ip6tables (only if IPv6 is disabled).")
@click.option("--dry-run", is_flag=True, help="Print the rule set and change nothing.")
@_backend
def apply(
    proxy_uid: int,
    proxy_port: int,
    exclude_ports: tuple[int, ...],
    protect_ports: tuple[int, ...],
    dns_servers: tuple[str, ...],
    no_dns: bool,
    mesh_uids: str,
    ipv4_only: bool,
    dry_run: bool,
    backend: str,
) -> None:
    """Install the rules (replacing haltgate's previous ones). Idempotent."""
    config = rule_config(click.get_current_context().params)
    families = [rules.Family.IPV4] if ipv4_only else None
    if dry_run:
        click.echo(rules.render(config, families or tuple(rules.Family)), nl=False)
        return
    installer = rules.Installer(rules.Backend(backend), families=families)
    try:
        installer.apply(config)
    except rules.IptablesError as e:
        raise click.ClickException(f"{e.code}: {e}") from e
    names = ", ".join(f.value for f in installer.families)
    click.echo(f"haltgate egress rules applied ({names}): {summary(config)}")


def rule_config(params: Mapping[str, Any]) -> rules.RuleConfig:
    """The rule set the options of ``iptables apply`` ask for (its parsed parameters).

    The one place those options become rules: ``iptables apply``, ``node apply`` and the
    node agent all go through it. Raises click.UsageError naming the option at fault.
    """
    if params["no_dns"] and params["dns_servers"]:
        raise click.UsageError("--no-dns and --dns exclude each other")
    mesh_uids = str(params["mesh_uids"])
    try:
        meshes = tuple(int(u) for u in mesh_uids.split(",") if u.strip())
    except ValueError as e:
        raise click.UsageError(f"--mesh-uids: comma-separated integers, got {mesh_uids!r}") from e
    if params["no_dns"]:
        servers: tuple[str, ...] = ()
    else:
        servers = tuple(params["dns_servers"]) or tuple(rules.system_resolvers())
    try:
        return rules.RuleConfig(
            proxy_uid=params["proxy_uid"],
            proxy_port=params["proxy_port"],
            protected_ports=tuple(params["protect_ports"]) or rules.DEFAULT_PROTECTED_PORTS,
            exclude_ports=tuple(params["exclude_ports"]),
            dns_servers=servers,
            mesh_uids=meshes,
        )
    except ValueError as e:
        raise click.UsageError(str(e)) from e


def parse_apply_args(args: Sequence[str]) -> tuple[rules.RuleConfig, rules.Backend, bool]:
    """``iptables apply`` arguments -> (rule set, backend, dry run); click.UsageError when
    they are wrong."""
    try:
        # No help option: click caches the first one it makes on the command, and one made
        # here without the CLI's "-h" would take "-h" away from `haltgate iptables apply`.
        ctx = apply.make_context("apply", list(args), help_option_names=[])
    except click.ClickException as e:
        raise click.UsageError(f"iptables apply arguments: {e.format_message()}") from e
    return rule_config(ctx.params), rules.Backend(ctx.params["backend"]), ctx.params["dry_run"]


def summary(config: rules.RuleConfig) -> str:
    """One line saying what the rule set does (for messages and Events)."""
    return (
        f"TCP of every UID but {config.proxy_uid} -> :{config.proxy_port}; DNS to "
        f"{', '.join(config.dns_servers) or 'nobody'}; excluded ports: "
        f"{', '.join(map(str, config.exclude_ports)) or 'none'}"
    )


@iptables.command()
@click.option("--ipv4-only", is_flag=True, help="Skip ip6tables.")
@_backend
def remove(ipv4_only: bool, backend: str) -> None:
    """Delete haltgate's chains and jump rules (nothing else is touched)."""
    families = [rules.Family.IPV4] if ipv4_only else None
    try:
        rules.Installer(rules.Backend(backend), families=families).remove()
    except rules.IptablesError as e:
        raise click.ClickException(f"{e.code}: {e}") from e
    click.echo("haltgate egress rules removed")


PROBE_ADDRESS = "192.0.2.1"
"""TEST-NET-1 (RFC 5737): never routed. A connection to it completes only when the pod's
rules redirect it to the sidecar's transparent listener."""


@iptables.command()
@click.option(
    "--port",
    type=int,
    default=9,
    show_default=True,
    help="Destination port of the probe connection.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=3.0,
    show_default=True,
    help="Seconds to wait for the probe connection.",
)
@click.option(
    "--attempts",
    type=int,
    default=10,
    show_default=True,
    help="Probe attempts (the sidecar may still be starting), 1 s apart.",
)
def verify(port: int, timeout_s: float, attempts: int) -> None:
    """Check, without any capability, that this pod's egress is redirected to haltgate.

    Connects to a TEST-NET-1 address that no network routes: the connection completes only
    when the redirect sends it to the sidecar. Exits 0 when it does, 1 when it does not
    (the agent must not start: a pod whose rules were not installed fails here). Run it as a
    UID other than the sidecar's (the sidecar's own traffic is not redirected).
    """
    import socket
    import time

    last = ""
    for attempt in range(max(1, attempts)):
        if attempt:
            time.sleep(1.0)
        try:
            with socket.create_connection((PROBE_ADDRESS, port), timeout=timeout_s):
                click.echo(
                    f"haltgate redirect in place: {PROBE_ADDRESS}:{port} reached the sidecar"
                )
                return
        except OSError as e:
            last = f"{type(e).__name__}: {e}"
    raise click.ClickException(
        f"redirect_missing: a connection to {PROBE_ADDRESS}:{port} did not reach the sidecar "
        f"({last}); the egress rules are not installed in this pod"
    )
