"""The chart's RBAC against the real kube-apiserver: a ``kubectl auth can-i`` matrix for the
operator's ServiceAccount, and the writes an attacker holding its token would try (issue 16:
the old ClusterRole let one mint a kube-system service-account token Secret and read it
back, change any pod's image, and rewrite kube-system ConfigMaps).

Rendered with the test bed's helm, applied to the test bed's apiserver; impersonation
(``kubectl --as``) asks as the ServiceAccount.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from haltgate.testbed.controlplane import ControlPlane
from tests.chart.conftest import CHART, KUBE_VERSION, Helm
from tests.operator.conftest import eventually

RELEASE, RELEASE_NS = "rbacmx", "rbacmx-system"
AGENTS, OTHER = "rbacmx-agents", "rbacmx-other"
SA = f"system:serviceaccount:{RELEASE_NS}:{RELEASE}-haltgate"
KINDS = (
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
)

pytestmark = pytest.mark.k8s


@pytest.fixture(scope="module")
def rbac_cluster(kube: ControlPlane, haltgate_crds: list[str], helm: Helm) -> ControlPlane:
    for ns in (RELEASE_NS, AGENTS, OTHER):
        kube.kubectl("create", "namespace", ns)
    out = helm(
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        RELEASE_NS,
        "--kube-version",
        KUBE_VERSION,
        "--set",
        f"operator.agentNamespaces={{{AGENTS}}}",
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d and d["kind"] in KINDS]
    res = kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    assert res.returncode == 0, res.stderr
    return kube


def can_i(kube: ControlPlane, verb: str, resource: str, namespace: str | None) -> bool:
    where = ["-A"] if namespace is None else ["-n", namespace]
    resource, _, sub = resource.partition("|")  # "kind|status": a subresource
    extra = [f"--subresource={sub}"] if sub else []
    res = kube.kubectl("auth", "can-i", verb, resource, *where, *extra, f"--as={SA}")
    answer = res.stdout.strip()
    assert answer in ("yes", "no"), (verb, resource, namespace, res.stdout, res.stderr)
    return answer == "yes"


# (verb, resource[/name][|subresource], namespace or None for all namespaces, expected)
MATRIX = [
    # Negative: what made the old ClusterRole cluster-admin in disguise.
    ("create", "secrets", "kube-system", False),
    ("get", "secrets", "kube-system", False),
    ("list", "secrets", "kube-system", False),
    ("create", "serviceaccounts/token", "kube-system", False),
    ("patch", "pods", "kube-system", False),
    ("update", "pods", "kube-system", False),
    ("patch", "pods", OTHER, False),
    ("update", "pods", OTHER, False),
    ("patch", "pods", None, False),
    ("create", "configmaps", "kube-system", False),
    ("update", "configmaps", "kube-system", False),
    ("patch", "configmaps", "kube-system", False),
    ("create", "configmaps", OTHER, False),
    ("update", "configmaps", None, False),
    ("create", "secrets", OTHER, False),
    ("get", "secrets", None, False),
    ("create", "secrets", None, False),
    # Nor a way to grant itself more.
    ("create", "rolebindings", "kube-system", False),
    ("create", "clusterrolebindings", None, False),
    ("bind", "clusterroles", None, False),
    ("escalate", "clusterroles", None, False),
    ("impersonate", "serviceaccounts", "kube-system", False),
    ("delete", "pods", AGENTS, False),
    ("create", "pods/exec", AGENTS, False),
    # Inside an agent namespace that opted in: what the operator needs, and no more.
    ("create", "configmaps", AGENTS, True),
    ("update", "configmaps", AGENTS, True),
    ("get", "configmaps", AGENTS, True),
    ("delete", "configmaps", AGENTS, False),
    ("create", "secrets", AGENTS, True),
    ("get", "secrets/haltgate-admin-token", AGENTS, True),
    ("get", "secrets/haltgate-ca", AGENTS, True),
    ("get", "secrets/haltgate-pool-db", AGENTS, True),
    ("get", "secrets/haltgate-pool-db", OTHER, False),
    ("get", "secrets/someone-elses", AGENTS, False),
    ("list", "secrets", AGENTS, False),
    ("update", "secrets/haltgate-admin-token", AGENTS, False),
    ("patch", "pods", AGENTS, True),
    ("update", "pods", AGENTS, False),
    # Cluster-wide reads it needs (watch policies and Deployments, list a policy's pods).
    ("list", "pods", None, True),
    ("get", "namespaces", None, True),
    ("watch", "governancepolicies.haltgate.dev", None, True),
    ("patch", "governancepolicies.haltgate.dev|status", AGENTS, True),
    ("patch", "pods|status", AGENTS, False),
    ("update", "governancepolicies.haltgate.dev", AGENTS, False),
    ("watch", "deployments.apps", None, True),
    # Carrying the opt-in annotation into pod templates: only where namespaces opted in
    # (metadata only, by the admission guard), never a kube-system DaemonSet's image.
    ("patch", "deployments.apps", AGENTS, True),
    ("patch", "daemonsets.apps", AGENTS, True),
    ("patch", "statefulsets.apps", AGENTS, True),
    ("patch", "deployments.apps", "kube-system", False),
    ("patch", "daemonsets.apps", "kube-system", False),
    ("patch", "statefulsets.apps", OTHER, False),
    ("update", "deployments.apps", AGENTS, False),
    # Its own namespace: the webhook TLS Secret, by name.
    ("create", "secrets", RELEASE_NS, True),
    ("get", "secrets/haltgate-webhook-tls", RELEASE_NS, True),
    ("get", "secrets/other", RELEASE_NS, False),
    # The webhook configurations it writes, by name.
    ("update", "mutatingwebhookconfigurations/haltgate-injector", None, True),
    ("update", "mutatingwebhookconfigurations/someone-elses", None, False),
]


def test_can_i_matrix(rbac_cluster: ControlPlane) -> None:
    wrong = [
        (verb, resource, ns or "*", expected)
        for verb, resource, ns, expected in MATRIX
        if can_i(rbac_cluster, verb, resource, ns) is not expected
    ]
    assert not wrong, f"(verb, resource, namespace, expected) answered otherwise: {wrong}"


class Refused(AssertionError):
    pass


def as_operator(kube: ControlPlane) -> Any:
    """CoreV1Api as the operator's ServiceAccount (impersonated). The calls go to the API
    directly: kubectl would read the object first, which the operator may not do."""
    from kubernetes import client

    api = kube.api_client()
    api.set_default_header("Impersonate-User", SA)
    return client.CoreV1Api(api)


def refusal(call: Any) -> str:
    """The apiserver's message when ``call()`` is refused; fails the test if it is not."""
    from kubernetes.client.exceptions import ApiException

    try:
        call()
    except ApiException as e:
        assert e.status in (403, 422), (e.status, e.body)
        return str(json.loads(e.body).get("message", e.body))
    raise Refused("the call was allowed")


