"""Pod Security `restricted`: with injection.redirect "node" an injected pod carries no
NET_ADMIN/NET_RAW and no root container, and the real apiserver admits it in a namespace
labelled pod-security.kubernetes.io/enforce=restricted; with the init-container mode the
same pod is refused by Pod Security (the case the node mode exists for)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from haltgate.operator import injection
from haltgate.testbed.controlplane import ControlPlane
from tests.operator.conftest import IMAGE, OperatorUnderTest, apply, create, kubectl_json

pytestmark = pytest.mark.k8s


@pytest.fixture
def node_mode_operator(
    operator_running: OperatorUnderTest, tmp_path: Path
) -> Iterator[OperatorUnderTest]:
    """The session's operator, restarted with injection.redirect: node (then restored)."""
    op = operator_running
    config = op.workdir / "injection.yaml"
    before = config.read_text()
    op.stop()
    config.write_text(yaml.safe_dump({**yaml.safe_load(before), "redirect": "node"}))
    op.start()
    try:
        yield op
    finally:
        op.stop()
        config.write_text(before)
        op.start()


def restricted_namespace(kube: ControlPlane, ns: str) -> None:
    kube.kubectl(
        "label",
        "namespace",
        ns,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
        check=True,
    )


def agent_pod(ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "agent",
            "namespace": ns,
            "labels": {"app": "agent"},
            "annotations": {injection.ANNOTATION_INJECT: "true"},
        },
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "agent",
                    "image": "x",
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def policy(ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "haltgate.dev/v1alpha1",
        "kind": "GovernancePolicy",
        "metadata": {"name": "p", "namespace": ns},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}},
    }


def test_init_mode_is_refused_by_pod_security_restricted(
    kube: ControlPlane, kube_namespace: str, operator_running: OperatorUnderTest
) -> None:
    ns = kube_namespace
    restricted_namespace(kube, ns)
    assert apply(kube, policy(ns)).returncode == 0
    res = create(kube, agent_pod(ns))
    assert res.returncode != 0 and "violates PodSecurity" in res.stderr, res.stderr
    assert "NET_ADMIN" in res.stderr


def test_node_mode_pod_is_admitted_under_restricted(
    kube: ControlPlane, kube_namespace: str, node_mode_operator: OperatorUnderTest
) -> None:
    ns = kube_namespace
    restricted_namespace(kube, ns)
    assert apply(kube, policy(ns)).returncode == 0
    res = create(kube, agent_pod(ns))
    assert res.returncode == 0, res.stderr
    pod = kubectl_json(kube, "-n", ns, "get", "pod", "agent")
    inits = pod["spec"]["initContainers"]
    assert [c["name"] for c in inits] == [
        injection.SIDECAR_CONTAINER_NAME,
        injection.VERIFY_CONTAINER_NAME,
    ]
    assert inits[1]["args"][:2] == ["iptables", "verify"] and inits[1]["image"] == IMAGE
    for c in inits + pod["spec"]["containers"]:
        sc = c.get("securityContext") or {}
        assert not (sc.get("capabilities") or {}).get("add"), c["name"]
        assert sc.get("runAsUser", 1000) != 0, c["name"]
    print(
        "\nadmitted under enforce=restricted:\n"
        + yaml.safe_dump(
            {"initContainers": inits, "containers": pod["spec"]["containers"]}, width=100
        )
    )
