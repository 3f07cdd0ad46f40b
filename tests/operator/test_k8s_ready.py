"""Ready tells the truth: a valid policy whose agents would have every call refused is
Ready=false with a reason (a missing pool, a missing pool database Secret, Rego without the
rule at decisionPath); admission refuses inline Rego without that rule."""

from __future__ import annotations

from typing import Any

import pytest

from haltgate.testbed.controlplane import ControlPlane
from tests.operator.conftest import OperatorUnderTest, apply, budget_pool, eventually, kubectl_json

pytestmark = pytest.mark.k8s


def policy(ns: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "haltgate.dev/v1alpha1",
        "kind": "GovernancePolicy",
        "metadata": {"name": "p", "namespace": ns},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, **spec},
    }


def ready(kube: ControlPlane, ns: str) -> dict[str, Any] | None:
    st = kubectl_json(kube, "-n", ns, "get", "govpol", "p").get("status") or {}
    return next((c for c in st.get("conditions") or [] if c["type"] == "Ready"), None)


def ready_reason(kube: ControlPlane, ns: str, status: str, reason: str) -> Any:
    return eventually(
        lambda: (c := ready(kube, ns)) and c["status"] == status and c["reason"] == reason and c,
        timeout=30,
        what=f"Ready={status} {reason}",
    )


def test_missing_pool_then_missing_secret_then_ready(
    kube: ControlPlane, kube_namespace: str, operator_running: OperatorUnderTest
) -> None:
    ns = kube_namespace
    assert apply(kube, policy(ns, pool="shared")).returncode == 0
    cond = ready_reason(kube, ns, "False", "PoolNotFound")
    assert "BudgetPool" in cond["message"] and "shared" in cond["message"]
    assert kubectl_json(kube, "-n", ns, "get", "govpol", "p")["status"]["ready"] is False
    assert (
        apply(
            kube,
            budget_pool(ns, "shared", {"calls": {"limit": 10}}),
        ).returncode
        == 0
    )
    cond = ready_reason(kube, ns, "False", "PoolDatabaseSecretMissing")
    assert "haltgate-pool-db" in cond["message"]
    kube.kubectl(
        "-n",
        ns,
        "create",
        "secret",
        "generic",
        "haltgate-pool-db",
        "--from-literal=dsn=postgresql://pool@db/pool",
        check=True,
    )
    ready_reason(kube, ns, "True", "Delivered")
    events = kubectl_json(kube, "-n", ns, "get", "events")["items"]
    assert any(e["reason"] == "PoolNotFound" and e["type"] == "Warning" for e in events)


def test_configmap_rego_without_the_decision_rule(
    kube: ControlPlane, kube_namespace: str, operator_running: OperatorUnderTest
) -> None:
    ns = kube_namespace
    kube.kubectl(
        "-n",
        ns,
        "create",
        "configmap",
        "rego",
        "--from-literal=p.rego=package authz\n\nallow := true\n",
        check=True,
    )
    assert (
        apply(kube, policy(ns, opa={"configMapRef": {"name": "rego", "key": "p.rego"}})).returncode
        == 0
    )
    cond = ready_reason(kube, ns, "False", "DecisionRuleMissing")
    assert "data.haltgate.decision" in cond["message"]
    assert "data.authz.allow" in cond["message"]


def test_admission_refuses_inline_rego_without_the_decision_rule(
    kube: ControlPlane, kube_namespace: str, operator_running: OperatorUnderTest
) -> None:
    res = apply(kube, policy(kube_namespace, opa={"rego": "package haltgate\n\nallow := true\n"}))
    assert res.returncode != 0
    assert "spec.opa.decisionPath" in res.stderr and "no rule at" in res.stderr, res.stderr
