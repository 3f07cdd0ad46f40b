"""``haltgate node``: install a pod's egress rules from the node, not from inside the pod.

For namespaces that enforce Pod Security ``restricted``: the pod then carries no NET_ADMIN
init container. A node agent (privileged, on the node) enters the pod's network namespace
and installs the same rules ``haltgate iptables apply`` would; the pod's capability-free
``haltgate iptables verify`` step refuses to let the agent start until they are in place.

Exit codes: 0 done; 1 the rules could not be installed; 2 usage error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click

NSENTER_TIMEOUT_SECONDS = 60.0
"""Bound on one rule installation inside a namespace (iptables may wait for its lock)."""


@click.group(name="node")
def node() -> None:
    """Node-side work for pods that may not hold network capabilities."""


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
    """Install the egress rules inside the network namespace NETNS.

    IPTABLES_ARGS are those of `haltgate iptables apply` (e.g. --proxy-uid 17337 --dns
    10.96.0.10), given after `--`. Needs CAP_SYS_ADMIN and CAP_NET_ADMIN on the node.
    """
    nsenter = shutil.which("nsenter")
    if nsenter is None:
        raise click.ClickException("nsenter (util-linux) not found on PATH")
    haltgate = str(Path(sys.argv[0]).resolve()) if os.path.isfile(sys.argv[0]) else "haltgate"
    argv = [nsenter, f"--net={netns}", haltgate, "iptables", "apply", *iptables_args]
    try:
        res = subprocess.run(
            argv, capture_output=True, text=True, timeout=NSENTER_TIMEOUT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise click.ClickException(
            f"iptables_failed: no answer within {NSENTER_TIMEOUT_SECONDS:.0f}s in {netns}"
        ) from e
    if res.stdout:
        click.echo(res.stdout.rstrip())
    if res.returncode != 0:
        click.echo(res.stderr.rstrip()[-2000:], err=True)
        raise SystemExit(res.returncode)


def _register_agent() -> None:
    from haltgate.cli.node_watch import agent

    node.add_command(agent)


_register_agent()
