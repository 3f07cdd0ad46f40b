"""`helm uninstall` against the real kube-apiserver after the chart's operator ran and
injected a pod: every object left behind is one docs/operations.md lists under
"Uninstall", and the documented commands remove them (the CRD line is checked as text
only: it would delete the session's shared CRDs)."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from haltgate.operator import injection
from haltgate.testbed.controlplane import ControlPlane
from haltgate.testbed.process import free_port
from tests.chart.conftest import CHART, Helm
from tests.operator.conftest import REPO, OperatorUnderTest, eventually, kubectl_json

pytestmark = pytest.mark.k8s

RELEASE_NS = "hg-uninstall"
AGENT_NS = "hg-uninstall-agents"
CONFIGS = (
    ("mutatingwebhookconfiguration", "haltgate-injector"),
    ("validatingwebhookconfiguration", "haltgate-validator"),
)
MANAGED = "app.kubernetes.io/managed-by=haltgate"


def _docs_section() -> str:
    text = (REPO / "docs" / "operations.md").read_text()
    return text[text.index("**Uninstall.**") : text.index("Only one haltgate release")]


def _documented_commands() -> list[str]:
    block = re.search(r"```\n(helm uninstall .*?)```", _docs_section(), re.S)
    assert block, "no uninstall command block in docs/operations.md"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


@pytest.fixture
def released(kube_workloads: ControlPlane, helm: Helm, tmp_path: Path) -> Iterator[ControlPlane]:
    """The chart installed and its operator run (outside the cluster, with the chart's
    injection ConfigMap) until it injected one pod; then stopped. Restores the webhook
    configurations another suite's operator had written."""
    kube = kube_workloads
    for ns in (RELEASE_NS, AGENT_NS):
        kube.kubectl("create", "namespace", ns)
    saved = [kube.kubectl("get", kind, name, "-o", "yaml") for kind, name in CONFIGS]
    helm(
        "install", "haltgate", str(CHART), "--namespace", RELEASE_NS,
        "--set", f"operator.agentNamespaces={{{AGENT_NS}}}", kubeconfig=kube.kubeconfig,
    )  # fmt: skip
    op: OperatorUnderTest | None = None
    try:
        cm = kubectl_json(kube, "-n", RELEASE_NS, "get", "configmap", "haltgate-injection")
        for key, text in cm["data"].items():
            (tmp_path / key).write_text(text)
        op = OperatorUnderTest(kube, tmp_path, free_port())
        op.argv = [
            str(Path(sys.executable).parent / "haltgate"), "operator",
            "--namespace", RELEASE_NS, "--webhook-host", "127.0.0.1",
            "--webhook-port", str(op.webhook_port),
            "--webhook-url", f"https://127.0.0.1:{op.webhook_port}",
            "--work-dir", str(tmp_path / "work"),
            "--injection-config", str(tmp_path / "injection-config.yaml"),
            "--injection-template", str(tmp_path / "injection-template.yaml"),
            "--health-port", str(op.health_port), "--metrics-port", str(op.metrics_port),
            "--peering", "haltgate", "--priority", "8",
        ]  # fmt: skip
        op.start()
        policy = {
            "apiVersion": "haltgate.dev/v1alpha1",
            "kind": "GovernancePolicy",
            "metadata": {"name": "p", "namespace": AGENT_NS},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}},
        }
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "agent",
                "namespace": AGENT_NS,
                "labels": {"app": "agent"},
                "annotations": {injection.ANNOTATION_INJECT: "true"},
            },
            "spec": {"containers": [{"name": "agent", "image": "agent:1"}]},
        }
        res = kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(policy))
        assert res.returncode == 0, res.stderr
        eventually(
            lambda: kube.kubectl("create", "-f", "-", input=yaml.safe_dump(pod)).returncode == 0,
            timeout=40,
            what="the opted-in pod admitted",
        )
        # The policy's reconciler makes the namespace's Secrets and CA bundle.
        eventually(
            lambda: (
                len(
                    kubectl_json(kube, "-n", AGENT_NS, "get", "secret,configmap", "-l", MANAGED)[
                        "items"
                    ]
                )
                >= 3
            ),
            timeout=40,
            what="the agent namespace's admin token, CA key and CA bundle",
        )
        op.stop()
        helm("uninstall", "haltgate", "--namespace", RELEASE_NS, kubeconfig=kube.kubeconfig)
        yield kube
    finally:
        if op is not None:
            op.stop()
        helm(
            "uninstall", "haltgate", "--namespace", RELEASE_NS, check=False,
            kubeconfig=kube.kubeconfig,
        )  # fmt: skip
        kube.kubectl("delete", "pod", "agent", "-n", AGENT_NS, "--wait=false")
        for (kind, name), before in zip(CONFIGS, saved, strict=True):
            kube.kubectl("delete", kind, name, "--ignore-not-found")
            if before.returncode == 0:
                doc = yaml.safe_load(before.stdout)
                for key in ("resourceVersion", "uid", "creationTimestamp", "generation"):
                    doc["metadata"].pop(key, None)
                kube.kubectl("create", "-f", "-", input=yaml.safe_dump(doc))


