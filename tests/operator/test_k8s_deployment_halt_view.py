"""The issue's "a halt on a Deployment posts no Event and the HALTED column stays 0",
against the real apiserver: an external halt on a Deployment (the operator delivers it to
the Deployment's pod's running sidecar) shows in the policy's status.halts with its type
and workload, counts in haltedAgents and the HALTED column, and is an Event on the policy
and on the Deployment; lifting it is an Event too and the count goes back to 0."""

from __future__ import annotations

from pathlib import Path

import pytest

from haltgate.operator import halts, injection
from haltgate.testbed.controlplane import ControlPlane
from tests.operator import test_k8s_halts as k8s_halts
from tests.operator.conftest import OperatorUnderTest, apply, eventually, kubectl_json

pytestmark = pytest.mark.k8s

llm_standin = k8s_halts.llm_standin
"""The stand-in LLM upstream (a fixture)."""


def test_deployment_halt_shows_in_status_column_and_events(
    kube_workloads: ControlPlane,
    kube_namespace: str,
    operator_running: OperatorUnderTest,
    llm_standin: str,
    tmp_path: Path,
) -> None:
    kube, ns = kube_workloads, kube_namespace
    assert apply(kube, k8s_halts.governed_policy(ns, llm_standin)).returncode == 0
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "researcher", "namespace": ns},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {
                    "labels": {"app": "agent"},
                    "annotations": {injection.ANNOTATION_INJECT: "true"},
                },
                "spec": {"containers": [{"name": "agent", "image": "x"}]},
            },
        },
    }
    assert apply(kube, deployment).returncode == 0
    pods = eventually(
        lambda: kubectl_json(kube, "-n", ns, "get", "pods", "-l", "app=agent")["items"],
        timeout=30,
        what="pod",
    )
    name = pods[0]["metadata"]["name"]
    k8s_halts.give_pod_loopback_ip(kube, ns, name)
    with k8s_halts.running_sidecar(kube, ns, name, operator_running.admin_port, tmp_path) as url:
        assert k8s_halts.call(url)[0] == 200
        kube.kubectl(
            "-n", ns, "annotate", "deploy", "researcher", f"{halts.ANNOTATION_HALT}=drill",
            check=True,
        )  # fmt: skip
        eventually(lambda: k8s_halts.refused(url), timeout=15, interval=0.05, what="refused")
        st = eventually(
            lambda: (s := k8s_halts._status(kube, ns)).get("haltedAgents") == 1 and s,
            timeout=30,
            what="haltedAgents 1",
        )
        (entry,) = st["halts"]
        assert entry["pod"] == name and entry["failureType"] == "EXTERNAL", entry
        assert entry["workload"] == "Deployment/researcher", entry
        assert entry["source"] == "Deployment/researcher", entry
        printed = kube.kubectl("-n", ns, "get", "govpol", "research", check=True).stdout
        assert printed.splitlines()[1].split()[3] == "1", printed  # the HALTED column
        for kind, obj in (("GovernancePolicy", "research"), ("Deployment", "researcher")):
            found = eventually(
                lambda k=kind, o=obj: [
                    e for e in k8s_halts._events(kube, ns, k, o) if e["reason"] == "Halted"
                ],
                timeout=30,
                what=f"Halted Event on {kind}",
            )
            assert "EXTERNAL" in found[0]["message"], found

        kube.kubectl(
            "-n", ns, "annotate", "deploy", "researcher", f"{halts.ANNOTATION_HALT}-", check=True
        )
        eventually(
            lambda: k8s_halts._status(kube, ns).get("haltedAgents") == 0,
            timeout=30,
            what="haltedAgents back to 0",
        )
        eventually(
            lambda: [
                e
                for e in k8s_halts._events(kube, ns, "Deployment", "researcher")
                if e["reason"] == "HaltLifted"
            ],
            timeout=30,
            what="HaltLifted Event on the Deployment",
        )
