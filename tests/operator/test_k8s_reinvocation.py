"""Containers a mesh injects after haltgate are seen by haltgate: the injector the operator
registers with the real apiserver asks to be called again (``reinvocationPolicy:
IfNeeded``) on every pod webhook, and the chart's cert-manager copy says the same. (What
the second call does with an Istio-injected pod: test_injection_golden.py.)"""

from __future__ import annotations

import pytest

from haltgate.testbed.controlplane import ControlPlane
from tests.operator.conftest import REPO, OperatorUnderTest, eventually, kubectl_json

pytestmark = pytest.mark.k8s


def test_registered_injector_is_reinvoked_if_needed(
    kube: ControlPlane, operator_running: OperatorUnderTest
) -> None:
    config = eventually(
        lambda: kubectl_json(kube, "get", "mutatingwebhookconfiguration", "haltgate-injector"),
        timeout=30,
        what="the injector configuration",
    )
    pod_hooks = [
        w
        for w in config["webhooks"]
        if any("pods" in r.get("resources", []) for r in w.get("rules", []))
    ]
    assert pod_hooks, config["webhooks"]
    assert {w["reinvocationPolicy"] for w in pod_hooks} == {"IfNeeded"}


def test_chart_cert_manager_injector_is_reinvoked_if_needed() -> None:
    text = (REPO / "charts" / "haltgate" / "templates" / "webhook-configurations.yaml").read_text()
    assert "reinvocationPolicy: IfNeeded" in text
    assert "reinvocationPolicy: Never" not in text  # the template, checked as text
