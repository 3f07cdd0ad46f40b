"""The chart against the real kube-apiserver of the test bed: server-side dry runs of the
default and full renders, `helm install`, and then the operator, running locally under the
chart's own ServiceAccount and RBAC with the chart's injection ConfigMap, injecting the pods
a Deployment gets from the real kube-controller-manager."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from haltgate.operator import injection
from haltgate.testbed.controlplane import ControlPlane
from haltgate.testbed.process import free_port
from tests.chart.conftest import CHART, FULL_VALUES, KUBE_VERSION, TESTDATA, Helm
from tests.operator.conftest import (
    OperatorUnderTest,
    eventually,
    injected_deployment,
    kubectl_json,
    service_account_kubeconfig,
)

RELEASE_NS = "haltgate-chart"
AGENT_NS = "chart-agents"
CONFIGS = (
    ("mutatingwebhookconfiguration", "haltgate-injector"),
    ("validatingwebhookconfiguration", "haltgate-validator"),
)


def dry_run(kube: ControlPlane, manifest: str) -> None:
    """The server's verdict on ``manifest`` as a fresh install.

    ``kubectl apply`` merges into live objects of the same name, so webhook configurations
    another test's operator wrote (a ``url`` client config) would be merged with the chart's
    (a ``service``) and refused for having both: they are set aside for the dry run and put
    back after it.
    """
    saved = save_configs(kube)
    for kind, name in CONFIGS:
        kube.kubectl("delete", kind, name, "--ignore-not-found")
    try:
        res = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=manifest, timeout=120)
    finally:
        restore_configs(kube, saved)
    assert res.returncode == 0, res.stderr


@pytest.fixture(scope="module")
def chart_cluster(kube_workloads: ControlPlane) -> ControlPlane:
    kube = kube_workloads
    res = kube.kubectl("apply", "-f", str(TESTDATA / "foreign-crds.yaml"))
    assert res.returncode == 0, res.stderr
    for ns in (RELEASE_NS, AGENT_NS):
        kube.kubectl("create", "namespace", ns)
    return kube


def test_crds_install_and_upgrade_in_place(chart_cluster: ControlPlane) -> None:
    """The documented upgrade path: server-side apply of crds/ over what is installed."""
    for _ in range(2):
        res = chart_cluster.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds")
        )
        assert res.returncode == 0, res.stderr
    eventually(
        lambda: chart_cluster.kubectl("get", "clusterkopfpeerings").returncode == 0,
        timeout=30,
        what="kopf peering CRD served",
    )


@pytest.mark.parametrize("values", ["default", "full"])
def test_render_passes_server_side_dry_run(
    chart_cluster: ControlPlane, helm: Helm, values: str
) -> None:
    chart_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    eventually(
        lambda: chart_cluster.kubectl("get", "clusterkopfpeerings").returncode == 0,
        timeout=30,
        what="kopf peering CRD served",
    )
    extra = ["-f", str(FULL_VALUES)] if values == "full" else []
    manifest = helm(
        "template",
        "dry",
        str(CHART),
        "--namespace",
        RELEASE_NS,
        "--kube-version",
        KUBE_VERSION,
        *extra,
    ).stdout
    dry_run(chart_cluster, manifest)


def test_dry_run_catches_a_broken_manifest(chart_cluster: ControlPlane, helm: Helm) -> None:
    """The dry run is not a rubber stamp: the same render with a bad field is refused."""
    manifest = helm(
        "template", "dry", str(CHART), "--namespace", RELEASE_NS, "--kube-version", KUBE_VERSION
    ).stdout
    broken = manifest.replace("minAvailable: 1", "minAvailable: [1]")
    assert broken != manifest
    res = chart_cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=broken)
    assert res.returncode != 0


@pytest.fixture(scope="module")
def installed(chart_cluster: ControlPlane, helm: Helm) -> Iterator[ControlPlane]:
    res = helm(
        "install",
        "haltgate",
        str(CHART),
        "--namespace",
        RELEASE_NS,
        "--set",
        f"operator.agentNamespaces={{{AGENT_NS}}}",
        kubeconfig=chart_cluster.kubeconfig,
    )
    assert "Next step" in res.stdout
    try:
        yield chart_cluster
    finally:
        helm(
            "uninstall",
            "haltgate",
            "--namespace",
            RELEASE_NS,
            check=False,
            kubeconfig=chart_cluster.kubeconfig,
        )


def test_helm_install(installed: ControlPlane, helm: Helm) -> None:
    status = json.loads(
        helm(
            "status",
            "haltgate",
            "--namespace",
            RELEASE_NS,
            "-o",
            "json",
            kubeconfig=installed.kubeconfig,
        ).stdout
    )
    assert status["info"]["status"] == "deployed"
    dep = kubectl_json(installed, "-n", RELEASE_NS, "get", "deploy", "haltgate-operator")
    assert dep["spec"]["replicas"] == 2
    assert installed.kubectl("get", "clusterkopfpeering", "haltgate").returncode == 0
    # `helm upgrade` with the same chart is a no-op that succeeds (CRDs untouched).
    helm(
        "upgrade",
        "haltgate",
        str(CHART),
        "--namespace",
        RELEASE_NS,
        kubeconfig=installed.kubeconfig,
    )


def save_configs(kube: ControlPlane) -> list[subprocess.CompletedProcess[str]]:
    """The webhook configurations as they are now (``kubectl get -o yaml`` each)."""
    return [kube.kubectl("get", kind, name, "-o", "yaml") for kind, name in CONFIGS]


def restore_configs(kube: ControlPlane, saved: list[subprocess.CompletedProcess[str]]) -> None:
    """Put back what :func:`save_configs` read: delete each, recreate those that existed."""
    for (kind, name), before in zip(CONFIGS, saved, strict=True):
        kube.kubectl("delete", kind, name, "--ignore-not-found")
        if before.returncode == 0:
            doc = yaml.safe_load(before.stdout)
            for key in (
                "resourceVersion",
                "uid",
                "creationTimestamp",
                "generation",
                "managedFields",
            ):
                doc["metadata"].pop(key, None)
            kube.kubectl("create", "-f", "-", input=yaml.safe_dump(doc))


def sa_kubeconfig(kube: ControlPlane, path: Path) -> Path:
    """A kubeconfig for the chart's operator ServiceAccount (its RBAC, nothing more)."""
    return service_account_kubeconfig(kube, path, RELEASE_NS, "haltgate")


