"""The node agent in the chart (nodeAgent.enabled): a DaemonSet in the release namespace
running `haltgate node agent` with the node's PID namespace and three capabilities, and an
RBAC that reads pods and creates Events, nothing else."""

from __future__ import annotations

from typing import Any

from haltgate.cli.node_watch import agent as agent_command
from tests.chart.conftest import CHART, Helm, find, render

ON = ("--set", "nodeAgent.enabled=true")


def _agent_docs(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["metadata"]["name"].endswith("-node-agent")]


def test_off_by_default(helm: Helm) -> None:
    docs = render(helm)
    assert _agent_docs(docs) == []
    assert not [d for d in docs if d["kind"] == "DaemonSet"]


def test_lint_strict_with_the_node_agent(helm: Helm) -> None:
    helm("lint", "--strict", str(CHART), *ON)
    helm("lint", "--strict", str(CHART), *ON, "--set", "nodeAgent.privileged=true")
    # Node mode without the agent (an installer of one's own): allowed, NOTES warn.
    helm("lint", "--strict", str(CHART), "--set", "injection.redirect=node")


def test_daemonset_runs_the_agent_with_what_it_needs_only(helm: Helm) -> None:
    docs = render(helm, *ON, "--set", "injection.redirect=node")
    ds = find(docs, "DaemonSet", "-node-agent")
    assert ds["metadata"]["namespace"] == "haltgate-system"
    spec = ds["spec"]["template"]["spec"]
    assert spec["hostPID"] is True and spec["hostNetwork"] is False
    assert spec["serviceAccountName"] == "haltgate-node-agent"
    (container,) = spec["containers"]
    assert container["command"] == ["haltgate"] and container["args"][:2] == ["node", "agent"]
    # Every option the chart passes is one the command has.
    known = {o for p in agent_command.params for o in getattr(p, "opts", [])}
    for arg in container["args"][2:]:
        assert arg.split("=", 1)[0] in known, arg
    assert "--health-port=9808" in container["args"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    sc = container["securityContext"]
    assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {
        "drop": ["ALL"],
        "add": ["NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"],
    }
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    # The same injection settings and template as the operator (one ConfigMap).
    volumes = {v["name"]: v for v in spec["volumes"]}
    configmap = find(docs, "ConfigMap", "-injection")["metadata"]["name"]
    assert volumes["injection"]["configMap"]["name"] == configmap
    assert "--injection-config=/etc/haltgate/injection/injection-config.yaml" in container["args"]
    operator = find(docs, "Deployment", "-operator")["spec"]["template"]["metadata"]
    annotations = ds["spec"]["template"]["metadata"]["annotations"]
    assert annotations["checksum/injection"] == operator["annotations"]["checksum/injection"]
    # Covers every node by default: a node-mode pod on a tainted node needs it too.
    assert {"operator": "Exists"} in spec["tolerations"]
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}


def test_privileged_switch(helm: Helm) -> None:
    ds = find(render(helm, *ON, "--set", "nodeAgent.privileged=true"), "DaemonSet")
    sc = ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    assert sc["privileged"] is True and "capabilities" not in sc


def test_cluster_dns_and_backend_are_passed(helm: Helm) -> None:
    docs = render(
        helm,
        *ON,
        "--set",
        "nodeAgent.clusterDNS={10.96.0.10,fd00::a}",
        "--set",
        "nodeAgent.iptablesBackend=legacy",
    )
    args = find(docs, "DaemonSet")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--cluster-dns=10.96.0.10" in args and "--cluster-dns=fd00::a" in args
    assert "--backend=legacy" in args


def test_rbac_reads_pods_and_creates_events_only(helm: Helm) -> None:
    docs = render(helm, *ON)
    role = find(docs, "ClusterRole", "-node-agent")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]
    binding = find(docs, "ClusterRoleBinding", "-node-agent")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "haltgate-node-agent", "namespace": "haltgate-system"}
    ]
    # Nothing else names the agent's ServiceAccount (no Role, no other binding).
    others = [
        d
        for d in docs
        if d["kind"] in ("RoleBinding", "ClusterRoleBinding")
        and d is not binding
        and any(s.get("name") == "haltgate-node-agent" for s in d.get("subjects") or [])
    ]
    assert others == []


def test_bad_values_fail_the_install(helm: Helm) -> None:
    for override in (
        "nodeAgent.enable=true",
        "nodeAgent.iptablesBackend=ebpf",
        "nodeAgent.pendingGraceSeconds=-1",
        "nodeAgent.resyncSeconds=0",
        "nodeAgent.clusterDNS={not-an-ip}",
    ):
        res = helm(
            "template", "t", str(CHART), "--kube-version", "1.34.0", "--set", override, check=False
        )
        assert res.returncode != 0, override
