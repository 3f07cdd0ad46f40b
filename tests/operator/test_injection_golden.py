"""Golden-file tests of pod injection: testdata/<case>.yaml -> testdata/<case>.yaml.injected.

Refresh the expected files after an intended change with ``REFRESH_GOLDEN=1`` and review the
diff. The cluster the cases run in (namespace labels, policies) is testdata/_cluster.yaml.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from haltgate.operator import injection, injection_outcome, injection_template, pod_mutation

TESTDATA = Path(__file__).parent / "testdata"
CASES = sorted(
    p.name.removesuffix(".yaml") for p in TESTDATA.glob("*.yaml") if not p.name.startswith("_")
)
CLUSTER = yaml.safe_load((TESTDATA / "_cluster.yaml").read_text())
CONFIG = injection.InjectionConfig(
    image="registry.example/haltgate:test", opa_image="registry.example/opa:test"
)
MESH_CONFIG = injection.InjectionConfig(
    image="registry.example/haltgate:test",
    opa_image="registry.example/opa:test",
    mesh_proxy_uids=(1337,),
    mesh_containers=frozenset({"istio-init", "istio-proxy", "istio-validation"}),
)
"""Cases named mesh-*: the chart's values for running next to Istio (docs/operations.md)."""
NODE_CONFIG = injection.InjectionConfig(
    image="registry.example/haltgate:test", opa_image="registry.example/opa:test", redirect="node"
)
"""Cases named node-*: rules installed from the node, no NET_ADMIN in the pod."""
TEMPLATE = injection_template.InjectionTemplate.load(injection_template.default_template_path())


def policies_of(namespace: str) -> list[injection_outcome.PolicyRef]:
    return [
        injection_outcome.PolicyRef.from_object(p)
        for p in CLUSTER["policies"]
        if p["metadata"]["namespace"] == namespace
    ]


def run(
    pod: dict[str, Any], config: injection.InjectionConfig | None = None
) -> injection_outcome.Outcome:
    ns = pod["metadata"]["namespace"]
    if config is None:
        name = str(pod["metadata"].get("generateName", ""))
        config = (
            MESH_CONFIG
            if name.startswith("mesh-")
            else NODE_CONFIG
            if name.startswith("node-")
            else CONFIG
        )
    return pod_mutation.mutate_pod(
        pod,
        namespace=ns,
        namespace_labels=CLUSTER["namespaces"][ns],
        policies=policies_of(ns),
        config=config,
        template=TEMPLATE,
    )


def render(outcome: injection_outcome.Outcome) -> str:
    match outcome:
        case injection_outcome.Inject(pod=pod, warnings=warnings):
            head = "".join(f"# warning: {w}\n" for w in warnings)
            return head + yaml.safe_dump(pod, sort_keys=False, width=100)
        case injection_outcome.Skip(reason=reason, warnings=warnings):
            return f"# skip: {reason}\n" + "".join(f"# warning: {w}\n" for w in warnings)
        case injection_outcome.Refuse():
            return f"# refuse: {outcome.message}\n"
    raise AssertionError(outcome)


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str) -> None:
    pod = yaml.safe_load((TESTDATA / f"{case}.yaml").read_text())
    got = render(run(pod))
    expected_file = TESTDATA / f"{case}.yaml.injected"
    if os.environ.get("REFRESH_GOLDEN") == "1":
        expected_file.write_text(got)
    assert expected_file.exists(), f"no golden file; run with REFRESH_GOLDEN=1 and review {case}"
    assert got == expected_file.read_text()


def _injecting_cases() -> list[str]:
    return [
        c
        for c in CASES
        if isinstance(
            run(yaml.safe_load((TESTDATA / f"{c}.yaml").read_text())), injection_outcome.Inject
        )
    ]


