"""``haltgate node``: install a pod's egress rules from the node, not from inside the pod.

For namespaces that enforce Pod Security ``restricted``: the pod then carries no NET_ADMIN
init container. From the node (privileged, or NET_ADMIN + SYS_ADMIN), ``apply`` enters the
pod's network namespace and installs the same rules ``haltgate iptables apply`` would;
``agent`` (the chart's DaemonSet) does it for every node-mode pod of its node. The pod's
capability-free ``haltgate iptables verify`` step refuses to let the agent start until they
are in place.

Exit codes: 0 done; 1 the rules could not be installed; 2 usage error.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from haltgate.cli.iptables import parse_apply_args, summary
from haltgate.cli.node_watch import agent
from haltgate.sidecar import iptables as rules
from haltgate.sidecar import netns_rules


@click.group(name="node")
def node() -> None:
    """Node-side work for pods that may not hold network capabilities."""


node.add_command(agent)


@node.command(context_settings={"ignore_unknown_options": True})
@click.option(
    "--netns",
    "netns",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The pod's network namespace: /proc/PID/ns/net or /run/netns/NAME.",
)
@click.argument("iptables_args", nargs=-1, type=click.UNPROCESSED)
def apply(netns: Path, iptables_args: tuple[str, ...]) -> None:
    """Install the egress rules inside the network namespace NETNS (if not already there).

    IPTABLES_ARGS are those of `haltgate iptables apply` (e.g. --proxy-uid 17337 --dns
    10.96.0.10), given after `--`. Needs CAP_SYS_ADMIN and CAP_NET_ADMIN on the node.
    """
    config, backend, dry_run = parse_apply_args(iptables_args)
    if dry_run:
        click.echo(rules.render(config), nl=False)
        return
    try:
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise click.ClickException(f"netns_unavailable: {netns}: {e.strerror}") from e
    try:
        outcome = netns_rules.ensure_rules(fd, config, backend)
    except (rules.IptablesError, OSError) as e:
        raise click.ClickException(f"iptables_failed: {e} (in {netns})") from e
    finally:
        os.close(fd)
    verb = {
        netns_rules.Outcome.PRESENT: "already in place",
        netns_rules.Outcome.REORDERED: "in place, jump moved back to the top of OUTPUT,",
    }.get(outcome, "applied")
    click.echo(f"haltgate egress rules {verb} in {netns}: {summary(config)}")
