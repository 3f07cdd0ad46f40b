"""Fixtures of the operator tests: CRDs installed, and ``haltgate operator`` as a real process
next to the test bed's kube-apiserver, which calls its webhooks over HTTPS on 127.0.0.1."""

from __future__ import annotations

import functools
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from haltgate.operator import injection
from haltgate.testbed import binaries
from haltgate.testbed.controlplane import ControlPlane
from haltgate.testbed.process import ManagedProcess, free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
OPERATOR_NAMESPACE = "haltgate-system"
IMAGE = "registry.example/haltgate:test"


class OperatorUnderTest:
    """``haltgate operator`` as a child process; tests may stop and restart it."""

    def __init__(
        self, kube: ControlPlane, workdir: Path, admin_port: int, kubeconfig: Path | None = None
    ) -> None:
        self.kube = kube
        self.kubeconfig = kubeconfig or kube.kubeconfig
        self.workdir = workdir
        self.webhook_port = free_port()
        self.health_port = free_port()
        self.metrics_port = free_port()
        self.admin_port = admin_port
        config = workdir / "injection.yaml"
        config.write_text(
            yaml.safe_dump(
                {"image": IMAGE, "opaImage": "registry.example/opa:t", "adminPort": admin_port}
            )
        )
        self.argv = [
            str(Path(sys.executable).parent / "haltgate"),
            "operator",
            "--namespace",
            OPERATOR_NAMESPACE,
            "--webhook-host",
            "127.0.0.1",
            "--webhook-port",
            str(self.webhook_port),
            "--webhook-url",
            f"https://127.0.0.1:{self.webhook_port}",
            "--work-dir",
            str(workdir / "work"),
            "--injection-config",
            str(config),
            "--health-port",
            str(self.health_port),
            "--metrics-port",
            str(self.metrics_port),
            "--halt-resync",
            "1",
            "--status-resync",
            "2",
        ]
        self.log = workdir / "operator.log"
        self.proc: ManagedProcess | None = None

    def start(self) -> None:
        env = {
            k: v
            for k, v in os.environ.items()
            if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
        }
        env["KUBECONFIG"] = str(self.kubeconfig)
        self.proc = ManagedProcess(
            "haltgate-operator", self.argv, self.log, env=env, cwd=REPO
        ).start()
        wait_until(
            self._healthy, timeout=60, what="haltgate operator", log=self.log, alive=self.proc.alive
        )

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.health_port}/healthz", timeout=1
            ) as r:
                if r.status != 200:
                    return False
        except OSError:
            return False
        # The webhook server is up once it completes a TLS handshake.
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        # A GET: the server answers 405 without running a handler.
        req = urllib.request.Request(f"https://127.0.0.1:{self.webhook_port}/inject")
        try:
            urllib.request.urlopen(req, context=ctx, timeout=1)
        except urllib.error.HTTPError:
            return True  # it answered: it is serving
        except OSError:
            return False
        return True

    def metric(self, name: str, **labels: str) -> float:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2
        ) as r:
            text = r.read().decode()
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") or (not labels and line.startswith(name + " ")):
                if all(f'{k}="{v}"' in line for k, v in labels.items()) or not want:
                    total += float(line.rsplit(" ", 1)[1])
        return total


def kubectl_json(kube: ControlPlane, *args: str) -> Any:
    out = kube.kubectl(*args, "-o", "json", check=True)
    return json.loads(out.stdout)


def apply(kube: ControlPlane, doc: dict[str, Any] | str) -> subprocess.CompletedProcess[str]:
    text = doc if isinstance(doc, str) else yaml.safe_dump(doc)
    return kube.kubectl("apply", "-f", "-", input=text)


def create(kube: ControlPlane, doc: dict[str, Any] | str) -> subprocess.CompletedProcess[str]:
    text = doc if isinstance(doc, str) else yaml.safe_dump(doc)
    return kube.kubectl("create", "-f", "-", "-o", "json", input=text)


