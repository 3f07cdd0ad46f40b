"""Entry point of the ``haltgate`` command.

Exit codes: 0 success; 1 the command ran and found a problem (an invalid policy, a broken
audit chain); 2 usage error.
"""

from __future__ import annotations

import click

from haltgate.cli import (
    audit,
    demo,
    guard,
    iptables,
    node,
    operator,
    policy,
    pool,
    sidecar,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="haltgate")
def main() -> None:
    """haltgate: governance for AI agents in Kubernetes, enforced on the network."""


main.add_command(policy.policy)
main.add_command(guard.guard)
main.add_command(iptables.iptables)
main.add_command(node.node)
main.add_command(audit.audit)
main.add_command(operator.operator)
main.add_command(sidecar.sidecar)
main.add_command(pool.pool)
main.add_command(demo.demo)