def token_secret(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/service-account-token",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {"kubernetes.io/service-account.name": "default"},
        },
    }


IMAGE_PATCH = [{"op": "replace", "path": "/spec/containers/0/image", "value": "evil:1"}]


def make_pod(kube: ControlPlane, namespace: str, name: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [{"name": "c", "image": "good:1"}]},
    }
    eventually(
        lambda: kube.kubectl("create", "-f", "-", input=yaml.safe_dump(pod)).returncode == 0,
        what="pod created (the namespace's default ServiceAccount exists)",
    )


def image_of(kube: ControlPlane, namespace: str, name: str) -> str:
    pod = json.loads(
        kube.kubectl("-n", namespace, "get", "pod", name, "-o", "json", check=True).stdout
    )
    return str(pod["spec"]["containers"][0]["image"])


def test_the_old_escalations_fail(rbac_cluster: ControlPlane) -> None:
    kube = rbac_cluster
    op = as_operator(kube)
    # A token Secret for a kube-system account (then read back: cluster-admin).
    msg = refusal(
        lambda: op.create_namespaced_secret("kube-system", token_secret("kube-system", "steal"))
    )
    assert "forbidden" in msg, msg
    msg = refusal(lambda: op.read_namespaced_secret("steal", "kube-system"))
    assert "forbidden" in msg, msg
    # kube-system ConfigMaps: neither created nor rewritten.
    kube.kubectl("-n", "kube-system", "create", "configmap", "rbacmx-probe", "--from-literal=k=v")
    msg = refusal(
        lambda: op.create_namespaced_config_map(
            "kube-system", {"metadata": {"name": "evil"}, "data": {"k": "v"}}
        )
    )
    assert "forbidden" in msg, msg
    msg = refusal(
        lambda: op.patch_namespaced_config_map(
            "rbacmx-probe", "kube-system", {"data": {"k": "evil"}}
        )
    )
    assert "forbidden" in msg, msg
    # A pod's image outside the agent namespaces.
    make_pod(kube, OTHER, "victim")
    msg = refusal(lambda: op.patch_namespaced_pod("victim", OTHER, IMAGE_PATCH))
    assert "forbidden" in msg, msg
    assert image_of(kube, OTHER, "victim") == "good:1"