@pytest.fixture(scope="module")
def chart_operator(
    installed: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorUnderTest]:
    """`haltgate operator` outside the cluster, configured like the chart's pods: the
    injection ConfigMap's two files, the chart's ServiceAccount, the release namespace.
    The apiserver reaches it through a URL client config."""
    kube = installed
    workdir = tmp_path_factory.mktemp("chart-operator")
    cm = kubectl_json(kube, "-n", RELEASE_NS, "get", "configmap", "haltgate-injection")
    for key, text in cm["data"].items():
        (workdir / key).write_text(text)
    # Keep whatever configurations another suite's operator wrote, to put them back.
    saved = save_configs(kube)
    op = OperatorUnderTest(kube, workdir, free_port(), sa_kubeconfig(kube, workdir / "kc"))
    op.argv = [
        str(Path(sys.executable).parent / "haltgate"),
        "operator",
        "--namespace",
        RELEASE_NS,
        "--webhook-host",
        "127.0.0.1",
        "--webhook-port",
        str(op.webhook_port),
        "--webhook-url",
        f"https://127.0.0.1:{op.webhook_port}",
        "--work-dir",
        str(workdir / "work"),
        "--injection-config",
        str(workdir / "injection-config.yaml"),
        "--injection-template",
        str(workdir / "injection-template.yaml"),
        "--health-port",
        str(op.health_port),
        "--metrics-port",
        str(op.metrics_port),
        "--peering",
        "haltgate",
        "--priority",
        "7",
    ]
    op.start()
    try:
        yield op
    finally:
        op.stop()
        # Leave nothing for other suites' operators to reconcile.
        kube.kubectl("delete", "namespace", AGENT_NS, "--wait=false")
        restore_configs(kube, saved)


def names(items: list[dict[str, Any]] | None) -> list[str]:
    return [i["name"] for i in items or []]


