"""The node agent against the real apiserver, with exactly the chart's RBAC for it: its
watch (field selector spec.nodeName) sees the node-mode pods of its node and no other
node's, it posts its Events on them, and its ServiceAccount can do nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from haltgate.operator import injection, injection_outcome, injection_template, pod_mutation
from haltgate.testbed import binaries
from haltgate.testbed.controlplane import ControlPlane
from haltgate.testbed.process import ManagedProcess, free_port
from tests.operator import test_k8s_restricted as restricted
from tests.operator.conftest import (
    OPERATOR_NAMESPACE,
    REPO,
    OperatorUnderTest,
    apply,
    create,
    eventually,
    kubectl_json,
    service_account_kubeconfig,
)
from tests.operator.test_k8s_restricted import agent_pod, policy, restricted_namespace

pytestmark = pytest.mark.k8s

node_mode_operator = restricted.node_mode_operator
"""The session's operator restarted with injection.redirect: node (a fixture)."""

NODE = "node-a"
RELEASE = "hgnode"
SA = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{RELEASE}-haltgate-node-agent"


def node_agent_rbac() -> list[dict[str, Any]]:
    """The chart's node-agent ServiceAccount, ClusterRole and binding (helm template)."""
    home = Path(tempfile.mkdtemp(prefix="haltgate-helm-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_")}
    env.update(HELM_CACHE_HOME=str(home / "c"), HELM_CONFIG_HOME=str(home / "f"))
    out = subprocess.run(
        [
            str(binaries.require("helm")),
            "template",
            RELEASE,
            str(REPO / "charts" / "haltgate"),
            "--namespace",
            OPERATOR_NAMESPACE,
            "--kube-version",
            "1.34.0",
            "--set",
            "nodeAgent.enabled=true",
            "--show-only",
            "templates/node-agent-rbac.yaml",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**env, "HELM_DATA_HOME": str(home / "d")},
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def agent_kubeconfig(kube: ControlPlane, path: Path) -> Path:
    kube.kubectl("create", "namespace", OPERATOR_NAMESPACE)  # may exist already
    res = kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(node_agent_rbac()))
    assert res.returncode == 0, res.stderr
    name = SA.rsplit(":", 1)[1]
    return service_account_kubeconfig(kube, path, OPERATOR_NAMESPACE, name)


def probe(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def start_agent(kube: ControlPlane, workdir: Path, *extra: str) -> ManagedProcess:
    """``haltgate node agent`` for node-a, with the chart's RBAC only."""
    kubeconfig = agent_kubeconfig(kube, workdir / "kubeconfig")
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env["KUBECONFIG"] = str(kubeconfig)
    return ManagedProcess(
        "haltgate-node-agent",
        [
            str(Path(sys.executable).parent / "haltgate"),
            "node",
            "agent",
            "--node-name",
            NODE,
            "--cluster-dns",
            "10.96.0.10",
            "--pending-grace",
            "0",
            "--health-port",
            str(free_port()),
            *extra,
        ],
        workdir / "node-agent.log",
        env=env,
        cwd=REPO,
    ).start()


@pytest.fixture
def node_agent(kube: ControlPlane, tmp_path: Path) -> Iterator[ManagedProcess]:
    proc = start_agent(kube, tmp_path)
    try:
        yield proc
    finally:
        proc.stop()


def node_mode_pod(namespace: str, name: str, node: str) -> dict[str, Any]:
    """An agent pod as the webhook injects it with injection.redirect: node."""
    out = pod_mutation.mutate_pod(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": "a"}},
            "spec": {"containers": [{"name": "agent", "image": "registry.example/agent:1"}]},
        },
        namespace=namespace,
        namespace_labels={injection.LABEL_NAMESPACE_INJECTION: "enabled"},
        policies=[
            injection_outcome.PolicyRef(name="p", generation=1, selector={"matchLabels": {}})
        ],
        config=injection.InjectionConfig(redirect="node"),
        template=injection_template.InjectionTemplate.load(
            injection_template.default_template_path()
        ),
    )
    assert isinstance(out, injection_outcome.Inject), out
    pod = out.pod
    pod["spec"]["nodeName"] = node
    return pod


def events_of(kube: ControlPlane, namespace: str, pod: str) -> list[dict[str, Any]]:
    listed = kubectl_json(
        kube, "-n", namespace, "get", "events", "--field-selector", f"involvedObject.name={pod}"
    )
    return list(listed["items"])


