"""External halts end to end: ``kubectl annotate govpol X haltgate.dev/halt=...`` reaches a
real ``haltgate sidecar`` (started by the test, outside the cluster) through its admin API,
and the agent's next call is refused with failure type EXTERNAL; removing the annotation
lifts it.

The sidecar runs with the policy file the operator rendered (from the ConfigMap) and the
admin token the operator created (from the Secret). The pod's IP is set to 127.0.0.1 through
the status subresource, since no kubelet runs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from haltgate.operator import halts
from haltgate.testbed.cli_processes import standin_process
from haltgate.testbed.controlplane import ControlPlane
from haltgate.testbed.process import ManagedProcess, free_port, port_open, wait_until
from tests.operator.conftest import (
    REPO,
    OperatorUnderTest,
    apply,
    budget_pool,
    create,
    eventually,
    injected_deployment,
    injected_pod,
    kubectl_json,
)
from tests.pool.helpers import fresh_pool_database

pytestmark = pytest.mark.k8s
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


def call(url: str) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        url,
        data=json.dumps(CHAT).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@pytest.fixture
def llm_standin(tmp_path: Path) -> Iterator[str]:
    with standin_process("llm", tmp_path / "llm.log", cwd=REPO) as url:
        yield url


def governed_policy(ns: str, llm_url: str) -> dict[str, Any]:
    return {
        "apiVersion": "haltgate.dev/v1alpha1",
        "kind": "GovernancePolicy",
        "metadata": {"name": "research", "namespace": ns},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "upstreams": [{"name": "llm", "url": llm_url, "kind": "llm", "provider": "openai"}],
            "budgets": {"calls": {"limit": 1000}},
            "pricing": {"unknownModel": "default", "default": {"input": 1.0, "output": 2.0}},
            "tools": {
                "default": "deny",
                "rules": [{"name": "llm", "action": "allow", "kind": "llm"}],
            },
        },
    }


def give_pod_loopback_ip(kube: ControlPlane, ns: str, pod: str) -> None:
    """No kubelet: play its part and report the pod running on 127.0.0.1."""
    kube.kubectl(
        "-n",
        ns,
        "patch",
        "pod",
        pod,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(
            {"status": {"phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}]}}
        ),
        check=True,
    )


def start_agent_pod(kube: ControlPlane, ns: str, name: str, *, with_ip: bool = True) -> None:
    """Create an opted-in agent pod (injected by the operator); ``with_ip``: report it
    running on 127.0.0.1 at once."""
    res = create(kube, injected_pod(ns, name))
    assert res.returncode == 0, res.stderr
    if with_ip:
        give_pod_loopback_ip(kube, ns, name)


def annotate_halt(
    kube: ControlPlane, ns: str, resource: str, name: str, reason: str | None
) -> None:
    """``kubectl annotate RESOURCE NAME haltgate.dev/halt=REASON`` (None: remove it)."""
    value = (
        f"{halts.ANNOTATION_HALT}={reason}" if reason is not None else f"{halts.ANNOTATION_HALT}-"
    )
    kube.kubectl("-n", ns, "annotate", resource, name, value, check=True)


def pod_annotations(kube: ControlPlane, ns: str, pod: str) -> dict[str, str]:
    return kubectl_json(kube, "-n", ns, "get", "pod", pod)["metadata"].get("annotations") or {}


@contextlib.contextmanager
def running_sidecar(
    kube: ControlPlane, ns: str, pod: str, admin: int, tmp_path: Path, extra: tuple[str, ...] = ()
) -> Iterator[str]:
    """``haltgate sidecar`` with the operator's rendered policy and admin token; yields the
    agent's LLM URL (explicit mode alias)."""
    eventually(
        lambda: (
            kube.kubectl("-n", ns, "get", "configmap", "haltgate-policy-research").returncode == 0
        ),
        what="policy ConfigMap",
    )
    cm_obj = kubectl_json(kube, "-n", ns, "get", "configmap", "haltgate-policy-research")
    (tmp_path / "policy.yaml").write_text(cm_obj["data"]["policy.yaml"])
    secret = eventually(
        lambda: (
            kube.kubectl("-n", ns, "get", "secret", "haltgate-admin-token", "-o", "json").stdout
            or None
        ),
        what="token Secret",
    )
    (tmp_path / "token").write_bytes(base64.b64decode(json.loads(secret)["data"]["token"]))
    explicit = free_port()
    sidecar = ManagedProcess(
        "haltgate-sidecar",
        [
            str(Path(sys.executable).parent / "haltgate"),
            "sidecar",
            "--policy",
            str(tmp_path / "policy.yaml"),
            "--admin-token-file",
            str(tmp_path / "token"),
            "--state-dir",
            str(tmp_path / "state"),
            "--mode",
            "explicit",
            "--listen",
            f"127.0.0.1:{explicit}",
            "--admin-listen",
            f"127.0.0.1:{admin}",
            "--metrics-listen",
            f"127.0.0.1:{free_port()}",
            "--agent-namespace",
            ns,
            "--agent-pod",
            pod,
            *extra,
        ],
        tmp_path / "sidecar.log",
        # The default event loop (uvloop), as in a pod.
        env={k: v for k, v in os.environ.items() if k != "HALTGATE_NO_UVLOOP"},
        cwd=REPO,
    ).start()
    try:
        wait_until(
            lambda: port_open("127.0.0.1", admin) and port_open("127.0.0.1", explicit),
            timeout=30,
            what="haltgate sidecar",
            log=tmp_path / "sidecar.log",
            alive=sidecar.alive,
        )
        yield f"http://127.0.0.1:{explicit}/llm/v1/chat/completions"
    finally:
        sidecar.stop()


