"""`kubectl annotate ds/NAME haltgate.dev/inject=true` on the DaemonSet object, against the
real apiserver: the operator carries the opt-in into the pod template (marked as carried),
and removing it from the object rolls it back. (Deployments and StatefulSets:
test_k8s_workload_optin.py.)"""

from __future__ import annotations

import pytest

from haltgate.operator import injection, workloads
from haltgate.testbed.controlplane import ControlPlane
from tests.operator.conftest import OperatorUnderTest, apply, eventually
from tests.operator.test_k8s_workload_optin import policy, template_annotations, workload

pytestmark = pytest.mark.k8s


def test_daemonset_object_annotation_is_carried_and_rolled_back(
    kube_workloads: ControlPlane, kube_namespace: str, operator_running: OperatorUnderTest
) -> None:
    kube, ns = kube_workloads, kube_namespace
    assert apply(kube, policy(ns)).returncode == 0
    ds = workload(ns, "DaemonSet")
    del ds["spec"]["replicas"]
    assert apply(kube, ds).returncode == 0
    assert injection.ANNOTATION_INJECT not in template_annotations(kube, ns, "DaemonSet")
    kube.kubectl(
        "-n", ns, "annotate", "ds", "researcher", f"{injection.ANNOTATION_INJECT}=true", check=True
    )
    eventually(
        lambda: (
            template_annotations(kube, ns, "DaemonSet").get(injection.ANNOTATION_INJECT) == "true"
            and workloads.ANNOTATION_CARRIED in template_annotations(kube, ns, "DaemonSet")
        ),
        timeout=30,
        what="carried opt-in",
    )
    kube.kubectl(
        "-n", ns, "annotate", "ds", "researcher", f"{injection.ANNOTATION_INJECT}-", check=True
    )
    eventually(
        lambda: (
            not (
                {injection.ANNOTATION_INJECT, workloads.ANNOTATION_CARRIED}
                & set(template_annotations(kube, ns, "DaemonSet"))
            )
        ),
        timeout=30,
        what="rolled back",
    )
