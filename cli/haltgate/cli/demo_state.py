"""What the demo's steps share: the scratch directory, the processes it started, the
addresses and ports they listen on, and the mode (network namespace or explicit)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from haltgate.cli.demo_setting import AGENT_UID, SIDECAR_UID
from haltgate.cli.demo_shell import Console, DemoError, clean_env, haltgate_exe


@dataclass
class Demo:
    console: Console
    repo: Path
    workdir: Path
    stack: contextlib.ExitStack
    bin_dir: Path = field(init=False)
    haltgate: str = field(default_factory=haltgate_exe)
    urls: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    audit_dsn: str = ""
    kube: Any = None
    metrics_text: str = ""
    mode: str = "explicit"
    """netns: agent and sidecar in a network namespace with the iptables rules (transparent
    mode, as in a pod); explicit: everything on the host, the agent uses base-URL aliases."""
    topo: Any = None
    sidecar_proc: Any = None
    state_dir: Path = field(default_factory=Path)
    dashboard_png: Path = Path("haltgate-demo-dashboard.png")
    """Where the last step draws the fleet dashboard (cli/haltgate/cli/demo_dashboard.py)."""
    drawing: Any = None
    """The Prometheus scraping the sidecar and the picture drawn from it, if possible."""

    def __post_init__(self) -> None:
        from haltgate.testbed import binaries

        self.bin_dir = binaries.cache_dir()
        for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl", "opa"):
            binaries.require(name)

    def choose_mode(self, wanted: str) -> None:
        """netns when asked or possible (root, iproute2, iptables, setpriv); else explicit."""
        from haltgate.testbed import netns as harness

        why = harness.skip_reason()
        if why is None:
            for uid in (SIDECAR_UID, AGENT_UID):
                why = why or harness.interpreter_reachable_by(uid)
        if wanted == "netns" and why is not None:
            raise DemoError(f"--mode netns is not possible here: {why}")
        self.mode = "netns" if wanted != "explicit" and why is None else "explicit"
        if self.mode == "netns":
            click.echo(
                "mode: network namespace (the agent and the sidecar in a pod-like "
                "namespace with haltgate's iptables rules: the transparent boundary)"
            )
        elif wanted == "explicit":
            click.echo("mode: explicit (the agent calls the sidecar's base-URL aliases)")
        else:
            click.secho(
                f"mode: explicit. The transparent journey (agent and sidecar in a "
                f"network namespace behind haltgate's iptables rules) cannot run "
                f"here: {why}. It needs root and iptables/iproute2 (`make deps` "
                f"as root installs them); this run shows the same governance with "
                f"the agent calling the sidecar's base-URL aliases.",
                fg="yellow",
            )

    # -- processes ---------------------------------------------------------------------

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Any:
        from haltgate.testbed.process import ManagedProcess

        proc = ManagedProcess(
            name,
            argv,
            self.workdir / "logs" / f"{name}.log",
            env=env or clean_env(),
            cwd=self.repo,
        ).start()
        self.stack.callback(proc.stop)
        return proc

    def free_port(self) -> int:
        from haltgate.testbed.process import free_port

        return free_port()

    def kubectl(self, *args: str, input: str | None = None) -> str:
        res = self.kube.kubectl(*args, input=input)
        if res.returncode != 0:
            raise DemoError(f"kubectl {' '.join(args)}: {res.stderr.strip()}")
        return str(res.stdout)
