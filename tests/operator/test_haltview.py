"""Halts in a policy's status, whatever halted the pod (pure parts of haltview)."""

from __future__ import annotations

import json
from typing import Any

from haltgate.operator import halts, haltview

NOW = "2026-12-07T12:00:00Z"


def pod(
    name: str,
    *,
    record: dict[str, str] | None = None,
    ip: str | None = "10.0.0.1",
    owner: tuple[str, str] | None = None,
    template_hash: str | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": f"uid-{name}", "labels": {}}
    if record:
        meta["annotations"] = {halts.ANNOTATION_HALTED: json.dumps(record)}
    if owner:
        meta["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": owner[0],
                "name": owner[1],
                "uid": "uid-owner",
                "controller": True,
            }
        ]
    if template_hash:
        meta["labels"]["pod-template-hash"] = template_hash
    status = {"phase": "Running", "podIP": ip} if ip else {"phase": "Pending"}
    return {"metadata": meta, "status": status}


def test_parse_status_budget_halt() -> None:
    body = {
        "halted": {
            "failure_type": "EXHAUSTION",
            "code": "calls_exhausted",
            "message": "calls budget used up",
        }
    }
    assert haltview.parse_status(body) == haltview.SidecarHalt(
        "EXHAUSTION", "calls_exhausted", "calls budget used up"
    )
    assert haltview.parse_status({"halted": None}) is None
    assert haltview.parse_status("garbage") is None


def test_budget_halt_reported_by_the_sidecar_is_an_entry() -> None:
    pods = [pod("a", owner=("ReplicaSet", "research-7d9f"), template_hash="7d9f"), pod("b")]
    answers: dict[str, haltview.Probe] = {
        "a": haltview.SidecarHalt("STAGNATION", "identical_retries", "same call 5 times"),
        "b": None,
    }
    out = haltview.entries(pods, answers, {}, [], NOW)
    assert out == [
        {
            "pod": "a",
            "failureType": "STAGNATION",
            "code": "identical_retries",
            "message": "same call 5 times",
            "source": "sidecar",
            "state": "Halted",
            "workload": "Deployment/research",
            "since": NOW,
        }
    ]
    assert haltview.halted_count(out) == 1


def test_external_halts_from_any_source_and_pending_ones() -> None:
    pods = [
        pod("a", record={"Deployment/research": "runaway"}),
        pod("b", ip=None),
        pod("c", owner=("StatefulSet", "crawler")),
    ]
    out = haltview.entries(pods, {}, {"b": {"GovernancePolicy/p": "incident"}}, [], NOW)
    assert [(e["pod"], e["failureType"], e["source"], e["state"], e["workload"]) for e in out] == [
        ("a", "EXTERNAL", "Deployment/research", "Halted", "Pod/a"),
        ("b", "EXTERNAL", "GovernancePolicy/p", "Pending", "Pod/b"),
    ]
    assert haltview.halted_count(out) == 1


def test_delivered_halt_before_its_pod_record_names_its_source() -> None:
    """The sidecar answers EXTERNAL between delivery and the pod's record being written (a
    CI run saw this window): the source comes from the operator's own halt message; a halt
    made by hand through the admin API stays "admin API"."""
    message = halts.halt_message("Deployment/researcher", "drill") + " (by haltgate-operator)"
    answers: dict[str, haltview.Probe] = {
        "a": haltview.SidecarHalt("EXTERNAL", halts.HALT_CODE, message),
        "b": haltview.SidecarHalt("EXTERNAL", "manual", "Deployment/x: looks like ours"),
        "c": haltview.SidecarHalt("EXTERNAL", halts.HALT_CODE, "no source here"),
    }
    out = haltview.entries([pod("a"), pod("b"), pod("c")], answers, {}, [], NOW)
    assert [(e["pod"], e["source"]) for e in out] == [
        ("a", "Deployment/researcher"),
        ("b", "admin API"),
        ("c", "admin API"),
    ]
    # Once the record is written, it names the source (as before).
    recorded = pod("a", record={"GovernancePolicy/p": "incident"})
    assert haltview.entries([recorded], answers, {}, [], NOW)[0]["source"] == "GovernancePolicy/p"


def test_unreachable_sidecar_keeps_its_last_halt_and_since() -> None:
    earlier = "2026-12-07T11:00:00Z"
    previous = [
        {
            "pod": "a",
            "failureType": "OVERRISK",
            "code": "risk_exceeded",
            "message": "",
            "source": "sidecar",
            "state": "Halted",
            "since": earlier,
        }
    ]
    out = haltview.entries([pod("a")], {}, {}, previous, NOW)
    assert out[0]["failureType"] == "OVERRISK" and out[0]["since"] == earlier
    # The sidecar answers "running" (reset): the entry goes.
    assert haltview.entries([pod("a")], {"a": None}, {}, previous, NOW) == []


def test_transitions_post_on_policy_and_workload() -> None:
    halted = {
        "pod": "a",
        "failureType": "EXHAUSTION",
        "code": "calls_exhausted",
        "message": "m",
        "source": "sidecar",
        "state": "Halted",
        "workload": "Deployment/research",
    }
    pending = {
        "pod": "b",
        "failureType": "EXTERNAL",
        "code": "external_halt",
        "message": "x",
        "source": "GovernancePolicy/p",
        "state": "Pending",
        "workload": "Pod/b",
    }
    changes = haltview.transitions([], [halted, pending], {"a", "b"})
    assert [(c.type, c.reason, c.workload) for c in changes] == [
        ("Warning", "Halted", "Deployment/research"),
        ("Warning", "HaltPending", "Pod/b"),
    ]
    assert "EXHAUSTION calls_exhausted from sidecar" in changes[0].message
    assert haltview.transitions([halted], [halted], {"a"}) == []
    lifted = haltview.transitions([halted, pending], [], {"a", "b"})
    assert [(c.reason, c.workload) for c in lifted] == [("HaltLifted", "Deployment/research")]
    assert haltview.transitions([halted], [], set()) == []  # the pod is gone: no lift


def test_workload_of() -> None:
    assert haltview.workload_of(pod("a")).ref == "Pod/a"
    w = haltview.workload_of(pod("a", owner=("DaemonSet", "d")))
    assert (w.ref, w.uid, w.api_version) == ("DaemonSet/d", "uid-owner", "apps/v1")
    w = haltview.workload_of(pod("a", owner=("ReplicaSet", "r-1"), template_hash="1"))
    assert (w.ref, w.uid) == ("Deployment/r", None)
