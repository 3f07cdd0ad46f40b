"""The operator under the chart's RBAC in a namespace that has not opted in: it can do
nothing there, and says so in the policy's status instead of failing silently; opting the
namespace in (its RoleBinding) makes the same policy Ready."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from haltgate.testbed.controlplane import ControlPlane
from tests.operator.conftest import (
    OperatorUnderTest,
    apply,
    eventually,
    kubectl_json,
    opt_in_namespace,
)
from tests.operator.test_k8s_admission import policy

pytestmark = pytest.mark.k8s


def ready_condition(kube: ControlPlane, ns: str) -> dict[str, Any] | None:
    status = kubectl_json(kube, "-n", ns, "get", "govpol", "research").get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), None)


def test_a_namespace_that_did_not_opt_in_is_reported(
    kube: ControlPlane, operator_running: OperatorUnderTest
) -> None:
    ns = f"t-closed-{uuid.uuid4().hex[:8]}"
    kube.kubectl("create", "namespace", ns, check=True)  # no RoleBinding for the operator
    try:
        assert apply(kube, policy(ns, "research")).returncode == 0
        cond = eventually(
            lambda: (c := ready_condition(kube, ns)) and c["reason"] == "NamespaceNotEnabled" and c,
            timeout=30,
            what="Ready=False NamespaceNotEnabled",
        )
        assert cond["status"] == "False"
        assert "operator.agentNamespaces" in cond["message"], cond
        assert (
            kube.kubectl("-n", ns, "get", "configmap", "haltgate-policy-research").returncode != 0
        )
        assert kube.kubectl("-n", ns, "get", "secret", "haltgate-admin-token").returncode != 0
        # The documented opt-in: one RoleBinding, and the same policy becomes Ready.
        opt_in_namespace(kube, ns)
        eventually(
            lambda: (c := ready_condition(kube, ns)) and c["status"] == "True",
            timeout=40,
            what="Ready after the namespace opted in",
        )
        assert kube.kubectl("-n", ns, "get", "secret", "haltgate-admin-token").returncode == 0
    finally:
        kube.kubectl("delete", "namespace", ns, "--wait=false")
