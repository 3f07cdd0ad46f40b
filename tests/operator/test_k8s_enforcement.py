"""``spec.enforcement`` against a real apiserver and the running operator: the status and
the ``kubectl get`` column show the mode, the delivered ConfigMap carries it, switching it
back shows ``enforce``, and admission refuses a mode that does not exist."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from haltgate.operator.injection import policy_configmap_name
from haltgate.operator.policies import POLICY_KEY
from haltgate.testbed.controlplane import ControlPlane
from tests.operator.conftest import OperatorUnderTest, apply, eventually, kubectl_json

pytestmark = pytest.mark.k8s


def policy(ns: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "haltgate.dev/v1alpha1",
        "kind": "GovernancePolicy",
        "metadata": {"name": "p", "namespace": ns},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, **spec},
    }


def status_enforcement(kube: ControlPlane, ns: str, mode: str) -> dict[str, Any]:
    def check() -> Any:
        doc = kubectl_json(kube, "-n", ns, "get", "govpol", "p")
        st = doc.get("status") or {}
        gen = doc["metadata"]["generation"]
        return st.get("enforcement") == mode and st.get("observedGeneration") == gen and st

    return eventually(check, timeout=30, what=f"status.enforcement={mode}")  # type: ignore[no-any-return]


def delivered(kube: ControlPlane, ns: str) -> Any:
    cm = kubectl_json(kube, "-n", ns, "get", "configmap", policy_configmap_name("p"))
    return yaml.safe_load(cm["data"][POLICY_KEY])["spec"].get("enforcement")


def test_monitor_shown_in_status_and_column(
    kube: ControlPlane, kube_namespace: str, operator_running: OperatorUnderTest
) -> None:
    ns = kube_namespace
    applied = apply(kube, policy(ns, enforcement="monitor"))
    assert applied.returncode == 0
    # Admission says what the mode means (a warning, not a refusal).
    assert "spec.enforcement: monitor" in applied.stderr
    status_enforcement(kube, ns, "monitor")
    assert delivered(kube, ns) == "monitor"
    table = kube.kubectl("-n", ns, "get", "govpol", "p", check=True).stdout.splitlines()
    header, row = table[0].split(), table[1].split()
    assert row[header.index("ENFORCEMENT")] == "monitor"

    assert apply(kube, policy(ns, enforcement="enforce")).returncode == 0
    status_enforcement(kube, ns, "enforce")
    assert delivered(kube, ns) == "enforce"
    # No field at all (kubectl apply drops it): the default.
    assert apply(kube, policy(ns, budgets={"calls": {"limit": 5}})).returncode == 0
    assert delivered(kube, ns) in (None, "enforce")
    status_enforcement(kube, ns, "enforce")


def test_unknown_mode_refused(
    kube: ControlPlane, kube_namespace: str, operator_running: OperatorUnderTest
) -> None:
    res = apply(kube, policy(kube_namespace, enforcement="observe"))
    assert res.returncode != 0
    assert "enforcement" in res.stderr