def admin_get(port: int, path: str, token_file: Path) -> dict[str, Any]:
    """GET on the sidecar's admin API with the token the operator created."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        headers={"Authorization": f"Bearer {token_file.read_text().strip()}"},
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        body: dict[str, Any] = json.loads(r.read())
    return body


def refused(url: str) -> tuple[int, dict[str, Any]] | None:
    status, body = call(url)
    return (status, body) if status != 200 else None


def test_halt_annotation_reaches_running_sidecar(
    kube: ControlPlane,
    kube_namespace: str,
    operator_running: OperatorUnderTest,
    llm_standin: str,
    tmp_path: Path,
) -> None:
    ns = kube_namespace
    assert apply(kube, governed_policy(ns, llm_standin)).returncode == 0
    start_agent_pod(kube, ns, "agent-h")

    admin = operator_running.admin_port
    with running_sidecar(kube, ns, "agent-h", admin, tmp_path) as url:
        for _ in range(3):
            status, _ = call(url)
            assert status == 200
        run_id = admin_get(admin, "/status", tmp_path / "token")["agent"]["run_id"]

        started = time.monotonic()
        annotate_halt(kube, ns, "govpol", "research", "incident 42")
        status, body = eventually(
            lambda: refused(url), timeout=15, interval=0.02, what="call refused"
        )
        latency = time.monotonic() - started
        print(f"\nannotate -> refused call: {latency * 1000:.0f} ms (incl. kubectl start-up)")
        assert "EXTERNAL" in json.dumps(body), body

        # Recorded on the pod (written just after the sidecar answered) and in the status.
        raw = eventually(
            lambda: pod_annotations(kube, ns, "agent-h").get(halts.ANNOTATION_HALTED),
            timeout=15,
            what="halt record",
        )
        assert json.loads(raw) == {"GovernancePolicy/research": "incident 42"}
        eventually(
            lambda: (
                (kubectl_json(kube, "-n", ns, "get", "govpol", "research").get("status") or {}).get(
                    "haltedAgents"
                )
                == 1
                or None
            ),
            what="haltedAgents 1",
        )

        # Removing the annotation lifts the halt (POST /lift): calls pass again, and the
        # run goes on with its id and its spend (issue 16: it used to be a reset, which
        # handed every agent of the policy a fresh budget after each halt drill).
        annotate_halt(kube, ns, "govpol", "research", None)
        eventually(
            lambda: call(url)[0] == 200, timeout=15, interval=0.05, what="call allowed after lift"
        )
        # The operator writes the pod's record right after the sidecar answered the lift.
        eventually(
            lambda: halts.ANNOTATION_HALTED not in pod_annotations(kube, ns, "agent-h"),
            timeout=15,
            what="halt record removed from the pod",
        )
        assert admin_get(admin, "/status", tmp_path / "token")["agent"]["run_id"] == run_id
        used = admin_get(admin, "/budgets", tmp_path / "token")["budget"]["calls"]["used"]
        assert used >= 4, used  # 3 before the halt, 1 after the lift: nothing forgotten
        assert (
            operator_running.metric(
                "haltgate_operator_halt_deliveries_total", action="lift", result="ok"
            )
            >= 1
        )


def test_deployment_halt_annotation(
    kube_workloads: ControlPlane,
    kube_namespace: str,
    operator_running: OperatorUnderTest,
    llm_standin: str,
    tmp_path: Path,
) -> None:
    kube, ns = kube_workloads, kube_namespace
    assert apply(kube, governed_policy(ns, llm_standin)).returncode == 0
    deployment = injected_deployment(ns, "researcher")
    assert apply(kube, deployment).returncode == 0
    pods = eventually(
        lambda: kubectl_json(kube, "-n", ns, "get", "pods", "-l", "app=agent")["items"],
        timeout=30,
        what="pod",
    )
    name = pods[0]["metadata"]["name"]
    give_pod_loopback_ip(kube, ns, name)

    with running_sidecar(kube, ns, name, operator_running.admin_port, tmp_path) as url:
        assert call(url)[0] == 200
        annotate_halt(kube, ns, "deploy", "researcher", "runaway loop")
        _status, body = eventually(
            lambda: refused(url), timeout=15, interval=0.05, what="call refused"
        )
        assert "EXTERNAL" in json.dumps(body), body
        raw = eventually(
            lambda: pod_annotations(kube, ns, name).get(halts.ANNOTATION_HALTED),
            timeout=15,
            what="halt record",
        )
        assert json.loads(raw) == {"Deployment/researcher": "runaway loop"}
        annotate_halt(kube, ns, "deploy", "researcher", None)
        eventually(
            lambda: call(url)[0] == 200, timeout=15, interval=0.05, what="call allowed after lift"
        )
    # haltgate wrote nothing to the user's Deployment.
    dep = kubectl_json(kube, "-n", ns, "get", "deploy", "researcher")
    assert not dep["metadata"].get("finalizers")


@pytest.fixture
def pool_database(postgres_dsn: str) -> Iterator[str]:
    """A fresh database with the pool schema (the sidecar refuses pool calls without one)."""
    with fresh_pool_database(postgres_dsn, "hgop_") as dsn:
        yield dsn


def test_pool_halt_annotation_halts_member_agents(
    kube: ControlPlane,
    kube_namespace: str,
    operator_running: OperatorUnderTest,
    llm_standin: str,
    pool_database: str,
    tmp_path: Path,
) -> None:
    from haltgate.governance.policy import BudgetPoolSpec
    from haltgate.governance.pool.store import PoolStore, pool_key

    ns = kube_namespace
    pool = budget_pool(ns, "shared", {"costUSD": {"limit": 100}})
    assert apply(kube, pool).returncode == 0

    async def upsert() -> None:
        store = await PoolStore.connect(pool_database)
        try:
            await store.upsert(pool_key(ns, "shared"), BudgetPoolSpec.model_validate(pool["spec"]))
        finally:
            await store.close()

    asyncio.run(upsert())
    pol = governed_policy(ns, llm_standin)
    pol["spec"]["pool"] = "shared"
    assert apply(kube, pol).returncode == 0
    start_agent_pod(kube, ns, "member")
    with running_sidecar(
        kube, ns, "member", operator_running.admin_port, tmp_path, ("--pool-dsn", pool_database)
    ) as url:
        assert call(url)[0] == 200
        annotate_halt(kube, ns, "budgetpool", "shared", "cascade")
        _status, body = eventually(
            lambda: refused(url), timeout=15, interval=0.05, what="call refused"
        )
        assert "EXTERNAL" in json.dumps(body), body
        st = eventually(
            lambda: (
                (
                    kubectl_json(kube, "-n", ns, "get", "budgetpool", "shared").get("status") or {}
                ).get("state")
                == "Halted"
                or None
            ),
            what="pool Halted",
        )
        assert st
        annotate_halt(kube, ns, "budgetpool", "shared", None)
        eventually(
            lambda: call(url)[0] == 200, timeout=15, interval=0.05, what="call allowed after lift"
        )


def _status(kube: ControlPlane, ns: str) -> dict[str, Any]:
    return kubectl_json(kube, "-n", ns, "get", "govpol", "research").get("status") or {}


def _events(kube: ControlPlane, ns: str, kind: str, name: str) -> list[dict[str, Any]]:
    items = kubectl_json(kube, "-n", ns, "get", "events")["items"]
    return [
        e
        for e in items
        if e["involvedObject"].get("kind") == kind and e["involvedObject"].get("name") == name
    ]


def policy_events(kube: ControlPlane, ns: str, reason: str) -> list[dict[str, Any]]:
    """The Events of reason ``reason`` on GovernancePolicy ``research``."""
    return [e for e in _events(kube, ns, "GovernancePolicy", "research") if e["reason"] == reason]


def test_budget_halt_shows_in_status_and_events(
    kube: ControlPlane,
    kube_namespace: str,
    operator_running: OperatorUnderTest,
    llm_standin: str,
    tmp_path: Path,
) -> None:
    """A halt the sidecar decides itself (EXHAUSTION) shows in status.halts with its type,
    counts in haltedAgents, and is an Event on the policy and on the pod (its workload)."""
    ns = kube_namespace
    policy = governed_policy(ns, llm_standin)
    policy["spec"]["budgets"] = {"calls": {"limit": 1}}
    assert apply(kube, policy).returncode == 0
    start_agent_pod(kube, ns, "agent-b")
    with running_sidecar(kube, ns, "agent-b", operator_running.admin_port, tmp_path) as url:
        assert call(url)[0] == 200
        status, body = call(url)
        assert status != 200 and "EXHAUSTION" in json.dumps(body), body
        st = eventually(
            lambda: (s := _status(kube, ns)).get("haltedAgents") == 1 and s,
            timeout=30,
            what="haltedAgents 1",
        )
        (entry,) = st["halts"]
        assert entry["pod"] == "agent-b" and entry["failureType"] == "EXHAUSTION"
        assert entry["source"] == "sidecar" and entry["state"] == "Halted"
        assert entry["workload"] == "Pod/agent-b"
        printed = kube.kubectl("-n", ns, "get", "govpol", "research", check=True).stdout
        assert printed.splitlines()[1].split()[3] == "1", printed  # the HALTED column
        on_policy = eventually(
            lambda: policy_events(kube, ns, "Halted"),
            what="policy Event",
        )
        assert "EXHAUSTION" in on_policy[0]["message"]
        on_pod = eventually(
            lambda: [e for e in _events(kube, ns, "Pod", "agent-b") if e["reason"] == "Halted"],
            what="pod Event",
        )
        assert (
            on_pod[0]["involvedObject"]["uid"]
            == kubectl_json(kube, "-n", ns, "get", "pod", "agent-b")["metadata"]["uid"]
        )


def test_pending_halt_shows_then_applies_when_the_pod_gets_an_ip(
    kube: ControlPlane,
    kube_namespace: str,
    operator_running: OperatorUnderTest,
    llm_standin: str,
    tmp_path: Path,
) -> None:
    ns = kube_namespace
    assert apply(kube, governed_policy(ns, llm_standin)).returncode == 0
    start_agent_pod(kube, ns, "agent-p", with_ip=False)
    annotate_halt(kube, ns, "govpol", "research", "incident 7")
    st = eventually(
        lambda: (s := _status(kube, ns)).get("halts") and s,
        timeout=30,
        what="pending halt in status",
    )
    assert st["halts"][0]["state"] == "Pending" and st["haltedAgents"] == 0
    eventually(
        lambda: policy_events(kube, ns, "HaltPending"),
        what="HaltPending Event",
    )
    give_pod_loopback_ip(kube, ns, "agent-p")
    with running_sidecar(kube, ns, "agent-p", operator_running.admin_port, tmp_path) as url:
        _status_code, body = eventually(
            lambda: refused(url),
            timeout=30,
            interval=0.1,
            what="call refused once the pod has an IP",
        )
        assert "EXTERNAL" in json.dumps(body), body
        st = eventually(
            lambda: (s := _status(kube, ns)).get("haltedAgents") == 1 and s,
            timeout=30,
            what="halt in force",
        )
        assert st["halts"][0]["state"] == "Halted"
        assert st["halts"][0]["source"] == "GovernancePolicy/research"


def test_failed_delivery_is_an_event_and_is_retried(
    kube: ControlPlane,
    kube_namespace: str,
    operator_running: OperatorUnderTest,
    llm_standin: str,
    tmp_path: Path,
) -> None:
    """The pod has an IP but no sidecar answers yet: a Warning Event, then the retry
    delivers the halt once the sidecar is up."""
    ns = kube_namespace
    assert apply(kube, governed_policy(ns, llm_standin)).returncode == 0
    start_agent_pod(kube, ns, "agent-f")
    annotate_halt(kube, ns, "govpol", "research", "incident 8")
    failed = eventually(
        lambda: policy_events(kube, ns, "HaltDeliveryFailed"),
        timeout=30,
        what="HaltDeliveryFailed Event",
    )
    assert failed[0]["type"] == "Warning" and "agent-f" in failed[0]["message"]
    with running_sidecar(kube, ns, "agent-f", operator_running.admin_port, tmp_path) as url:
        eventually(lambda: refused(url), timeout=30, interval=0.1, what="halt retried")
        eventually(
            lambda: _status(kube, ns).get("haltedAgents") == 1,
            timeout=30,
            what="halted after retry",
        )