def injected_pod(
    namespace: str, name: str, *, app: str = "agent", image: str = "x"
) -> dict[str, Any]:
    """A pod labelled ``app`` that opted in to injection, one container ``agent``."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app": app},
            "annotations": {injection.ANNOTATION_INJECT: "true"},
        },
        "spec": {"containers": [{"name": "agent", "image": image}]},
    }


def injected_deployment(
    namespace: str, name: str, *, replicas: int = 1, app: str = "agent", image: str = "x"
) -> dict[str, Any]:
    """A Deployment whose pod template (labelled ``app``) opted in to injection."""
    template = injected_pod(namespace, name, app=app, image=image)
    del template["metadata"]["name"], template["metadata"]["namespace"]
    del template["apiVersion"], template["kind"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": app}},
            "template": template,
        },
    }


def budget_pool(namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A BudgetPool document."""
    return {
        "apiVersion": "haltgate.dev/v1alpha1",
        "kind": "BudgetPool",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def eventually(
    check: Any, *, timeout: float = 20, interval: float = 0.2, what: str = "condition"
) -> Any:
    """Poll ``check`` until it returns a truthy value (bounded in time)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not true after {timeout}s (last: {last!r})")


def install_crds(kube: ControlPlane) -> None:
    """Apply crds/ and wait (bounded) until both are Established and served."""
    res = kube.kubectl("apply", "-f", str(REPO / "crds"))
    assert res.returncode == 0, res.stderr

    def established() -> bool:
        for crd in ("governancepolicies.haltgate.dev", "budgetpools.haltgate.dev"):
            out = kube.kubectl(
                "get",
                "crd",
                crd,
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Established')].status}",
            )
            if out.stdout.strip() != "True":
                return False
        return kube.kubectl("get", "govpol", "-A").returncode == 0

    eventually(established, timeout=60, interval=0.5, what="CRDs established")


RBAC_RELEASE = "hgtest"
"""Release name the chart's RBAC is rendered under (its own ClusterRole names, apart from
the chart suite's `helm install`)."""
_PLACEHOLDER_NS = "agent-namespace-placeholder"
_RBAC_KINDS = (
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
)


@functools.cache
def _rendered_rbac() -> str:
    home = Path(tempfile.mkdtemp(prefix="haltgate-helm-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_")}
    env.update(
        HELM_CACHE_HOME=str(home / "cache"),
        HELM_CONFIG_HOME=str(home / "config"),
        HELM_DATA_HOME=str(home / "data"),
    )
    return subprocess.run(
        [
            str(binaries.require("helm")),
            "template",
            RBAC_RELEASE,
            str(REPO / "charts" / "haltgate"),
            "--namespace",
            OPERATOR_NAMESPACE,
            "--kube-version",
            "1.34.0",
            "--set",
            "operator.serviceAccount.name=haltgate-operator",
            "--set",
            f"operator.agentNamespaces={{{_PLACEHOLDER_NS}}}",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env=env,
    ).stdout


def chart_rbac() -> list[dict[str, Any]]:
    """The chart's RBAC documents (and its admission guard), rendered with the test bed's
    helm for the operator tests' ServiceAccount ``haltgate-operator``."""
    return [d for d in yaml.safe_load_all(_rendered_rbac()) if d and d["kind"] in _RBAC_KINDS]


def opt_in_namespace(kube: ControlPlane, namespace: str) -> None:
    """What a namespace added after install does to opt in (docs/operator.md): the
    operator's RoleBinding to the agent-namespace ClusterRole, in that namespace."""
    binding = next(
        d
        for d in chart_rbac()
        if d["kind"] == "RoleBinding" and d["metadata"]["namespace"] == _PLACEHOLDER_NS
    )
    binding["metadata"]["namespace"] = namespace
    res = kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(binding))
    assert res.returncode == 0, res.stderr


def operator_kubeconfig(kube: ControlPlane, path: Path) -> Path:
    """A kubeconfig for the operator's ServiceAccount, with exactly the chart's RBAC (the
    least-privilege rules of docs/operator.md): agent namespaces opt in one by one."""
    docs = [d for d in chart_rbac() if d["metadata"].get("namespace") != _PLACEHOLDER_NS]
    res = kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    assert res.returncode == 0, res.stderr
    return service_account_kubeconfig(
        kube, path, OPERATOR_NAMESPACE, "haltgate-operator", duration="24h"
    )


def service_account_kubeconfig(
    kube: ControlPlane, path: Path, namespace: str, account: str, *, duration: str = "1h"
) -> Path:
    """A kubeconfig at ``path`` that speaks to ``kube`` as ServiceAccount ``account`` of
    ``namespace`` (a fresh token): what that account's RBAC allows, nothing more."""
    token = eventually(
        lambda: kube.kubectl(
            "-n", namespace, "create", "token", account, f"--duration={duration}"
        ).stdout.strip(),
        what=f"ServiceAccount {account} token",
    )
    cluster = yaml.safe_load(kube.kubeconfig.read_text())["clusters"][0]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [{"name": account, "user": {"token": token}}],
                "contexts": [
                    {"name": account, "context": {"cluster": cluster["name"], "user": account}}
                ],
                "current-context": account,
            }
        )
    )
    return path


@pytest.fixture
def kube_namespace(kube: ControlPlane) -> Iterator[str]:
    """A fresh namespace for one test that opted in to haltgate (the operator's
    RoleBinding); deleted (without waiting) afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    kube.kubectl("create", "namespace", name, check=True)
    opt_in_namespace(kube, name)
    try:
        yield name
    finally:
        kube.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture(scope="session")
def haltgate_crds(kube: ControlPlane) -> ControlPlane:
    install_crds(kube)
    kube.kubectl("create", "namespace", OPERATOR_NAMESPACE)
    return kube


@pytest.fixture(scope="session")
def admin_port() -> int:
    """Port of the stand-in sidecar admin APIs (pods' IP is set to 127.0.0.1 by tests)."""
    return free_port()


@pytest.fixture(scope="session")
def haltgate_operator(
    haltgate_crds: ControlPlane, admin_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorUnderTest]:
    workdir = tmp_path_factory.mktemp("operator")
    op = OperatorUnderTest(
        haltgate_crds,
        workdir,
        admin_port,
        operator_kubeconfig(haltgate_crds, workdir / "kubeconfig"),
    )
    op.start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture
def operator_running(haltgate_operator: OperatorUnderTest) -> OperatorUnderTest:
    """The operator, (re)started if an earlier test stopped it."""
    if haltgate_operator.proc is None:
        haltgate_operator.start()
    return haltgate_operator
