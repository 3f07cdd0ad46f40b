"""``haltgate demo``: the user's whole journey on one machine, no cluster and no Docker.

Starts an embedded PostgreSQL (audit), OPA, a real Kubernetes control plane (etcd,
kube-apiserver, kube-controller-manager) with the haltgate operator next to it; applies a
GovernancePolicy and an annotated agent Deployment and shows the pod the webhook injected;
then runs a small agent (LLM and MCP tool calls against stand-in servers) through the
sidecar until the budget halts it, and reads the run back from the audit database.

The demo drives the same binaries and commands a user would (``haltgate operator``,
``haltgate sidecar``, ``haltgate audit ...``, ``kubectl``). The test bed (control plane,
PostgreSQL) and the stand-in LLM/MCP servers live in the source checkout (``tests/``), so
the demo runs from a clone: ``make demo``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import click

from haltgate.cli import (
    demo_agent,
    demo_audit,
    demo_cluster,
    demo_dashboard,
    demo_services,
    demo_sidecar,
)
from haltgate.cli.demo_shell import Console, DemoError, repo_root
from haltgate.cli.demo_state import Demo


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


STEPS: tuple[tuple[str, Callable[[Demo], None]], ...] = (
    ("postgres", demo_services.postgres),
    ("standins", demo_services.standins),
    ("opa", demo_services.opa),
    ("control_plane", demo_cluster.control_plane),
    ("operator", demo_cluster.operator),
    ("apply_workload", demo_cluster.apply_workload),
    ("sidecar", demo_sidecar.sidecar),
    ("prometheus", demo_dashboard.prometheus_step),
    ("agent", demo_agent.agent),
    ("dashboard", demo_dashboard.dashboard_step),
    ("audit", demo_audit.audit),
    ("metrics", demo_audit.metrics),
    ("picture", demo_dashboard.picture_step),
)
"""The demo's steps in order, each a function of the shared :class:`Demo` state."""


@contextlib.contextmanager
def _workdir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="haltgate-demo-"))
    path.chmod(0o755)  # the embedded PostgreSQL may run as another user
    try:
        yield path
    finally:
        if keep:
            click.echo(f"\nkept the demo's files and logs in {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


@click.command(name="demo")
@click.option("--keep", is_flag=True, help="Keep the scratch directory (logs) at the end.")
@click.option(
    "--mode",
    "mode",
    type=click.Choice(["auto", "netns", "explicit"]),
    default="auto",
    show_default=True,
    help="netns: agent and sidecar in a network namespace with the iptables rules "
    "(needs root, iproute2, iptables); explicit: base-URL aliases; auto: netns "
    "when possible.",
)
@click.option(
    "--dashboard",
    "dashboard_png",
    type=click.Path(dir_okay=False, path_type=Path),
    default="haltgate-demo-dashboard.png",
    show_default=True,
    help="Where to write the fleet dashboard picture of the run (needs "
    "prometheus and matplotlib; said plainly when they are missing).",
)
def demo(keep: bool, mode: str, dashboard_png: Path) -> None:
    """Run the local end-to-end demo: PostgreSQL, OPA, a Kubernetes control plane with the
    operator, an injected agent Deployment, then an agent governed by the sidecar until its
    budget halts it, and its audit trail. Needs `make binaries`; cleans up after itself.

    Exit codes: 0 done; 1 a step did not do what it should (the message says which)."""
    dashboard_png = dashboard_png.resolve()
    repo = repo_root()
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    os.chdir(repo)
    signal.signal(signal.SIGTERM, _on_signal)
    console = Console(total=len(STEPS))
    click.secho(
        "haltgate demo: the whole journey on this machine (no cluster, no Docker)", bold=True
    )
    try:
        with _workdir(keep) as workdir, contextlib.ExitStack() as stack:
            d = Demo(console, repo, workdir, stack, dashboard_png=dashboard_png)
            d.choose_mode(mode)
            took: list[str] = []
            for name, step in STEPS:
                started = time.monotonic()
                step(d)
                took.append(f"{name} {time.monotonic() - started:.1f}s")
            click.secho(
                f"\nDone in {console.elapsed():.0f}s ({', '.join(took)}). Tearing down.", bold=True
            )
            if d.drawing is not None:
                click.secho(f"The fleet dashboard of this run: {d.drawing.out}", bold=True)
    except DemoError as e:
        click.secho(f"\ndemo failed: {e}", fg="red", err=True)
        raise SystemExit(1) from e
    except KeyboardInterrupt:
        click.secho("\ninterrupted; cleaned up", err=True)
        raise SystemExit(130) from None
    except Exception as e:  # the test bed's errors: say what is missing
        if type(e).__name__ == "TestbedError":
            click.secho(f"\ndemo cannot start: {e}", fg="red", err=True)
            raise SystemExit(1) from e
        raise