@pytest.mark.parametrize("case", _injecting_cases())
def test_reinvocation_leaves_injected_pod_alone(case: str) -> None:
    pod = yaml.safe_load((TESTDATA / f"{case}.yaml").read_text())
    first = run(pod)
    assert isinstance(first, injection_outcome.Inject)
    # What the apiserver stores is YAML/JSON: round-trip before the second pass.
    again = run(yaml.safe_load(yaml.safe_dump(first.pod)))
    assert again == injection_outcome.Skip("already injected")
    # reinvocationPolicy IfNeeded: the ServiceAccount admission plugin runs again before
    # the second call and mounts the API token into every container, ours too.
    stored = yaml.safe_load(yaml.safe_dump(first.pod))
    for c in stored["spec"].get("initContainers", []) + stored["spec"]["containers"]:
        c.setdefault("volumeMounts", []).append(
            {
                "name": "kube-api-access-x1",
                "readOnly": True,
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
            }
        )
    assert run(stored) == injection_outcome.Skip("already injected")
    # Any other mount slipped into haltgate's sidecar is not what the operator injects.
    proxy = next(
        c for c in stored["spec"]["initContainers"] if c["name"] == injection.SIDECAR_CONTAINER_NAME
    )
    proxy["volumeMounts"].append({"name": "shared", "mountPath": "/etc/ssl/certs"})
    forged = run(stored)
    assert isinstance(forged, injection_outcome.Refuse) and forged.code == "forged_injection"


def test_every_case_has_a_golden_file_and_no_orphans() -> None:
    golden = {p.name.removesuffix(".yaml.injected") for p in TESTDATA.glob("*.yaml.injected")}
    assert golden == set(CASES)


def test_istio_injected_after_haltgate_on_reinvocation() -> None:
    """reinvocationPolicy IfNeeded: Istio's webhook ran after haltgate's and put its
    containers first; haltgate's second pass accepts its own pieces wherever they are and
    checks Istio's against the rules (allowed only with the mesh settings)."""
    pod = yaml.safe_load((TESTDATA / "annotated.yaml").read_text())
    first = run(pod, MESH_CONFIG)
    assert isinstance(first, injection_outcome.Inject)
    istio = yaml.safe_load((TESTDATA / "mesh-istio-sidecar-init.yaml").read_text())
    meshed = yaml.safe_load(yaml.safe_dump(first.pod))
    meshed["spec"]["initContainers"] = (
        istio["spec"]["initContainers"] + meshed["spec"]["initContainers"]
    )
    meshed["spec"]["volumes"] += istio["spec"]["volumes"]
    assert run(meshed, MESH_CONFIG) == injection_outcome.Skip("already injected")
    # Without the mesh settings, Istio's NET_ADMIN init container is refused.
    plain = run(yaml.safe_load((TESTDATA / "annotated.yaml").read_text()), CONFIG)
    assert isinstance(plain, injection_outcome.Inject)
    meshed = yaml.safe_load(yaml.safe_dump(plain.pod))
    meshed["spec"]["initContainers"] = (
        istio["spec"]["initContainers"] + meshed["spec"]["initContainers"]
    )
    refused = run(meshed, CONFIG)
    assert isinstance(refused, injection_outcome.Refuse) and refused.code == "agent_net_capability"
    assert "injection.meshContainers" in refused.message
    # The init step leaves Envoy's traffic to Envoy: agent -> haltgate -> Envoy -> network.
    init = next(
        c for c in first.pod["spec"]["initContainers"] if c["name"] == injection.INIT_CONTAINER_NAME
    )
    assert init["args"][-2:] == ["--mesh-uids", "1337"]


def test_guaranteed_pod_stays_guaranteed() -> None:
    """QoS class Guaranteed needs limits = requests in every container, init ones too."""
    pod = yaml.safe_load((TESTDATA / "guaranteed.yaml").read_text())
    out = run(pod)
    assert isinstance(out, injection_outcome.Inject)
    for c in out.pod["spec"]["initContainers"] + out.pod["spec"]["containers"]:
        res = c["resources"]
        assert set(res["limits"]) >= {"cpu", "memory"}, c["name"]
        assert res.get("requests", res["limits"]) == res["limits"], c["name"]
    # A Burstable pod keeps the template's resources (no CPU limit on the proxy).
    burstable = run(yaml.safe_load((TESTDATA / "annotated.yaml").read_text()))
    assert isinstance(burstable, injection_outcome.Inject)
    proxy = next(
        c
        for c in burstable.pod["spec"]["initContainers"]
        if c["name"] == injection.SIDECAR_CONTAINER_NAME
    )
    assert "cpu" not in proxy["resources"]["limits"]
