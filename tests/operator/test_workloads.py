"""Annotating the workload object: carried into the pod template, undone on removal; and
warnings for haltgate annotations where nothing reads them (pure parts)."""

from __future__ import annotations

from typing import Any

from haltgate.operator import workloads

INJECT, POLICY, CARRIED = "haltgate.dev/inject", "haltgate.dev/policy", "haltgate.dev/carried"


def deployment(
    obj: dict[str, str] | None = None,
    template: dict[str, str] | None = None,
    kind: str = "Deployment",
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": "agent", "annotations": obj or {}},
        "spec": {"template": {"metadata": {"annotations": template or {}}}},
    }


def test_opt_in_on_the_object_is_carried_and_undone() -> None:
    assert workloads.carry_patch(deployment({INJECT: "true", POLICY: "p"})) == {
        INJECT: "true",
        POLICY: "p",
        CARRIED: f"{INJECT},{POLICY}",
    }
    carried = {INJECT: "true", POLICY: "p", CARRIED: f"{INJECT},{POLICY}"}
    assert workloads.carry_patch(deployment({INJECT: "true", POLICY: "p"}, carried)) is None
    # Removing the object's annotations removes what the operator added, nothing else.
    assert workloads.carry_patch(deployment({POLICY: "p"}, {**carried, "x": "1"})) == {
        INJECT: None,
        CARRIED: POLICY,
    }
    assert workloads.carry_patch(deployment({}, carried)) == {
        INJECT: None,
        POLICY: None,
        CARRIED: None,
    }
    assert workloads.carry_patch(deployment()) is None


def test_the_templates_own_annotation_wins() -> None:
    own = {INJECT: "false"}
    assert workloads.carry_patch(deployment({INJECT: "true"}, own)) is None
    assert workloads.carry_patch(deployment({}, own)) is None
    warnings = workloads.annotation_warnings(deployment({INJECT: "true"}, own))
    assert len(warnings) == 1 and "template's own value 'false' wins" in warnings[0]


def test_warnings_where_nothing_reads_the_annotation() -> None:
    job = deployment({INJECT: "true"}, kind="Job")
    (w,) = workloads.annotation_warnings(job)
    assert "on the Job object is not read" in w and "spec.template.metadata" in w
    (w,) = workloads.annotation_warnings(deployment(template={"haltgate.dev/halt": "x"}))
    assert "pod template" in w and "kubectl annotate govpol" in w
    (w,) = workloads.annotation_warnings(deployment({"haltgate.dev/halt": "x"}, kind="StatefulSet"))
    assert "StatefulSet object is not read" in w
    assert workloads.annotation_warnings(deployment({"haltgate.dev/halt": "x"})) == []
    (w,) = workloads.annotation_warnings(deployment(template={INJECT: "yes"}))
    assert "'yes'" in w and "does nothing" in w
    (w,) = workloads.annotation_warnings(
        {"kind": "Pod", "metadata": {"annotations": {"haltgate.dev/injection": "enabled"}}}
    )
    assert "namespace label" in w
    assert (
        workloads.annotation_warnings(
            {"kind": "Pod", "metadata": {"annotations": {INJECT: "true", POLICY: "p"}}}
        )
        == []
    )
    assert workloads.annotation_warnings(deployment({INJECT: "true"})) == []
