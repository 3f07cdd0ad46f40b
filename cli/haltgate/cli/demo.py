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
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import click
import yaml

NAMESPACE = "agents"
OPERATOR_NAMESPACE = "haltgate-system"
POLICY_NAME = "researcher"
POD_NAME = "researcher-7d4b9c6f5-x2kqp"
POD_IP = "10.77.0.2"
"""The pod namespace's address (testbed/haltgate/testbed/netns.py's topology)."""
CALL_LIMIT = 8
"""The calls budget of the demo policy: the agent is halted (EXHAUSTION) after this many."""
MAX_AGENT_STEPS = 30
"""Bound of the agent loop, should the halt never come (then the demo fails)."""
SIDECAR_UID = 17337
AGENT_UID = 1000
OPA_PORT = 8181
STANDIN_PORTS = {"llm": 8080, "mcp": 8081}
"""Ports of the stand-ins inside their network namespace (netns mode)."""
AWS_KEY_PROMPT = (
    "deploy with key AKIAIOSFODNN7EXAMPLE and secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
)

REGO = """package haltgate

import rego.v1

default decision := {"allow": true}

# Large models need an approval this agent does not have.
decision := {"allow": false, "reason": "gpt-5 models need approval", "failure_type": "SAFETY"} if {
    input.request.kind == "llm"
    startswith(input.request.model, "gpt-5")
}
"""


class DemoError(Exception):
    """A step of the demo did not do what it should: the demo exits 1 with this message."""


# ----------------------------------------------------------------------------- output


@dataclass
class Console:
    """Progress output: numbered steps, indented details, a timer."""

    total: int
    started: float = field(default_factory=time.monotonic)
    number: int = 0

    def step(self, title: str) -> None:
        self.number += 1
        click.secho(f"\n[{self.number}/{self.total}] {title}", bold=True)

    def info(self, text: str) -> None:
        for line in text.rstrip("\n").splitlines():
            click.echo(f"    {line}")

    def ok(self, text: str) -> None:
        click.secho(f"    ✔ {text}", fg="green")

    def refused(self, text: str) -> None:
        click.secho(f"    ✘ {text}", fg="red")

    def elapsed(self) -> float:
        return time.monotonic() - self.started


# ----------------------------------------------------------------------------- helpers


def _repo_root() -> Path:
    """The source checkout (crds/, docs/examples/, hack/build-binaries) of an editable install."""
    here = Path(__file__).resolve()
    for parent in [*here.parents, Path.cwd()]:
        if (parent / "hack" / "build-binaries").is_file() and (parent / "crds").is_dir():
            return parent
    raise DemoError(
        "haltgate demo runs from a source checkout (it applies crds/ and "
        "docs/examples/): clone the repository and run `make demo`"
    )


def _haltgate_exe() -> str:
    exe = Path(sys.executable).parent / "haltgate"
    return str(exe) if exe.exists() else "haltgate"


def _clean_env() -> dict[str, str]:
    # A proxy of the machine must not catch the demo's loopback traffic.
    return {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }


def _run(
    argv: list[str], *, timeout: float = 60, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=env or _clean_env(), check=False
    )
    if check and res.returncode != 0:
        raise DemoError(
            f"{' '.join(argv[:4])} ... exited {res.returncode}:\n"
            f"{(res.stderr or res.stdout).strip()[-2000:]}"
        )
    return res


def _http(
    method: str,
    url: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 15,
) -> tuple[int, dict[str, str], Any]:
    """One HTTP call without any proxy; returns status, headers, decoded JSON (or text)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"content-type": "application/json", **(headers or {})},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as r:
            status, hdrs, raw = r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        status, hdrs, raw = e.code, dict(e.headers), e.read()
    try:
        return status, {k.lower(): v for k, v in hdrs.items()}, json.loads(raw)
    except ValueError:
        return status, {k.lower(): v for k, v in hdrs.items()}, raw.decode(errors="replace")


def _wait(
    check: Callable[[], Any],
    *,
    timeout: float,
    what: str,
    alive: Callable[[], bool] | None = None,
    log: Path | None = None,
) -> Any:
    """Poll ``check`` (bounded in time) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            result = check()
            if result:
                return result
        if alive is not None and not alive():
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise DemoError(f"{what}: the process exited\n{tail}")
        time.sleep(0.2)
    raise DemoError(f"{what}: not ready after {timeout:.0f}s")


