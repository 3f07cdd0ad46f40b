"""Injection keeps a Guaranteed pod Guaranteed, as the real apiserver judges it (it sets
``status.qosClass`` when it stores the pod), in both redirect modes' templates: the init
container mode here (the session's operator) and node mode (restarted with it)."""

from __future__ import annotations

from typing import Any

import pytest

from haltgate.operator import injection
from haltgate.testbed.controlplane import ControlPlane
from tests.operator import test_k8s_restricted as restricted
from tests.operator.conftest import OperatorUnderTest, apply, create, kubectl_json

pytestmark = pytest.mark.k8s

node_mode_operator = restricted.node_mode_operator
"""The session's operator restarted with injection.redirect: node (a fixture)."""


def _pods(ns: str) -> list[dict[str, Any]]:
    def pod(name: str, resources: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": {"app": "agent"},
                "annotations": {injection.ANNOTATION_INJECT: "true"},
            },
            "spec": {"containers": [{"name": "agent", "image": "x", "resources": resources}]},
        }

    return [
        pod("guaranteed", {"limits": {"cpu": "1", "memory": "1Gi"}}),
        pod("burstable", {"requests": {"cpu": "100m", "memory": "128Mi"}}),
    ]


def _check(kube: ControlPlane, ns: str) -> None:
    assert apply(kube, restricted.policy(ns)).returncode == 0
    for pod in _pods(ns):
        res = create(kube, pod)
        assert res.returncode == 0, res.stderr
    stored = {
        name: kubectl_json(kube, "-n", ns, "get", "pod", name)
        for name in ("guaranteed", "burstable")
    }
    for name, pod in stored.items():
        assert injection.SIDECAR_CONTAINER_NAME in [
            c["name"] for c in pod["spec"]["initContainers"]
        ], name
    assert stored["guaranteed"]["status"]["qosClass"] == "Guaranteed"
    assert stored["burstable"]["status"]["qosClass"] == "Burstable"


def test_guaranteed_pod_stays_guaranteed_init_mode(
    kube: ControlPlane, kube_namespace: str, operator_running: OperatorUnderTest
) -> None:
    _check(kube, kube_namespace)


def test_guaranteed_pod_stays_guaranteed_node_mode(
    kube: ControlPlane, kube_namespace: str, node_mode_operator: OperatorUnderTest
) -> None:
    _check(kube, kube_namespace)