def test_watch_sees_its_node_only_and_events_land_on_the_pod(
    kube: ControlPlane, kube_namespace: str, node_agent: ManagedProcess
) -> None:
    ns = kube_namespace
    port = int(node_agent.argv[node_agent.argv.index("--health-port") + 1])
    # Ready once it has listed its node's pods (what `kubectl rollout status` waits for).
    eventually(lambda: probe(port, "/readyz") == 200, timeout=30, what="agent ready")
    assert probe(port, "/healthz") == 200
    mine = node_mode_pod(ns, "on-a", NODE)
    theirs = node_mode_pod(ns, "on-b", "node-b")
    plain = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "plain-on-a", "namespace": ns},
        "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "x"}]},
    }
    for doc in (theirs, plain, mine):
        res = create(kube, doc)
        assert res.returncode == 0, res.stderr

    # No process of the pod runs here (no kubelet): the agent says so on the pod.
    found = eventually(
        lambda: [e for e in events_of(kube, ns, "on-a") if e["reason"] == "RedirectPending"],
        timeout=60,
        what="RedirectPending event on the node-a pod",
    )
    event = found[0]
    assert event["type"] == "Warning" and event["source"]["component"] == "haltgate-node-agent"
    assert (
        event["involvedObject"]["uid"]
        == kubectl_json(kube, "-n", ns, "get", "pod", "on-a")["metadata"]["uid"]
    )
    assert NODE in event["message"]
    # The other node's pod and the pod without node-mode injection: nothing.
    assert events_of(kube, ns, "on-b") == []
    assert events_of(kube, ns, "plain-on-a") == []
    log = node_agent.log.read_text()
    assert f"watching {ns}/on-a" in log, log[-3000:]
    assert "on-b" not in log and "plain-on-a" not in log, log[-3000:]
    assert node_agent.alive()


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("list", "pods", True),
        ("watch", "pods", True),
        ("get", "pods", True),
        ("create", "events", True),
        ("patch", "pods", False),
        ("update", "pods/status", False),
        ("create", "pods", False),
        ("delete", "pods", False),
        ("get", "secrets", False),
        ("list", "secrets", False),
        ("get", "configmaps", False),
        ("list", "events", False),
        ("patch", "nodes", False),
        ("create", "pods/exec", False),
    ],
)
def test_node_agent_rbac_is_least_privilege(
    kube: ControlPlane, tmp_path: Path, verb: str, resource: str, allowed: bool
) -> None:
    agent_kubeconfig(kube, tmp_path / "kubeconfig")
    namespace = f"any-{uuid.uuid4().hex[:6]}"
    res = kube.kubectl("auth", "can-i", verb, resource, "-n", namespace, "--as", SA)
    assert res.stdout.strip() == ("yes" if allowed else "no"), (verb, resource, res)


@pytest.mark.netns
def test_restricted_pod_admitted_then_governed_by_the_node_agent(
    kube: ControlPlane,
    kube_namespace: str,
    node_mode_operator: OperatorUnderTest,
    tmp_path: Path,
) -> None:
    """Issue 19 item 1 end to end on one machine: the operator (injection.redirect: node)
    admits the pod into a namespace enforcing Pod Security restricted; its "sandbox" is a
    process in a network namespace and a cgroup carrying the pod's UID; the node agent (a
    separate process, the chart's RBAC, the operator's injection settings) installs the
    rules, the pod's verify step passes, and the Event lands on the pod."""
    from haltgate.testbed import netns as harness
    from tests.netns.conftest import SIDECAR_UID
    from tests.netns.test_node_agent import PodCgroups
    from tests.netns.test_node_apply import LISTENER, _routed, _verify

    reason = harness.skip_reason()
    if reason is not None:
        pytest.skip(reason)
    ns = kube_namespace
    restricted_namespace(kube, ns)
    assert apply(kube, policy(ns)).returncode == 0
    pod = agent_pod(ns)
    pod["spec"]["nodeName"] = NODE
    res = create(kube, pod)
    assert res.returncode == 0, res.stderr  # admitted under enforce=restricted
    admitted = yaml.safe_load(res.stdout)
    assert [c["name"] for c in admitted["spec"]["initContainers"]] == [
        injection.SIDECAR_CONTAINER_NAME,
        injection.VERIFY_CONTAINER_NAME,
    ]
    uid = admitted["metadata"]["uid"]
    agent = start_agent(
        kube, tmp_path, "--injection-config", str(node_mode_operator.workdir / "injection.yaml")
    )
    pod_ns = harness.Netns(f"hg-live-{harness.free_tag()}")
    harness.run(["ip", "netns", "add", pod_ns.name])
    cgroups = PodCgroups()
    sidecar = None
    try:
        pod_ns.run(["ip", "link", "set", "lo", "up"])
        _routed(pod_ns)
        sidecar = pod_ns.popen(
            [sys.executable, "-c", LISTENER, "17001"], uid=SIDECAR_UID, log=tmp_path / "s.log"
        )
        eventually(lambda: "ready" in (tmp_path / "s.log").read_text(), what="sidecar")
        assert _verify(pod_ns).returncode == 1  # not yet: the agent does not know the pod
        cgroups.add(uid, sidecar.pid)
        installed = eventually(
            lambda: [e for e in events_of(kube, ns, "agent") if e["reason"] == "RedirectInstalled"],
            timeout=60,
            what="RedirectInstalled event",
        )
        assert "-> :17001" in installed[0]["message"], installed
        assert "DNS to 10.96.0.10" in installed[0]["message"], installed
        assert installed[0]["involvedObject"]["uid"] == uid
        verified = _verify(pod_ns)
        assert verified.returncode == 0 and "redirect in place" in verified.stdout, verified
        # The operator's settings reached the rules: its admin port is protected.
        saved = pod_ns.run(["iptables", "-S", "HALTGATE_OUTPUT"]).stdout
        assert f"--dport {node_mode_operator.admin_port} -j REJECT" in saved, saved
    finally:
        agent.stop()
        if sidecar is not None:
            sidecar.kill()
            sidecar.wait(timeout=10)
        cgroups.remove()
        pod_ns.delete()