# ----------------------------------------------------------------------------- the demo


@dataclass
class Demo:
    console: Console
    repo: Path
    workdir: Path
    stack: contextlib.ExitStack
    bin_dir: Path = field(init=False)
    haltgate: str = field(default_factory=_haltgate_exe)
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
            env=env or _clean_env(),
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

    # -- steps -------------------------------------------------------------------------

    def postgres(self) -> None:
        from haltgate.testbed.postgres import remove, start_postgres

        self.console.step("Embedded PostgreSQL for the audit trail")
        server = start_postgres()
        self.stack.callback(remove, server)
        admin = server.dsn()
        _run(
            [
                sys.executable,
                "-c",
                "import psycopg, sys; "
                "psycopg.connect(sys.argv[1], autocommit=True).execute('CREATE DATABASE audit')",
                admin,
            ]
        )
        self.audit_dsn = server.dsn("audit")
        _run([self.haltgate, "audit", "migrate", "--dsn", self.audit_dsn])
        self.console.ok(
            f"PostgreSQL on 127.0.0.1:{server.port}, audit schema migrated "
            "(`haltgate audit migrate`)"
        )

    def opa(self) -> None:
        self.console.step("OPA (the Go binary) for the policy's Rego")
        if self.mode == "netns":
            # Next to the sidecar in the pod namespace, like the injected container.
            from haltgate.testbed import netns as harness

            port = OPA_PORT
            proc = self.spawn(
                "opa",
                self.topo.pod.exec_argv(
                    [
                        str(self.bin_dir / "opa"),
                        "run",
                        "--server",
                        f"--addr=127.0.0.1:{port}",
                        "--disable-telemetry",
                    ]
                ),
            )
            harness.wait_port(self.topo.pod, "127.0.0.1", port, timeout=30, proc=proc.popen)
            self.urls["opa"] = f"http://127.0.0.1:{port}"
        else:
            port = self.free_port()
            proc = self.spawn(
                "opa",
                [
                    str(self.bin_dir / "opa"),
                    "run",
                    "--server",
                    f"--addr=127.0.0.1:{port}",
                    "--disable-telemetry",
                ],
            )
            self.urls["opa"] = f"http://127.0.0.1:{port}"
            _wait(
                lambda: _http("GET", self.urls["opa"] + "/health")[0] == 200,
                timeout=30,
                what="OPA",
                alive=proc.alive,
            )
        self.console.ok(f"OPA on {self.urls['opa']} (starts empty; the sidecar uploads the Rego)")

    def standins(self) -> None:
        self.console.step("Stand-in LLM (OpenAI-compatible) and MCP tool server")
        if self.mode == "netns":
            self._standins_in_netns()
            return
        for name in ("llm", "mcp"):
            port = self.free_port()
            module = f"haltgate.testbed.standins.{name}"
            proc = self.spawn(
                f"standin-{name}",
                [sys.executable, "-m", module, "--port", str(port), "--no-record"],
            )
            self.urls[name] = f"http://127.0.0.1:{port}"
            _wait(
                functools.partial(_probe, port),
                timeout=30,
                what=f"{name} stand-in",
                alive=proc.alive,
            )
        self.console.ok(f"LLM on {self.urls['llm']}, MCP on {self.urls['mcp']}/mcp")

    def _standins_in_netns(self) -> None:
        from haltgate.testbed import netns as harness

        topo = harness.Topology.create(harness.free_tag())
        self.stack.callback(topo.delete)
        self.topo = topo
        self.console.info(
            f"network namespaces: pod {topo.pod.name} ({POD_IP}) <-veth-> "
            f"upstream {topo.upstream.name} ({harness.UPSTREAM_V4})"
        )
        for name, port in STANDIN_PORTS.items():
            proc = self.spawn(
                f"standin-{name}",
                topo.upstream.exec_argv(
                    [
                        sys.executable,
                        "-m",
                        f"haltgate.testbed.standins.{name}",
                        "--host",
                        harness.UPSTREAM_V4,
                        "--port",
                        str(port),
                        "--no-record",
                    ]
                ),
            )
            harness.wait_port(topo.upstream, harness.UPSTREAM_V4, port, timeout=30, proc=proc.popen)
            self.urls[name] = f"http://{harness.UPSTREAM_V4}:{port}"
        self.console.ok(
            f"LLM on {self.urls['llm']}, MCP on {self.urls['mcp']}/mcp (upstream namespace)"
        )

    def policy(self) -> dict[str, Any]:
        return {
            "apiVersion": "haltgate.dev/v1alpha1",
            "kind": "GovernancePolicy",
            "metadata": {"name": POLICY_NAME, "namespace": NAMESPACE},
            "spec": {
                "selector": {"matchLabels": {"app": POLICY_NAME}},
                "upstreams": [
                    {"name": "llm", "url": self.urls["llm"], "kind": "llm", "provider": "openai"},
                    {"name": "tools", "url": self.urls["mcp"] + "/mcp", "kind": "mcp"},
                ],
                "budgets": {
                    "calls": {"limit": CALL_LIMIT},
                    "costUSD": {"limit": 1.0},
                    "warnAt": 0.75,
                },
                "tools": {
                    "default": "deny",
                    "rules": [
                        {"name": "llm", "action": "allow", "kind": "llm"},
                        {
                            "name": "research-tools",
                            "action": "allow",
                            "kind": "mcp",
                            "mcpTools": ["search", "echo"],
                        },
                        {
                            "name": "no-deletes",
                            "action": "deny",
                            "kind": "mcp",
                            "mcpTools": ["delete_file"],
                        },
                    ],
                },
                "guardrails": {"secrets": {"direction": "request", "action": "block"}},
                "opa": {"rego": REGO},
            },
        }

    def control_plane(self) -> None:
        from haltgate.testbed.controlplane import WORKLOAD_CONTROLLERS, ControlPlane, install_crds

        self.console.step("Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager")
        plane = ControlPlane(self.workdir / "cluster", controllers=WORKLOAD_CONTROLLERS)
        self.stack.callback(plane.stop)
        plane.start()
        self.kube = plane
        crds = install_crds(plane, self.repo / "crds")
        for ns in (OPERATOR_NAMESPACE, NAMESPACE):
            self.kubectl("create", "namespace", ns)
        self.console.ok(f"apiserver {plane.server}; CRDs: {', '.join(crds)}")
        self.console.info(f"KUBECONFIG={plane.kubeconfig}")

    def operator(self) -> None:
        self.console.step("haltgate operator (admission webhooks over HTTPS)")
        webhook, health, metrics = self.free_port(), self.free_port(), self.free_port()
        config = self.workdir / "injection.yaml"
        config.write_text(yaml.safe_dump({"image": "ghcr.io/haltgate/haltgate:0.1.0"}))
        env = {**_clean_env(), "KUBECONFIG": str(self.kube.kubeconfig)}
        proc = self.spawn(
            "operator",
            [
                self.haltgate,
                "operator",
                "--namespace",
                OPERATOR_NAMESPACE,
                "--webhook-host",
                "127.0.0.1",
                "--webhook-port",
                str(webhook),
                "--webhook-url",
                f"https://127.0.0.1:{webhook}",
                "--work-dir",
                str(self.workdir / "operator"),
                "--injection-config",
                str(config),
                "--health-port",
                str(health),
                "--metrics-port",
                str(metrics),
                "--halt-resync",
                "1",
                "--status-resync",
                "2",
            ],
            env=env,
        )
        _wait(
            lambda: _http("GET", f"http://127.0.0.1:{health}/healthz")[0] == 200,
            timeout=60,
            what="operator",
            alive=proc.alive,
            log=self.workdir / "logs" / "operator.log",
        )
        _wait(
            lambda: (
                self.kube.kubectl(
                    "get", "mutatingwebhookconfiguration", "haltgate-injector"
                ).returncode
                == 0
            ),
            timeout=30,
            what="webhook configurations",
        )
        self.console.ok(
            "operator healthy; it registered MutatingWebhookConfiguration "
            "haltgate-injector and ValidatingWebhookConfiguration haltgate-validator"
        )

    def apply_workload(self) -> None:
        self.console.step("kubectl apply: a GovernancePolicy and an annotated agent Deployment")
        policy_file = self.workdir / "policy.yaml"
        policy_file.write_text(yaml.safe_dump(self.policy(), sort_keys=False))
        self.console.info(f"$ kubectl apply -f {policy_file.name}")
        self.console.info(self.kubectl("apply", "-f", str(policy_file)))
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": POLICY_NAME, "namespace": NAMESPACE},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": POLICY_NAME}},
                "template": {
                    "metadata": {
                        "labels": {"app": POLICY_NAME},
                        "annotations": {"haltgate.dev/inject": "true"},
                    },
                    "spec": {"containers": [{"name": "agent", "image": "example/researcher:1"}]},
                },
            },
        }
        self.console.info(
            "$ kubectl apply -f agent-deployment.yaml   "
            '# pod template annotated haltgate.dev/inject: "true"'
        )
        self.console.info(self.kubectl("apply", "-f", "-", input=yaml.safe_dump(deployment)))

        def injected() -> dict[str, Any] | None:
            pods = json.loads(
                self.kubectl(
                    "-n", NAMESPACE, "get", "pods", "-l", f"app={POLICY_NAME}", "-o", "json"
                )
            )["items"]
            return next(
                (
                    p
                    for p in pods
                    if "haltgate.dev/injected" in p["metadata"].get("annotations", {})
                ),
                None,
            )

        pod = _wait(injected, timeout=60, what="the Deployment's pod, injected")
        spec = pod["spec"]
        self.console.ok(
            f"kube-controller-manager created pod {pod['metadata']['name']}; "
            "the webhook injected it:"
        )
        for c in spec.get("initContainers", []):
            kind = "native sidecar" if c.get("restartPolicy") == "Always" else "init step"
            self.console.info(
                f"  initContainer {c['name']:<16} {kind:<15} "
                f"{' '.join([*c.get('command', []), *c.get('args', [])][:3])}"
            )
        for c in spec["containers"]:
            env = ", ".join(e["name"] for e in c.get("env", []))
            self.console.info(f"  container     {c['name']:<16} agent           env: {env}")
        record = json.loads(pod["metadata"]["annotations"]["haltgate.dev/injected"])
        self.console.info(
            f"  annotation haltgate.dev/injected: policy={record.get('policy')} "
            f"mode={record.get('mode')}"
        )

        def policy_status() -> dict[str, Any] | None:
            st = (
                json.loads(
                    self.kubectl("-n", NAMESPACE, "get", "govpol", POLICY_NAME, "-o", "json")
                ).get("status")
                or {}
            )
            return st if st.get("observedGeneration") else None

        status = _wait(policy_status, timeout=30, what="policy status")
        conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
        self.console.ok(
            f"policy status: {conditions}; ConfigMap haltgate-policy-{POLICY_NAME} "
            "rendered for the sidecars"
        )

    def sidecar(self) -> None:
        self.console.step("The sidecar, with the same policy, in front of the agent")
        if self.mode == "netns":
            self._sidecar_in_netns()
            return
        for name in ("explicit", "admin", "metrics"):
            self.ports[name] = self.free_port()
        policy_file = self.workdir / "policy.yaml"
        token = self.workdir / "admin-token"
        token.write_text("demo-admin-token-0123456789abcdef")
        self.state_dir = self.workdir / "sidecar-state"
        env = {**_clean_env(), "HALTGATE_POD_NAME": POD_NAME, "HALTGATE_POD_NAMESPACE": NAMESPACE}
        proc = self.spawn(
            "sidecar",
            [
                self.haltgate,
                "sidecar",
                "--policy",
                str(policy_file),
                "--mode",
                "explicit",
                "--state-dir",
                str(self.state_dir),
                "--admin-token-file",
                str(token),
                "--listen",
                f"127.0.0.1:{self.ports['explicit']}",
                "--admin-listen",
                f"127.0.0.1:{self.ports['admin']}",
                "--metrics-listen",
                f"127.0.0.1:{self.ports['metrics']}",
                "--opa-url",
                self.urls["opa"],
                "--log-level",
                "warning",
            ],
            env=env,
        )
        self.sidecar_proc = proc
        _wait(
            lambda: _http("GET", f"http://127.0.0.1:{self.ports['admin']}/readyz")[0] == 200,
            timeout=60,
            what="sidecar",
            alive=proc.alive,
            log=self.workdir / "logs" / "sidecar.log",
        )
        self.console.ok(
            f"sidecar ready; explicit mode: the agent calls "
            f"http://127.0.0.1:{self.ports['explicit']}/llm/v1 and /tools "
            "(base-URL aliases)"
        )
        self.console.info(
            "(a pod uses transparent mode: iptables sends every connection to "
            "the sidecar; this demo runs the agent on the host, so it uses the "
            "aliases)"
        )

    def _sidecar_in_netns(self) -> None:
        """The pod's view: the sidecar as UID 17337 in transparent mode, then the init step's
        `haltgate iptables apply` in the pod namespace."""
        from haltgate.sidecar import tlsmint
        from haltgate.testbed import netns as harness

        self.ports.update(explicit=17000, transparent=17001, admin=17020, metrics=17090)
        own = functools.partial(_own, SIDECAR_UID)
        ca_dir = self.workdir / "haltgate-ca"
        ca_dir.mkdir()
        tlsmint.CertificateAuthority.create().write(ca_dir)
        own(ca_dir, 0o700)
        own(ca_dir / tlsmint.CA_KEY_FILE, 0o600)
        token = self.workdir / "admin-token"
        token.write_text("demo-admin-token-0123456789abcdef")
        own(token, 0o600)
        self.state_dir = self.workdir / "sidecar-state"
        self.state_dir.mkdir()
        own(self.state_dir, 0o700)
        (self.workdir / "policy.yaml").chmod(0o644)
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.workdir),
            "HALTGATE_POD_NAME": POD_NAME,
            "HALTGATE_POD_NAMESPACE": NAMESPACE,
        }
        proc = self.spawn(
            "sidecar",
            self.topo.pod.exec_argv(
                [
                    "setpriv",
                    f"--reuid={SIDECAR_UID}",
                    f"--regid={SIDECAR_UID}",
                    "--clear-groups",
                    self.haltgate,
                    "sidecar",
                    "--policy",
                    str(self.workdir / "policy.yaml"),
                    "--mode",
                    "transparent",
                    "--ca-dir",
                    str(ca_dir),
                    # On the pod IP, as the injected sidecar: Prometheus scrapes it from outside.
                    "--metrics-listen",
                    f"{POD_IP}:{self.ports['metrics']}",
                    "--state-dir",
                    str(self.state_dir),
                    "--admin-token-file",
                    str(token),
                    "--opa-url",
                    self.urls["opa"],
                    "--log-level",
                    "warning",
                ]
            ),
            env=env,
        )
        self.sidecar_proc = proc
        for port in (self.ports["transparent"], self.ports["explicit"], self.ports["admin"]):
            harness.wait_port(self.topo.pod, "127.0.0.1", port, timeout=60, proc=proc.popen)
        self.console.ok(
            f"sidecar ready as UID {SIDECAR_UID} in {self.topo.pod.name} "
            "(transparent mode, like the injected haltgate-proxy)"
        )
        argv = [
            self.haltgate,
            "iptables",
            "apply",
            "--proxy-uid",
            str(SIDECAR_UID),
            "--proxy-port",
            str(self.ports["transparent"]),
            "--no-dns",
        ]
        for port in (self.ports["admin"], self.ports["metrics"], OPA_PORT, 8282):
            argv += ["--protect-port", str(port)]
        self.console.info(f"$ ip netns exec {self.topo.pod.name} haltgate {' '.join(argv[1:])}")
        self.topo.pod.run(argv)
        self.console.ok(
            "iptables rules in place (what the haltgate-init container does): "
            f"every TCP connection of every UID but {SIDECAR_UID} goes to the "
            "sidecar"
        )

    def agent(self) -> None:
        self.console.step("The agent: a loop of LLM and MCP tool calls through the sidecar")
        if self.mode == "netns":
            # The agent runs in the pod namespace as UID 1000 and calls the upstreams by
            # address; the iptables rules send its connections to the sidecar.
            self.console.info(
                f"agent: UID {AGENT_UID} in netns {self.topo.pod.name}, calls "
                f"{self.urls['llm']} and {self.urls['mcp']}/mcp directly"
            )
            argv = self.topo.pod.exec_argv(
                [
                    "setpriv",
                    f"--reuid={AGENT_UID}",
                    f"--regid={AGENT_UID}",
                    "--clear-groups",
                    sys.executable,
                    "-c",
                    "import sys; from haltgate.cli.demo import agent_main; "
                    "sys.exit(agent_main(*sys.argv[1:]))",
                    self.urls["llm"],
                    self.urls["mcp"] + "/mcp",
                    str(self.pace()),
                ]
            )
            res = subprocess.run(argv, timeout=120, check=False, env=_clean_env(), cwd=self.workdir)
            if res.returncode != 0:
                raise DemoError(f"the agent failed (exit {res.returncode})")
            metrics = self.topo.upstream.run(
                [
                    sys.executable,
                    "-c",
                    "import sys, urllib.request; "
                    "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())",  # noqa: E501
                    f"http://{POD_IP}:{self.ports['metrics']}/metrics",
                ],
                check=False,
            )
            self.metrics_text = metrics.stdout
        else:
            base = f"http://127.0.0.1:{self.ports['explicit']}"
            run_agent(self.console, base + "/llm", base + "/tools", self.pace())
            _, _, text = _http("GET", f"http://127.0.0.1:{self.ports['metrics']}/metrics")
            self.metrics_text = text if isinstance(text, str) else ""

    def pace(self) -> float:
        """Seconds between the agent's calls: spread over a few scrapes when there is a
        dashboard picture to draw, else none."""
        from haltgate.cli import demo_dashboard

        return demo_dashboard.AGENT_PACE_SECONDS if self.drawing is not None else 0.0

    def prometheus(self) -> None:
        from haltgate.cli import demo_dashboard

        self.console.step("Prometheus scraping the sidecar (for the dashboard at the end)")
        self.drawing = demo_dashboard.start(self, self.dashboard_png)

    def dashboard(self) -> None:
        from haltgate.cli import demo_dashboard

        self.console.step("Prometheus has every call: the fleet dashboard is drawn from it")
        demo_dashboard.draw(self, self.drawing)

    def picture(self) -> None:
        from haltgate.cli import demo_dashboard

        self.console.step("The fleet dashboard of this run, as a picture")
        demo_dashboard.finish(self, self.drawing)

    def audit(self) -> None:
        self.console.step("The audit trail: ship the spool, read the run back, verify")
        self.sidecar_proc.stop()  # flushes the spool
        env = {**_clean_env(), "HALTGATE_AUDIT_DSN": self.audit_dsn}
        spool = self.state_dir / "audit"
        shipped = _run(
            [self.haltgate, "audit", "ship", "--once", "--spool", str(spool)], env=env, timeout=120
        )
        self.console.ok(f"$ haltgate audit ship --once   {shipped.stdout.strip()[-120:]}")
        lines = _run(
            [self.haltgate, "audit", "query", "--all", "-o", "jsonl"], env=env
        ).stdout.splitlines()
        records = [json.loads(line) for line in lines if line.strip()]
        run_ids = sorted({r["run_id"] for r in records if r.get("run_id")})
        if not run_ids:
            raise DemoError("no audit record reached the database")
        self.console.info(f"$ haltgate audit history {run_ids[0]}")
        self.console.info(_run([self.haltgate, "audit", "history", run_ids[0]], env=env).stdout)
        self.console.info("$ haltgate audit cost")
        self.console.info(_run([self.haltgate, "audit", "cost"], env=env).stdout)
        verify = _run([self.haltgate, "audit", "verify"], env=env, check=False)
        self.console.info("$ haltgate audit verify")
        self.console.info((verify.stdout + verify.stderr).strip())
        if verify.returncode != 0:
            raise DemoError("audit verify failed")
        self.console.ok("audit verify: OK (every hash chain intact)")

    def metrics(self) -> None:
        self.console.step("A few of the sidecar's metrics")
        wanted = [
            line
            for line in self.metrics_text.splitlines()
            if line.startswith("haltgate_")
            and line.split(" ")[-1] not in ("0", "0.0")
            and "_bucket" not in line
            and "_created" not in line
        ]
        for line in wanted[:14]:
            self.console.info(line)
        if not wanted:
            raise DemoError("the sidecar exposed no haltgate_ metrics")


