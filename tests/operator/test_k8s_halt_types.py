"""Halts the sidecar decides for reasons other than a spent budget show the same way as
the budget one (test_k8s_halts.py), against the real apiserver: a STAGNATION halt (the same
call repeated) and an OVERRISK halt (the risk budget reached) each appear in the policy's
status.halts with that type, count in haltedAgents, and are Events on the policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from haltgate.operator import injection
from haltgate.testbed.controlplane import ControlPlane
from tests.operator import test_k8s_halts as k8s_halts
from tests.operator.conftest import OperatorUnderTest, apply, create, eventually

pytestmark = pytest.mark.k8s

llm_standin = k8s_halts.llm_standin
"""The stand-in LLM upstream (a fixture)."""


def _stagnation(spec: dict[str, Any]) -> None:
    spec["budgets"] = {"calls": {"limit": 1000}, "identicalRetries": {"limit": 2}}


def _risk(spec: dict[str, Any]) -> None:
    # Reached exactly (1 + 1 = 2): a halt. (A call that would only overshoot the limit is
    # refused on its own, and the agent is not halted.)
    spec["budgets"] = {"calls": {"limit": 1000}, "riskScore": {"limit": 2.0}}
    spec["tools"]["rules"][0]["risk"] = 1.0


@pytest.mark.parametrize(
    ("shape", "failure_type"),
    [(_stagnation, "STAGNATION"), (_risk, "OVERRISK")],
    ids=["stagnation", "risk"],
)
def test_sidecar_halt_of_each_type_shows_in_status_and_events(
    kube: ControlPlane,
    kube_namespace: str,
    operator_running: OperatorUnderTest,
    llm_standin: str,
    tmp_path: Path,
    shape: Any,
    failure_type: str,
) -> None:
    ns = kube_namespace
    policy = k8s_halts.governed_policy(ns, llm_standin)
    shape(policy["spec"])
    res = apply(kube, policy)
    assert res.returncode == 0, res.stderr
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "agent-t",
            "namespace": ns,
            "labels": {"app": "agent"},
            "annotations": {injection.ANNOTATION_INJECT: "true"},
        },
        "spec": {"containers": [{"name": "agent", "image": "x"}]},
    }
    res = create(kube, pod)
    assert res.returncode == 0, res.stderr
    k8s_halts.give_pod_loopback_ip(kube, ns, "agent-t")
    with k8s_halts.running_sidecar(
        kube, ns, "agent-t", operator_running.admin_port, tmp_path
    ) as url:
        answers = [k8s_halts.call(url) for _ in range(4)]  # bounded: halts by the 2nd-3rd
        assert answers[0][0] == 200 and answers[-1][0] != 200, answers
        assert failure_type in str(answers[-1][1]), answers[-1]
        st = eventually(
            lambda: (s := k8s_halts._status(kube, ns)).get("haltedAgents") == 1 and s,
            timeout=30,
            what="haltedAgents 1",
        )
        (entry,) = st["halts"]
        assert entry["failureType"] == failure_type and entry["source"] == "sidecar", entry
        assert entry["pod"] == "agent-t" and entry["workload"] == "Pod/agent-t", entry
        found = eventually(
            lambda: [
                e
                for e in k8s_halts._events(kube, ns, "GovernancePolicy", "research")
                if e["reason"] == "Halted"
            ],
            timeout=30,
            what="policy Event",
        )
        assert failure_type in found[0]["message"], found