def test_chart_configured_operator_injects_deployment_pods(
    chart_operator: OperatorUnderTest,
) -> None:
    kube = chart_operator.kube
    policy = {
        "apiVersion": "haltgate.dev/v1alpha1",
        "kind": "GovernancePolicy",
        "metadata": {"name": "chart-research", "namespace": AGENT_NS},
        "spec": {
            "selector": {"matchLabels": {"app": "chart-agent"}},
            "upstreams": [
                {
                    "name": "llm",
                    "url": "https://api.openai.com",
                    "kind": "llm",
                    "provider": "openai",
                }
            ],
            "budgets": {"calls": {"limit": 10}},
        },
    }
    # Applied through the validating webhook the operator just registered.
    res = kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(policy))
    assert res.returncode == 0, res.stderr
    deployment = injected_deployment(AGENT_NS, "chart-agent", app="chart-agent", image="agent:1")
    res = kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(deployment))
    assert res.returncode == 0, res.stderr

    def injected_pod() -> dict[str, Any] | None:
        pods = kubectl_json(kube, "-n", AGENT_NS, "get", "pods", "-l", "app=chart-agent")
        return next(
            (
                p
                for p in pods["items"]
                if injection.SIDECAR_CONTAINER_NAME in names(p["spec"].get("initContainers"))
            ),
            None,
        )

    pod = eventually(injected_pod, timeout=40, what="the Deployment's pod injected")
    inits = {c["name"]: c for c in pod["spec"]["initContainers"]}
    assert inits[injection.SIDECAR_CONTAINER_NAME]["restartPolicy"] == "Always"
    # The image and ports come from the chart's values, through its ConfigMap.
    assert inits[injection.SIDECAR_CONTAINER_NAME]["image"] == "ghcr.io/haltgate/haltgate:0.1.0"
    assert inits[injection.INIT_CONTAINER_NAME]["args"][:2] == ["iptables", "apply"]
    assert pod["metadata"]["labels"][injection.LABEL_POLICY] == "chart-research"
    agent_env = {e["name"] for e in pod["spec"]["containers"][0]["env"]}
    assert {"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS"} <= agent_env
    # A pod that would defeat enforcement is refused through the same path.
    bad = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "escape",
            "namespace": AGENT_NS,
            "labels": {"app": "chart-agent"},
            "annotations": {injection.ANNOTATION_INJECT: "true"},
        },
        "spec": {"hostNetwork": True, "containers": [{"name": "a", "image": "x"}]},
    }
    res = kube.kubectl("create", "-f", "-", input=yaml.safe_dump(bad))
    assert res.returncode != 0 and "host_network" in res.stderr, res.stderr


def test_switch_to_cert_manager_and_back_keeps_the_webhook(
    installed: ControlPlane, helm: Helm
) -> None:
    """Operator-managed -> cert-manager -> operator-managed with `helm upgrade` only: Helm
    adopts the configurations the operator wrote (they carry the release's ownership), and
    keeps the chart's when switching back; at no point is a configuration missing."""
    from haltgate.operator import webhookconfig

    kube = installed
    saved = save_configs(kube)
    # As the chart's operator pods write them: through the release's webhook Service.
    service = next(
        s["metadata"]["name"]
        for s in kubectl_json(kube, "-n", RELEASE_NS, "get", "services")["items"]
        if s["metadata"]["name"].endswith("-webhook")
    )
    endpoint = webhookconfig.Endpoint(
        ca_bundle=b"operator CA", service_name=service, service_namespace=RELEASE_NS
    )
    cfg = injection.InjectionConfig(operator_namespace=RELEASE_NS)
    written = [
        webhookconfig.mutating_configuration(endpoint, cfg),
        webhookconfig.validating_configuration(endpoint, cfg),
    ]

    def write(owned: bool) -> None:
        for (kind, name), body in zip(CONFIGS, written, strict=True):
            kube.kubectl("delete", kind, name, "--ignore-not-found")
            doc = webhookconfig.helm_owned(body, "haltgate", RELEASE_NS) if owned else body
            res = kube.kubectl("create", "-f", "-", input=yaml.safe_dump(doc))
            assert res.returncode == 0, res.stderr

    def upgrade(cert_manager: bool) -> subprocess.CompletedProcess[str]:
        return helm(
            "upgrade",
            "haltgate",
            str(CHART),
            "--namespace",
            RELEASE_NS,
            "--set",
            f"webhook.certManager.enabled={str(cert_manager).lower()}",
            check=False,
            kubeconfig=kube.kubeconfig,
        )

    try:
        # Without the ownership metadata (the operator before this change) Helm refuses.
        write(owned=False)
        refused = upgrade(cert_manager=True)
        assert refused.returncode != 0 and "cannot be imported" in refused.stderr, refused.stderr
        write(owned=True)
        res = upgrade(cert_manager=True)
        assert res.returncode == 0, res.stderr
        for kind, name in CONFIGS:
            meta = kubectl_json(kube, "get", kind, name)["metadata"]
            assert "cert-manager.io/inject-ca-from" in meta["annotations"], meta
        res = upgrade(cert_manager=False)
        assert res.returncode == 0, res.stderr
        for kind, name in CONFIGS:  # kept for the new operator to replace in place
            assert kube.kubectl("get", kind, name).returncode == 0
    finally:
        restore_configs(kube, saved)