# ----------------------------------------------------------------------------- the agent

SCRIPT: list[tuple[str, str, Any]] = [
    ("llm", "plan: research the latest on agent governance", None),
    ("tool", "search", {"query": "agent governance kubernetes"}),
    ("llm", "summarise the search results", None),
    ("tool", "delete_file", {"path": "/data/notes.md"}),
    ("llm", AWS_KEY_PROMPT, None),
    ("llm-big", "think harder about it", None),
]
"""The agent's first steps (then it alternates LLM and search calls until halted)."""


def run_agent(console: Console, llm_base: str, mcp_url: str, pace: float = 0.0) -> None:
    """The sample agent: scripted calls, then a loop, until the sidecar halts it.

    ``llm_base`` is the OpenAI-compatible base URL (``.../v1/chat/completions`` is appended)
    and ``mcp_url`` the MCP endpoint: the upstreams themselves (transparent mode) or the
    sidecar's aliases (explicit mode). ``pace``: seconds between calls (so that Prometheus,
    scraping every second, sees the run unfold). Raises DemoError if the halt never comes."""
    seen: dict[str, int] = {}
    halted = False
    for step in range(MAX_AGENT_STEPS):
        if step and pace:
            time.sleep(pace)
        if step < len(SCRIPT):
            kind, what, args = SCRIPT[step]
        elif step % 2:
            kind, what, args = "tool", "search", {"query": f"follow-up {step}"}
        else:
            kind, what, args = "llm", f"refine the answer, iteration {step}", None
        outcome, detail, failure = _agent_call(llm_base, mcp_url, kind, what, args, step)
        seen[outcome] = seen.get(outcome, 0) + 1
        label = f"{kind:<8}{what[:44]:<46}"
        if outcome == "allowed":
            console.ok(f"{label} allowed   {detail}")
        else:
            console.refused(f"{label} {failure:<10} {detail}")
        if failure == "EXHAUSTION":
            halted = True
            break
    if not halted:
        raise DemoError(f"the agent was never halted in {MAX_AGENT_STEPS} steps")
    if not seen.get("allowed") or "refused" not in seen:
        raise DemoError(f"expected allowed and refused calls, got {seen}")
    # The halt is sticky: the next call is refused too, with no upstream call.
    outcome, detail, failure = _agent_call(llm_base, mcp_url, "llm", "one more try", None, 99)
    if failure != "EXHAUSTION":
        raise DemoError(f"after the halt a call was {outcome} ({failure})")
    console.ok(f"halted for good: the next call is refused too ({failure})")


