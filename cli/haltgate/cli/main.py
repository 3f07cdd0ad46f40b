"""Entry point of the ``haltgate`` command.

Exit codes: 0 success; 1 the command ran and found a problem (an invalid policy, a broken
audit chain); 2 usage error.

Subcommands are imported when they run, not all at start: ``haltgate audit verify`` loads
the audit code only, not kopf, the Kubernetes client or the sidecar (seconds of start-up on a
small machine, paid by every command the demo and the tests run).
"""

from __future__ import annotations

import importlib

import click

COMMANDS: dict[str, str] = {
    "policy": "haltgate.cli.policy:policy",
    "guard": "haltgate.cli.guard:guard",
    "iptables": "haltgate.cli.iptables:iptables",
    "node": "haltgate.cli.node:node",
    "audit": "haltgate.cli.audit:audit",
    "operator": "haltgate.cli.operator:operator",
    "sidecar": "haltgate.cli.sidecar:sidecar",
    "ca": "haltgate.cli.ca:ca",
    "pool": "haltgate.cli.pool:pool",
    "demo": "haltgate.cli.demo:demo",
}
"""Subcommand name -> ``module:attribute`` of its click command (one module each)."""


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="haltgate")
def main() -> None:
    """haltgate: governance for AI agents in Kubernetes, enforced on the network."""
