"""``kubectl annotate deploy/NAME haltgate.dev/inject=true`` works as people expect: the
operator carries the opt-in into the pod template (one rollout: the new pod is injected),
removing it rolls back; a StatefulSet gets the same; annotations where nothing reads them
draw an admission warning."""

from __future__ import annotations

import json
from typing import Any

import pytest

from haltgate.operator import injection, workloads
from haltgate.testbed.controlplane import ControlPlane
from tests.operator.conftest import OperatorUnderTest, apply, eventually, kubectl_json

pytestmark = pytest.mark.k8s


def policy(ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "haltgate.dev/v1alpha1",
        "kind": "GovernancePolicy",
        "metadata": {"name": "research", "namespace": ns},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}},
    }


def workload(ns: str, kind: str = "Deployment") -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "agent"}},
        "template": {
            "metadata": {"labels": {"app": "agent"}},
            "spec": {"containers": [{"name": "agent", "image": "x"}]},
        },
    }
    if kind == "StatefulSet":
        spec["serviceName"] = "agent"
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": "researcher", "namespace": ns},
        "spec": spec,
    }


def template_annotations(kube: ControlPlane, ns: str, kind: str) -> dict[str, str]:
    obj = kubectl_json(kube, "-n", ns, "get", kind.lower(), "researcher")
    return workloads.template_annotations(obj)


def injected_pods(kube: ControlPlane, ns: str) -> list[str]:
    pods = kubectl_json(kube, "-n", ns, "get", "pods", "-l", "app=agent")["items"]
    return [
        p["metadata"]["name"]
        for p in pods
        if injection.ANNOTATION_INJECTED in (p["metadata"].get("annotations") or {})
    ]


def test_annotating_the_deployment_object_injects_and_removing_rolls_back(
    kube_workloads: ControlPlane, kube_namespace: str, operator_running: OperatorUnderTest
) -> None:
    kube, ns = kube_workloads, kube_namespace
    assert apply(kube, policy(ns)).returncode == 0
    assert apply(kube, workload(ns)).returncode == 0
    eventually(
        lambda: kubectl_json(kube, "-n", ns, "get", "pods", "-l", "app=agent")["items"],
        timeout=30,
        what="ungoverned pod",
    )
    assert injected_pods(kube, ns) == []

    kube.kubectl(
        "-n",
        ns,
        "annotate",
        "deploy",
        "researcher",
        f"{injection.ANNOTATION_INJECT}=true",
        check=True,
    )
    got = eventually(
        lambda: (
            (a := template_annotations(kube, ns, "Deployment")).get(injection.ANNOTATION_INJECT)
            == "true"
            and a
        ),
        timeout=30,
        what="carried opt-in",
    )
    assert got[workloads.ANNOTATION_CARRIED] == injection.ANNOTATION_INJECT
    eventually(lambda: injected_pods(kube, ns), timeout=30, what="injected pod (rollout)")
    events = kubectl_json(kube, "-n", ns, "get", "events")["items"]
    assert any(
        e["reason"] == "OptInCarried" and e["involvedObject"]["kind"] == "Deployment"
        for e in events
    )

    kube.kubectl(
        "-n", ns, "annotate", "deploy", "researcher", f"{injection.ANNOTATION_INJECT}-", check=True
    )
    eventually(
        lambda: (
            not (
                {injection.ANNOTATION_INJECT, workloads.ANNOTATION_CARRIED}
                & set(template_annotations(kube, ns, "Deployment"))
            )
        ),
        timeout=30,
        what="rolled back",
    )


def test_statefulset_object_annotation_is_carried(
    kube_workloads: ControlPlane, kube_namespace: str, operator_running: OperatorUnderTest
) -> None:
    kube, ns = kube_workloads, kube_namespace
    sts = workload(ns, "StatefulSet")
    sts["metadata"]["annotations"] = {injection.ANNOTATION_INJECT: "true"}
    assert apply(kube, sts).returncode == 0
    eventually(
        lambda: (
            template_annotations(kube, ns, "StatefulSet").get(injection.ANNOTATION_INJECT) == "true"
        ),
        timeout=30,
        what="carried opt-in",
    )


def test_the_templates_own_opt_out_wins_and_draws_a_warning(
    kube_workloads: ControlPlane, kube_namespace: str, operator_running: OperatorUnderTest
) -> None:
    kube, ns = kube_workloads, kube_namespace
    dep = workload(ns)
    dep["metadata"]["annotations"] = {injection.ANNOTATION_INJECT: "true"}
    dep["spec"]["template"]["metadata"]["annotations"] = {injection.ANNOTATION_INJECT: "false"}
    res = apply(kube, dep)
    assert res.returncode == 0, res.stderr
    assert (
        "Warning: haltgate: haltgate.dev/inject: 'true' on the Deployment object is "
        "ignored" in res.stderr
    ), res.stderr
    # The operator leaves the user's own template annotation alone (no rollout).
    kube.kubectl("-n", ns, "annotate", "deploy", "researcher", "touch=1", check=True)
    eventually(
        lambda: kubectl_json(kube, "-n", ns, "get", "rs")["items"], timeout=30, what="ReplicaSet"
    )
    assert template_annotations(kube, ns, "Deployment") == {injection.ANNOTATION_INJECT: "false"}
    assert len(kubectl_json(kube, "-n", ns, "get", "rs")["items"]) == 1
    events = kubectl_json(kube, "-n", ns, "get", "events")["items"]
    assert not [e for e in events if e["reason"] == "OptInCarried"]


def test_warnings_for_annotations_nothing_reads(
    kube: ControlPlane, kube_namespace: str, operator_running: OperatorUnderTest
) -> None:
    ns = kube_namespace
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "j",
            "namespace": ns,
            "annotations": {injection.ANNOTATION_INJECT: "true"},
        },
        "spec": {
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "a", "image": "x"}]}
            }
        },
    }
    res = apply(kube, job)
    assert res.returncode == 0, res.stderr
    assert "haltgate.dev/inject on the Job object is not read" in res.stderr, res.stderr
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": ns, "annotations": {"haltgate.dev/halt": "stop"}},
        "spec": {"containers": [{"name": "a", "image": "x"}]},
    }
    res = apply(kube, pod)
    assert res.returncode == 0, res.stderr
    assert "haltgate.dev/halt on this pod is not read" in res.stderr, res.stderr
    plain = {**pod, "metadata": {"name": "q", "namespace": ns}}
    res = apply(kube, json.loads(json.dumps(plain)))
    assert res.returncode == 0 and "haltgate" not in res.stderr, res.stderr