def test_admission_guard_inside_agent_namespaces(rbac_cluster: ControlPlane) -> None:
    """Where RBAC must let the operator patch pods and create Secrets, the chart's
    ValidatingAdmissionPolicy keeps it to metadata and to non-token Secrets."""
    kube = rbac_cluster
    op = as_operator(kube)
    make_pod(kube, AGENTS, "agent")

    def image_patch_refused() -> str | None:
        try:
            return refusal(lambda: op.patch_namespaced_pod("agent", AGENTS, IMAGE_PATCH))
        except Refused:  # the apiserver has not loaded the policy yet: undo, try again
            kube.kubectl(
                "-n",
                AGENTS,
                "patch",
                "pod",
                "agent",
                "--type=json",
                "-p",
                json.dumps([{**IMAGE_PATCH[0], "value": "good:1"}]),
                check=True,
            )
            return None

    message = eventually(image_patch_refused, timeout=30, what="image patch refused")
    assert "only the metadata of a pod" in message, message
    assert image_of(kube, AGENTS, "agent") == "good:1"
    # What the operator does there (the halt record annotation) passes.
    op.patch_namespaced_pod(
        "agent",
        AGENTS,
        {"metadata": {"annotations": {"haltgate.dev/halted": '{"GovernancePolicy/p": "drill"}'}}},
    )
    # A token Secret, even under a name it may read back, is refused.
    msg = refusal(
        lambda: op.create_namespaced_secret(AGENTS, token_secret(AGENTS, "haltgate-admin-token"))
    )
    assert "service-account token" in msg, msg
    # Its own Opaque Secrets are fine, and it can read them back.
    op.create_namespaced_secret(
        AGENTS, {"metadata": {"name": "haltgate-ca"}, "data": {"ca.crt": "eA=="}}
    )
    assert op.read_namespaced_secret("haltgate-ca", AGENTS).data == {"ca.crt": "eA=="}


def test_admission_guard_keeps_workload_patches_to_metadata(rbac_cluster: ControlPlane) -> None:
    """Should the operator be granted patch on workloads in an agent namespace (to carry an
    annotation into a pod template), the guard still refuses any change to what runs."""
    from kubernetes import client

    kube = rbac_cluster
    grant = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "workload-patch", "namespace": AGENTS},
        "rules": [
            {"apiGroups": ["apps"], "resources": ["deployments", "daemonsets"], "verbs": ["patch"]}
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "workload-patch", "namespace": AGENTS},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "workload-patch",
        },
        "subjects": [
            {"kind": "ServiceAccount", "name": f"{RELEASE}-haltgate", "namespace": RELEASE_NS}
        ],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "agent", "namespace": AGENTS},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "a"}},
            "template": {
                "metadata": {"labels": {"app": "a"}},
                "spec": {"containers": [{"name": "c", "image": "good:1"}]},
            },
        },
    }
    daemonset = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",  # no replicas field
        "metadata": {"name": "agent", "namespace": AGENTS},
        "spec": {k: v for k, v in deployment["spec"].items() if k != "replicas"},
    }
    res = kube.kubectl(
        "apply", "-f", "-", input=yaml.safe_dump_all([grant, binding, deployment, daemonset])
    )
    assert res.returncode == 0, res.stderr
    api = kube.api_client()
    api.set_default_header("Impersonate-User", SA)
    apps = client.AppsV1Api(api)
    image = [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "evil:1"}]
    for patch in (image, [{"op": "replace", "path": "/spec/replicas", "value": 50}]):
        msg = eventually(
            lambda p=patch: _refused_or_undone(kube, apps, p),
            timeout=30,
            what="workload patch refused",
        )
        assert "only the metadata of a workload" in msg, msg
    # The pod template's annotations may change (what carrying an opt-in does).
    apps.patch_namespaced_deployment(
        "agent",
        AGENTS,
        {"spec": {"template": {"metadata": {"annotations": {"haltgate.dev/inject": "true"}}}}},
    )
    apps.patch_namespaced_daemon_set(
        "agent",
        AGENTS,
        {"spec": {"template": {"metadata": {"annotations": {"haltgate.dev/inject": "true"}}}}},
    )
    dep = json.loads(
        kube.kubectl("-n", AGENTS, "get", "deploy", "agent", "-o", "json", check=True).stdout
    )
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "good:1"
    assert dep["spec"]["replicas"] == 1


def _refused_or_undone(kube: ControlPlane, apps: Any, patch: list[dict[str, Any]]) -> str | None:
    """The refusal's message; None (after putting the Deployment back) if it passed because
    the apiserver had not loaded the policy yet."""
    try:
        return refusal(lambda: apps.patch_namespaced_deployment("agent", AGENTS, patch))
    except Refused:
        kube.kubectl(
            "-n",
            AGENTS,
            "patch",
            "deploy",
            "agent",
            "--type=json",
            "-p",
            json.dumps(
                [
                    {
                        "op": "replace",
                        "path": "/spec/template/spec/containers/0/image",
                        "value": "good:1",
                    },
                    {"op": "replace", "path": "/spec/replicas", "value": 1},
                ]
            ),
            check=True,
        )
        return None