def _leftovers(kube: ControlPlane) -> set[tuple[str, str]]:
    found = set()
    for kind, name in CONFIGS:
        if kube.kubectl("get", kind, name).returncode == 0:
            found.add((kind, name))
    for ns in (RELEASE_NS, AGENT_NS):
        items = kubectl_json(kube, "-n", ns, "get", "secret,configmap", "-l", MANAGED)["items"]
        found |= {(i["kind"].lower(), i["metadata"]["name"]) for i in items}
        # Anything else the release might have left in its namespace.
        rest: list[dict[str, Any]] = kubectl_json(
            kube, "-n", ns, "get", "deploy,svc,sa,role,rolebinding,pdb,job"
        )["items"]
        found |= {(i["kind"].lower(), i["metadata"]["name"]) for i in rest if "haltgate" in
                  i["metadata"]["name"]}  # fmt: skip
    return found


def test_every_leftover_is_documented_and_the_commands_remove_it(released: ControlPlane) -> None:
    kube = released
    left = _leftovers(kube)
    # What the operator made is there (otherwise this test proves nothing).
    assert ("mutatingwebhookconfiguration", "haltgate-injector") in left, left
    assert ("secret", "haltgate-webhook-tls") in left, left
    assert ("secret", "haltgate-admin-token") in left, left
    # The names the docs' table shows (`Kind/name`, `<name>` standing for any policy's).
    documented = [
        re.compile(re.escape(n).replace(re.escape("<name>"), "[a-z0-9.-]+") + "$")
        for n in re.findall(r"`[A-Za-z]+/([a-z0-9<>.-]+)`", _docs_section())
    ]
    for kind, name in sorted(left):
        assert any(d.match(name) for d in documented), (
            f"{kind}/{name} stays after helm uninstall; not in the docs' table"
        )
    commands = _documented_commands()
    assert commands[0].startswith("helm uninstall haltgate -n haltgate-system"), commands
    assert any(c.startswith("kubectl delete crd governancepolicies.haltgate.dev") for c in commands)
    for command in commands:
        words = command.split()
        if words[:2] == ["helm", "uninstall"] or words[:3] == ["kubectl", "delete", "crd"]:
            continue  # done above / would delete the session's shared CRDs
        if "-A" in words:  # every namespace: here only this test's, not other suites'
            for ns in (RELEASE_NS, AGENT_NS):
                i = words.index("-A")
                res = kube.kubectl(*words[1:i], "-n", ns, *words[i + 1 :])
                assert res.returncode == 0, (command, res.stderr)
            continue
        res = kube.kubectl(*words[1:])
        assert res.returncode == 0, (command, res.stderr)
    assert _leftovers(kube) == set()