def agent_main(llm_base: str, mcp_url: str, pace: str = "0") -> int:
    """Entry point of the agent process in network-namespace mode (exit 0: halted)."""
    try:
        run_agent(Console(total=0), llm_base, mcp_url, float(pace))
    except DemoError as e:
        click.secho(f"    agent: {e}", fg="red", err=True)
        return 1
    return 0


def _agent_call(
    llm_base: str, mcp_url: str, kind: str, what: str, args: Any, step: int
) -> tuple[str, str, str]:
    """One call; returns (allowed|refused, detail, failure type)."""
    if kind == "tool":
        status, _, body = _http(
            "POST",
            mcp_url,
            {
                "jsonrpc": "2.0",
                "id": step + 1,
                "method": "tools/call",
                "params": {"name": what, "arguments": args},
            },
        )
        if isinstance(body, dict) and "error" in body:
            data = body["error"].get("data") or {}
            return (
                "refused",
                f"{data.get('code')}: {data.get('message', '')[:60]}",
                str(data.get("type")),
            )
        return "allowed", f"HTTP {status}", ""
    model = "gpt-5" if kind == "llm-big" else "gpt-4o-mini"
    status, headers, body = _http(
        "POST",
        llm_base + "/v1/chat/completions",
        {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": what}]},
    )
    if status == 200:
        usage = body.get("usage", {}) if isinstance(body, dict) else {}
        warn = headers.get("x-haltgate-budget-warning")
        extra = f", budget warning: {warn}" if warn else ""
        return (
            "allowed",
            (
                f"HTTP 200, {usage.get('prompt_tokens')}+"
                f"{usage.get('completion_tokens')} tokens{extra}"
            ),
            "",
        )
    error = body.get("error", {}) if isinstance(body, dict) else {}
    return (
        "refused",
        f"HTTP {status} {error.get('code')}: {error.get('message', '')[:60]}",
        (str(error.get("type"))),
    )


def _own(uid: int, path: Path, mode: int) -> None:
    os.chown(path, uid, uid)
    path.chmod(mode)


def _probe(port: int) -> bool:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


STEPS = (
    "postgres",
    "standins",
    "opa",
    "control_plane",
    "operator",
    "apply_workload",
    "sidecar",
    "prometheus",
    "agent",
    "dashboard",
    "audit",
    "metrics",
    "picture",
)


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
    repo = _repo_root()
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
            for name in STEPS:
                started = time.monotonic()
                getattr(d, name)()
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
