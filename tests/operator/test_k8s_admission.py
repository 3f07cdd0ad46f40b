"""The operator against the real kube-apiserver: the apiserver calls its webhooks over HTTPS.

No kubelet: pods stay Pending, so each test reads the stored pod back from the API.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from haltgate.operator import injection
from haltgate.testbed.controlplane import ControlPlane
from tests.operator.conftest import (
    OperatorUnderTest,
    apply,
    budget_pool,
    create,
    eventually,
    injected_deployment,
    kubectl_json,
)

pytestmark = pytest.mark.k8s


def policy(namespace: str, name: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "haltgate.dev/v1alpha1",
        "kind": "GovernancePolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec
        if spec is not None
        else {"selector": {"matchLabels": {"app": "agent"}}, "budgets": {"calls": {"limit": 100}}},
    }


def pod(
    namespace: str,
    name: str,
    *,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": annotations or {},
            "labels": labels if labels is not None else {"app": "agent"},
        },
        "spec": {"containers": [{"name": "agent", "image": "example.com/agent:1"}], **spec},
    }


def opted_in(namespace: str, name: str, **kw: Any) -> dict[str, Any]:
    return pod(namespace, name, annotations={injection.ANNOTATION_INJECT: "true"}, **kw)


def names(containers: list[dict[str, Any]] | None) -> list[str]:
    return [c["name"] for c in containers or []]


@pytest.fixture
def governed_ns(
    kube: ControlPlane, kube_namespace: str, operator_running: OperatorUnderTest
) -> str:
    """A namespace with one valid policy for app=agent (applied through the webhook)."""
    res = apply(kube, policy(kube_namespace, "research"))
    assert res.returncode == 0, res.stderr
    return kube_namespace


def test_opted_in_pod_is_injected(kube: ControlPlane, governed_ns: str) -> None:
    res = create(kube, opted_in(governed_ns, "agent-1"))
    assert res.returncode == 0, res.stderr
    stored = kubectl_json(kube, "-n", governed_ns, "get", "pod", "agent-1")
    spec = stored["spec"]
    assert names(spec["initContainers"]) == [
        injection.INIT_CONTAINER_NAME,
        injection.SIDECAR_CONTAINER_NAME,
    ]
    sidecar = spec["initContainers"][1]
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["securityContext"]["runAsUser"] == 17337
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
    assert sidecar["args"][:3] == ["sidecar", "--policy", injection.POLICY_FILE]
    init = spec["initContainers"][0]
    assert sorted(init["securityContext"]["capabilities"]["add"]) == ["NET_ADMIN", "NET_RAW"]
    assert init["args"][:4] == ["iptables", "apply", "--proxy-uid", "17337"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes[injection.VOLUME_POLICY]["configMap"]["name"] == "haltgate-policy-research"
    assert volumes[injection.VOLUME_ADMIN_TOKEN]["secret"]["secretName"]
    agent = spec["containers"][0]
    env = {e["name"]: e.get("value") for e in agent["env"]}
    assert env["SSL_CERT_FILE"] == env["REQUESTS_CA_BUNDLE"]
    assert "NODE_EXTRA_CA_CERTS" in env and "HTTPS_PROXY" not in env
    # The admin token is mounted only into the sidecar.
    assert all(m["name"] != injection.VOLUME_ADMIN_TOKEN for m in agent.get("volumeMounts") or [])
    record = json.loads(stored["metadata"]["annotations"][injection.ANNOTATION_INJECTED])
    assert record["policy"] == "research" and record["policyGeneration"] == 1
    assert stored["metadata"]["labels"][injection.LABEL_POLICY] == "research"


def test_pod_without_opt_in_is_untouched(
    kube: ControlPlane, governed_ns: str, operator_running: OperatorUnderTest
) -> None:
    before = operator_running.metric("haltgate_operator_admission_total", webhook="inject")
    res = create(kube, pod(governed_ns, "plain"))
    assert res.returncode == 0, res.stderr
    stored = kubectl_json(kube, "-n", governed_ns, "get", "pod", "plain")
    assert "initContainers" not in stored["spec"]
    assert injection.ANNOTATION_INJECTED not in (stored["metadata"].get("annotations") or {})
    # matchConditions kept it away from the webhook altogether.
    assert operator_running.metric("haltgate_operator_admission_total", webhook="inject") == before


def test_namespace_label_and_explicit_opt_out(kube: ControlPlane, governed_ns: str) -> None:
    kube.kubectl(
        "label",
        "namespace",
        governed_ns,
        f"{injection.LABEL_NAMESPACE_INJECTION}=enabled",
        check=True,
    )
    res = create(
        kube, pod(governed_ns, "by-label", annotations={injection.ANNOTATION_MODE: "explicit"})
    )
    assert res.returncode == 0, res.stderr
    stored = kubectl_json(kube, "-n", governed_ns, "get", "pod", "by-label")
    assert injection.SIDECAR_CONTAINER_NAME in names(stored["spec"].get("initContainers"))
    env = {e["name"]: e.get("value") for e in stored["spec"]["containers"][0]["env"]}
    assert env["HTTPS_PROXY"] == "http://127.0.0.1:17000"

    res = create(
        kube, pod(governed_ns, "opted-out", annotations={injection.ANNOTATION_INJECT: "false"})
    )
    assert res.returncode == 0, res.stderr
    stored = kubectl_json(kube, "-n", governed_ns, "get", "pod", "opted-out")
    assert "initContainers" not in stored["spec"]


@pytest.mark.parametrize(
    ("spec", "code", "path"),
    [
        ({"hostNetwork": True}, "host_network", "spec.hostNetwork"),
        ({"shareProcessNamespace": True}, "share_process_namespace", "spec.shareProcessNamespace"),
        (
            {"securityContext": {"runAsUser": 17337}},
            "agent_runs_as_proxy_uid",
            "spec.securityContext.runAsUser",
        ),
        (
            {
                "containers": [
                    {
                        "name": "agent",
                        "image": "x",
                        "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}},
                    }
                ]
            },
            "agent_net_capability",
            "spec.containers[0].securityContext.capabilities.add",
        ),
    ],
)
def test_forbidden_pod_specs_refused(
    kube: ControlPlane, governed_ns: str, spec: dict[str, Any], code: str, path: str
) -> None:
    res = create(kube, opted_in(governed_ns, "bad", **spec))
    assert res.returncode != 0
    assert f"({code})" in res.stderr and path in res.stderr, res.stderr
    assert kube.kubectl("-n", governed_ns, "get", "pod", "bad").returncode != 0


def test_opted_in_pod_without_policy_refused(
    kube: ControlPlane, kube_namespace: str, operator_running: OperatorUnderTest
) -> None:
    res = create(kube, opted_in(kube_namespace, "lonely"))
    assert res.returncode != 0
    assert "no_policy" in res.stderr and "must not start ungoverned" in res.stderr


def test_invalid_policy_refused_with_field_paths(
    kube: ControlPlane, kube_namespace: str, operator_running: OperatorUnderTest
) -> None:
    bad = policy(
        kube_namespace,
        "bad",
        {
            "budgets": {"tokens": {}},
            "opa": {"rego": "package x", "configMapRef": {"name": "a", "key": "b"}},
            "tools": {
                "rules": [{"name": "r", "action": "allow", "kind": "http", "models": ["gpt-4o"]}]
            },
        },
    )
    res = apply(kube, bad)
    assert res.returncode != 0
    assert "spec.budgets.tokens: set at least one of limit, input, output" in res.stderr
    assert "spec.opa: set exactly one of rego, configMapRef" in res.stderr
    assert "spec.tools.rules[0].models" in res.stderr
    assert kube.kubectl("-n", kube_namespace, "get", "govpol", "bad").returncode != 0


def test_policy_warning_is_an_admission_warning(
    kube: ControlPlane, kube_namespace: str, operator_running: OperatorUnderTest
) -> None:
    res = apply(kube, policy(kube_namespace, "everyone", {"budgets": {"calls": {"limit": 5}}}))
    assert res.returncode == 0, res.stderr
    assert "Warning: spec.selector: empty selector" in res.stderr


def test_flow_values_action_through_the_apiserver(
    kube: ControlPlane, kube_namespace: str, operator_running: OperatorUnderTest
) -> None:
    """The CRD schema and the webhook admit ``deny-untrusted-values``; a misspelt action
    is refused with the field path."""
    rule = {
        "name": "inbox-values",
        "sources": [{"mcpServers": ["mail"], "mcpTools": ["read_email"]}],
        "sinks": [{"mcpServers": ["mail"], "mcpTools": ["send_email"]}],
        "action": "deny-untrusted-values",
    }
    res = apply(kube, policy(kube_namespace, "mail-values", {"flows": [rule]}))
    assert res.returncode == 0, res.stderr
    bad = policy(kube_namespace, "mail-typo", {"flows": [{**rule, "action": "deny-values"}]})
    res = apply(kube, bad)
    assert res.returncode != 0
    assert "spec.flows[0].action" in res.stderr


def test_valid_policy_gets_ready_status_and_config_map(
    kube: ControlPlane, governed_ns: str
) -> None:
    def ready() -> dict[str, Any] | None:
        obj = kubectl_json(kube, "-n", governed_ns, "get", "govpol", "research")
        status = obj.get("status") or {}
        return status if status.get("ready") else None

    status = eventually(ready, what="policy Ready")
    assert status["observedGeneration"] == 1
    conds = {c["type"]: c["status"] for c in status["conditions"]}
    assert conds == {"Valid": "True", "Ready": "True"}
    cm = kubectl_json(kube, "-n", governed_ns, "get", "configmap", "haltgate-policy-research")
    doc = cm["data"]["policy.yaml"]
    assert "kind: GovernancePolicy" in doc and "limit: 100" in doc
    assert cm["metadata"]["ownerReferences"][0]["kind"] == "GovernancePolicy"
    # The namespace got the Secrets injected pods mount.
    kube.kubectl(
        "-n", governed_ns, "get", "secret", "haltgate-admin-token", "haltgate-ca", check=True
    )
    bundle = kubectl_json(kube, "-n", governed_ns, "get", "configmap", "haltgate-ca-bundle")
    assert "BEGIN CERTIFICATE" in bundle["data"]["haltgate-ca.crt"]


def test_policy_update_rerenders_config_map(kube: ControlPlane, governed_ns: str) -> None:
    updated = policy(governed_ns, "research")
    updated["spec"]["budgets"]["calls"]["limit"] = 7

    def limit_is_7() -> bool:
        cm = kubectl_json(kube, "-n", governed_ns, "get", "configmap", "haltgate-policy-research")
        return "limit: 7" in cm["data"]["policy.yaml"]

    eventually(
        lambda: (
            kube.kubectl(
                "-n", governed_ns, "get", "configmap", "haltgate-policy-research"
            ).returncode
            == 0
        ),
        what="ConfigMap rendered",
    )
    assert apply(kube, updated).returncode == 0
    eventually(limit_is_7, what="ConfigMap re-rendered")
    obj = kubectl_json(kube, "-n", governed_ns, "get", "govpol", "research")
    eventually(
        lambda: (
            (
                kubectl_json(kube, "-n", governed_ns, "get", "govpol", "research").get("status")
                or {}
            ).get("observedGeneration")
            == 2
        ),
        what="observedGeneration 2",
    )
    assert obj["metadata"]["generation"] == 2


def test_operator_down_fails_closed_for_opted_in_pods_only(
    kube: ControlPlane, governed_ns: str, operator_running: OperatorUnderTest
) -> None:
    operator_running.stop()
    try:
        res = create(kube, pod(governed_ns, "ordinary"))
        assert res.returncode == 0, res.stderr
        res = create(kube, opted_in(governed_ns, "agent-while-down"))
        assert res.returncode != 0
        assert 'failed calling webhook "annotated.inject.haltgate.dev"' in res.stderr, res.stderr
        assert kube.kubectl("-n", governed_ns, "get", "pod", "agent-while-down").returncode
    finally:
        operator_running.start()
    res = create(kube, opted_in(governed_ns, "agent-after"))
    assert res.returncode == 0, res.stderr


def test_deployment_pods_are_injected_and_counted(
    kube_workloads: ControlPlane, governed_ns: str
) -> None:
    kube = kube_workloads
    deployment = injected_deployment(governed_ns, "researcher", replicas=2)
    assert apply(kube, deployment).returncode == 0

    def injected_pods() -> list[dict[str, Any]] | None:
        pods = kubectl_json(kube, "-n", governed_ns, "get", "pods", "-l", "app=agent")["items"]
        done = [
            p
            for p in pods
            if injection.SIDECAR_CONTAINER_NAME in names(p["spec"].get("initContainers"))
        ]
        return done if len(done) == 2 else None

    pods = eventually(injected_pods, timeout=30, what="two injected Deployment pods")
    assert all(p["metadata"]["labels"][injection.LABEL_POLICY] == "research" for p in pods)
    eventually(
        lambda: (
            (
                kubectl_json(kube, "-n", governed_ns, "get", "govpol", "research").get("status")
                or {}
            ).get("matchedWorkloads")
            == 1
        ),
        timeout=30,
        what="matchedWorkloads 1",
    )


def test_pool_status_and_no_finalizers(kube: ControlPlane, governed_ns: str) -> None:
    pool = budget_pool(governed_ns, "shared", {"costUSD": {"limit": 50}})
    assert apply(kube, pool).returncode == 0
    member = policy(
        governed_ns, "member", {"selector": {"matchLabels": {"app": "other"}}, "pool": "shared"}
    )
    assert apply(kube, member).returncode == 0

    def pool_status() -> dict[str, Any] | None:
        st = kubectl_json(kube, "-n", governed_ns, "get", "budgetpool", "shared").get("status")
        return st if st and st.get("members") == 1 else None

    status = eventually(pool_status, timeout=20, what="pool members 1")
    assert status["state"] == "Active"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Valid": "True",
        "Ready": "True",
    }
    # Nothing blocks deleting haltgate objects, even with the operator down.
    for kind, name in (("govpol", "research"), ("govpol", "member"), ("budgetpool", "shared")):
        obj = kubectl_json(kube, "-n", governed_ns, "get", kind, name)
        assert not obj["metadata"].get("finalizers"), obj["metadata"]


def test_missing_rego_config_map_sets_not_ready_and_warns(
    kube: ControlPlane, kube_namespace: str, operator_running: OperatorUnderTest
) -> None:
    pol = policy(
        kube_namespace,
        "rego",
        {
            "selector": {"matchLabels": {"app": "agent"}},
            "opa": {"configMapRef": {"name": "missing-rules", "key": "main.rego"}},
        },
    )
    assert apply(kube, pol).returncode == 0

    def not_ready() -> dict[str, Any] | None:
        st = kubectl_json(kube, "-n", kube_namespace, "get", "govpol", "rego").get("status")
        return st if st and st.get("ready") is False else None

    status = eventually(not_ready, what="Ready False")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "RegoNotFound" and "missing-rules" in ready["message"]
    events = eventually(
        lambda: [
            e
            for e in kubectl_json(kube, "-n", kube_namespace, "get", "events")["items"]
            if e["reason"] == "RegoNotFound"
        ],
        what="Warning event",
    )
    assert events[0]["type"] == "Warning"
    assert events[0]["involvedObject"]["kind"] == "GovernancePolicy"


def test_injected_pod_updates_cannot_weaken_enforcement(
    kube: ControlPlane, governed_ns: str
) -> None:
    assert create(kube, opted_in(governed_ns, "agent-u")).returncode == 0
    ns = ("-n", governed_ns)
    # The agent's image may change; haltgate's containers may not.
    res = kube.kubectl(*ns, "set", "image", "pod/agent-u", "agent=example.com/agent:2")
    assert res.returncode == 0, res.stderr
    res = kube.kubectl(
        *ns,
        "set",
        "image",
        "pod/agent-u",
        f"{injection.SIDECAR_CONTAINER_NAME}=example.com/no-op:1",
    )
    assert res.returncode != 0
    assert "haltgate_container_changed" in res.stderr, res.stderr

    def debug(name: str, caps: list[str], target: str = "agent") -> Any:
        patch = {
            "spec": {
                "ephemeralContainers": [
                    {
                        "name": name,
                        "image": "busybox",
                        "targetContainerName": target,
                        "securityContext": {"capabilities": {"add": caps}},
                    }
                ]
            }
        }
        return kube.kubectl(
            *ns,
            "patch",
            "pod",
            "agent-u",
            "--subresource=ephemeralcontainers",
            "--type=strategic",
            "-p",
            json.dumps(patch),
        )

    res = debug("dbg-net", ["NET_ADMIN"])
    assert res.returncode != 0
    assert "agent_net_capability" in res.stderr and "spec.ephemeralContainers[0]" in res.stderr
    res = debug("dbg-proxy", [], target=injection.SIDECAR_CONTAINER_NAME)
    assert res.returncode != 0 and "ephemeral_targets_haltgate" in res.stderr, res.stderr
    res = debug("dbg-ok", ["SYS_PTRACE"])
    assert res.returncode == 0, res.stderr


def test_opa_and_pool_pieces_pass_apiserver_validation(
    kube: ControlPlane, kube_namespace: str, operator_running: OperatorUnderTest
) -> None:
    ns = kube_namespace
    assert (
        apply(
            kube,
            budget_pool(ns, "shared", {"calls": {"limit": 10}}),
        ).returncode
        == 0
    )
    res = apply(
        kube,
        policy(
            ns,
            "rego",
            {
                "selector": {"matchLabels": {"app": "agent"}},
                "pool": "shared",
                "opa": {"rego": 'package haltgate\n\ndecision := {"allow": true}\n'},
            },
        ),
    )
    assert res.returncode == 0, res.stderr
    res = create(kube, opted_in(ns, "planner"))
    assert res.returncode == 0, res.stderr
    spec = kubectl_json(kube, "-n", ns, "get", "pod", "planner")["spec"]
    assert names(spec["initContainers"]) == [
        injection.INIT_CONTAINER_NAME,
        injection.SIDECAR_CONTAINER_NAME,
        injection.OPA_CONTAINER_NAME,
    ]
    opa = spec["initContainers"][2]
    assert opa["restartPolicy"] == "Always" and opa["securityContext"]["runAsUser"] == 17338
    env = {e["name"]: e for e in spec["initContainers"][1]["env"]}
    assert env["HALTGATE_OPA_URL"]["value"] == "http://127.0.0.1:8181"
    assert env["HALTGATE_POOL_DSN"]["valueFrom"]["secretKeyRef"]["name"] == "haltgate-pool-db"
