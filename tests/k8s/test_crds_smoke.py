"""The CRDs against a real kube-apiserver: installed, usable, and enforcing their schema."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from haltgate.governance.policy import API_GROUP, API_VERSION
from haltgate.governance.validation import validate_document
from haltgate.testbed.controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "docs" / "examples").glob("*.yaml"))
BROKEN = REPO / "tests" / "unit" / "testdata" / "policy-broken.yaml"

pytestmark = pytest.mark.usefixtures("haltgate_crds")


def _docs(path: Path, namespace: str) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    return docs


def _mapping(value: object) -> dict[str, Any]:
    assert isinstance(value, dict), value
    return value


def _apply(kube: ControlPlane, docs: list[dict[str, Any]]) -> Any:
    return kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))


def _minimal_policy(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "GovernancePolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"matchLabels": {"app": "a"}}, **spec},
    }


def test_crds_are_established_with_names(kube: ControlPlane, haltgate_crds: list[str]) -> None:
    assert sorted(haltgate_crds) == ["budgetpools.haltgate.dev", "governancepolicies.haltgate.dev"]
    out = kube.kubectl("api-resources", f"--api-group={API_GROUP}", "-o", "wide", check=True)
    lines = {line.split()[0]: line for line in out.stdout.splitlines()[1:]}
    assert "govpol" in lines["governancepolicies"]
    assert "bpool" in lines["budgetpools"]
    assert all("haltgate" in line for line in lines.values())  # category column


def test_examples_are_created_and_listed(kube: ControlPlane, kube_namespace: str) -> None:
    docs = [d for path in EXAMPLES for d in _docs(path, kube_namespace)]
    applied = _apply(kube, docs)
    assert applied.returncode == 0, applied.stderr
    policies = sorted(d["metadata"]["name"] for d in docs if d["kind"] == "GovernancePolicy")
    pools = sorted(d["metadata"]["name"] for d in docs if d["kind"] == "BudgetPool")
    assert policies and pools

    table = kube.kubectl("get", "govpol", "-n", kube_namespace, check=True).stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "WORKLOADS", "HALTED", "ENFORCEMENT", "AGE"]
    assert sorted(line.split()[0] for line in table[1:]) == policies

    wide = kube.kubectl(
        "get", "govpol", "-n", kube_namespace, "-o", "wide", check=True
    ).stdout.splitlines()
    assert wide[0].split() == ["NAME", "READY", "WORKLOADS", "HALTED", "ENFORCEMENT", "POOL", "AGE"]
    assert any("finance-shared" in line for line in wide[1:])

    pool_table = kube.kubectl("get", "bpool", "-n", kube_namespace, check=True).stdout.splitlines()
    assert pool_table[0].split() == ["NAME", "STATE", "MEMBERS", "SPENT-USD", "AGE"]

    everything = kube.kubectl(
        "get", "haltgate", "-n", kube_namespace, "-o", "name", check=True
    ).stdout.split()
    assert sorted(everything) == sorted(
        [f"governancepolicy.haltgate.dev/{n}" for n in policies]
        + [f"budgetpool.haltgate.dev/{n}" for n in pools]
    )


def test_stored_object_round_trips_the_spec(kube: ControlPlane, kube_namespace: str) -> None:
    (doc,) = [d for d in _docs(REPO / "docs/examples/policy-basic.yaml", kube_namespace)]
    assert _apply(kube, [doc]).returncode == 0
    api = client.CustomObjectsApi(kube.api_client())
    stored = _mapping(
        api.get_namespaced_custom_object(
            API_GROUP, API_VERSION, kube_namespace, "governancepolicies", doc["metadata"]["name"]
        )
    )

    # Nothing was pruned: every field we sent is still there (the apiserver only adds
    # defaults), so the schema knows every field the examples use.
    def contains(big: Any, small: Any) -> bool:
        if isinstance(small, dict):
            return isinstance(big, dict) and all(
                k in big and contains(big[k], v) for k, v in small.items()
            )
        if isinstance(small, list):
            return (
                isinstance(big, list)
                and len(big) == len(small)
                and all(contains(b, s) for b, s in zip(big, small, strict=True))
            )
        return bool(big == small)

    assert contains(stored["spec"], doc["spec"]), json.dumps(stored["spec"])[:2000]


def test_schema_defaults_apply(kube: ControlPlane, kube_namespace: str) -> None:
    api = client.CustomObjectsApi(kube.api_client())
    body = _minimal_policy(
        "defaults", kube_namespace, {"tools": {}, "budgets": {"calls": {"limit": 3}}}
    )
    created = _mapping(
        api.create_namespaced_custom_object(
            API_GROUP, API_VERSION, kube_namespace, "governancepolicies", body
        )
    )
    assert created["spec"]["tools"]["default"] == "deny"
    assert created["spec"]["budgets"]["calls"]["period"] == "run"


def test_status_subresource_feeds_printer_columns(kube: ControlPlane, kube_namespace: str) -> None:
    body = _minimal_policy("status", kube_namespace, {})
    assert _apply(kube, [body]).returncode == 0
    patched = kube.kubectl(
        "patch",
        "govpol",
        "status",
        "-n",
        kube_namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"ready": True, "matchedWorkloads": 2, "haltedAgents": 1}}),
    )
    assert patched.returncode == 0, patched.stderr
    row = kube.kubectl(
        "get", "govpol", "status", "-n", kube_namespace, "--no-headers", check=True
    ).stdout.split()
    assert row[:4] == ["status", "true", "2", "1"]
    # A spec update cannot write status: the subresource is separate.
    spec_only = kube.kubectl(
        "patch",
        "govpol",
        "status",
        "-n",
        kube_namespace,
        "--type=merge",
        "-p",
        json.dumps({"status": {"ready": False}}),
    )
    assert spec_only.returncode == 0
    again = kube.kubectl(
        "get", "govpol", "status", "-n", kube_namespace, "--no-headers", check=True
    ).stdout.split()
    assert again[1] == "true"


def test_broken_policy_is_rejected_with_the_same_field_paths(
    kube: ControlPlane, kube_namespace: str
) -> None:
    (doc,) = _docs(BROKEN, kube_namespace)
    ours = {i.path for i in validate_document(doc).errors}

    # Unknown fields fail strict decoding (kubectl's default) before the schema is checked.
    applied = _apply(kube, [doc])
    assert applied.returncode != 0
    assert 'unknown field "spec.colour"' in applied.stderr, applied.stderr

    # Without it, the apiserver names every schema error, at the paths `haltgate policy
    # validate` names: one schema, two enforcers that agree.
    del doc["spec"]["colour"]
    applied = _apply(kube, [doc])
    assert applied.returncode != 0
    theirs = {
        line[2:].split(":", 1)[0] for line in applied.stderr.splitlines() if line.startswith("* ")
    }
    assert theirs == {
        "spec.budgets.tokens.limit",
        "spec.budgets.costUSD.period",
        "spec.tools.default",
    }, applied.stderr
    # `policy validate` also names, in the same pass, the semantic errors the apiserver
    # (or the admission webhook) would only show once these are fixed.
    assert ours - (theirs | {"spec.colour"}) == {
        "spec.tools.rules[0].arguments[0]",
        "spec.guardrails.promptInjection.action",
    }
    assert kube.kubectl("get", "govpol", "broken", "-n", kube_namespace).returncode != 0


@pytest.mark.parametrize(
    ("spec", "path", "reason"),
    [
        (
            {"budgets": {"tokens": {"limit": -5}}},
            "spec.budgets.tokens.limit",
            "should be greater than or equal to 0",
        ),
        (
            {"budgets": {"costUSD": {"limit": 1, "period": "week"}}},
            "spec.budgets.costUSD.period",
            'Unsupported value: "week"',
        ),
        ({"tools": {"default": "maybe"}}, "spec.tools.default", 'Unsupported value: "maybe"'),
        ({"budgets": {"warnAt": 2}}, "spec.budgets.warnAt", "should be less than or equal to 1"),
        (
            {"upstreams": [{"name": "UPPER", "url": "https://x", "kind": "llm"}]},
            "spec.upstreams[0].name",
            "should match",
        ),
        (
            {"upstreams": [{"name": "x", "url": "https://x"}]},
            "spec.upstreams[0].kind",
            "Required value",
        ),
    ],
    ids=["negative-limit", "bad-period", "bad-enum", "over-max", "pattern", "required"],
)
def test_schema_rejects_with_field_path(
    kube: ControlPlane, kube_namespace: str, spec: dict[str, Any], path: str, reason: str
) -> None:
    api = client.CustomObjectsApi(kube.api_client())
    body = _minimal_policy("invalid", kube_namespace, copy.deepcopy(spec))
    with pytest.raises(ApiException) as info:
        api.create_namespaced_custom_object(
            API_GROUP, API_VERSION, kube_namespace, "governancepolicies", body
        )
    assert info.value.status == 422
    causes = json.loads(info.value.body or "{}")["details"]["causes"]
    fields = {c["field"]: c["message"] for c in causes}
    assert path in fields, causes
    assert reason in fields[path], fields[path]
