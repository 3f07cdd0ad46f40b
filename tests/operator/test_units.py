"""Unit tests of the operator's pure parts: certificates, halt planning, status helpers,
admission validation and the webhook configurations."""

from __future__ import annotations

import datetime as dt
import json
import ssl
from pathlib import Path
from typing import Any

import pytest

from haltgate.operator import (
    certs,
    halts,
    injection,
    injection_template,
    policies,
    pools,
    webhookconfig,
    webhooks,
)

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_webhook_tls_serves_and_verifies(tmp_path: Path) -> None:
    tls, changed = certs.ensure_webhook_tls(None, ["127.0.0.1", "hg.svc"], now=NOW)
    assert changed
    crt, key, ca = tls.write(tmp_path)
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(str(crt), str(key))  # the pair matches
    cert = tls.leaf.certificate
    assert cert.issuer == tls.ca.certificate.subject
    assert ca.read_bytes() == tls.ca.cert_pem


def test_webhook_tls_kept_then_renewed_with_same_ca() -> None:
    tls, _ = certs.ensure_webhook_tls(None, ["127.0.0.1"], now=NOW)
    same, changed = certs.ensure_webhook_tls(tls, ["127.0.0.1"], now=NOW + dt.timedelta(days=1))
    assert not changed and same is tls
    later = NOW + certs.LEAF_VALIDITY - certs.RENEW_BEFORE + dt.timedelta(hours=1)
    renewed, changed = certs.ensure_webhook_tls(tls, ["127.0.0.1"], now=later)
    assert changed and renewed.ca is tls.ca and renewed.leaf != tls.leaf
    # A new host also renews the leaf, still under the same CA (caBundle unchanged).
    more, changed = certs.ensure_webhook_tls(tls, ["127.0.0.1", "new.svc"], now=NOW)
    assert changed and more.ca is tls.ca


def test_webhook_tls_new_ca_near_ca_expiry() -> None:
    tls, _ = certs.ensure_webhook_tls(None, ["a"], now=NOW)
    late = NOW + certs.CA_VALIDITY - certs.LEAF_VALIDITY + dt.timedelta(days=1)
    fresh, changed = certs.ensure_webhook_tls(tls, ["a"], now=late)
    assert changed and fresh.ca.cert_pem != tls.ca.cert_pem


def _pod(record: dict[str, str] | None = None) -> dict[str, Any]:
    ann = {halts.ANNOTATION_HALTED: json.dumps(record)} if record else {}
    return {"metadata": {"name": "p", "annotations": ann}}


def test_halt_plan() -> None:
    src = "GovernancePolicy/a"
    assert halts.plan(_pod(), src, "why") == halts.Step("halt", {src: "why"})
    assert halts.plan(_pod({src: "why"}), src, "why") is None
    assert halts.plan(_pod({src: "old"}), src, "new") == halts.Step("halt", {src: "new"})
    assert halts.plan(_pod({src: "why"}), src, None) == halts.Step("lift", {})
    assert halts.plan(_pod(), src, None) is None
    # Another source still halts the pod: lifting ours must not lift the sidecar.
    both = {src: "why", "Deployment/d": "other"}
    assert halts.plan(_pod(both), src, None) == halts.Step("forget", {"Deployment/d": "other"})


def test_halted_sources_tolerates_garbage() -> None:
    pod = {"metadata": {"annotations": {halts.ANNOTATION_HALTED: "not json"}}}
    assert halts.halted_sources(pod) == {}


def test_admin_port_from_pod_spec() -> None:
    pod = {
        "spec": {
            "initContainers": [
                {
                    "name": injection.SIDECAR_CONTAINER_NAME,
                    "ports": [{"name": "hg-admin", "containerPort": 1234}],
                }
            ]
        }
    }
    assert halts.admin_port(pod, 17020) == 1234
    assert halts.admin_port({}, 17020) == 17020


def test_count_workloads() -> None:
    def pod(name: str, owner: tuple[str, str] | None, h: str | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "labels": {"pod-template-hash": h} if h else {}}
        if owner:
            meta["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "controller": True}]
        return {"metadata": meta}

    pods = [
        pod("a", ("ReplicaSet", "web-abc"), "abc"),
        pod("b", ("ReplicaSet", "web-def"), "def"),
        pod("c", ("StatefulSet", "db")),
        pod("d", None),
    ]
    assert policies.count_workloads(pods) == 3


def test_condition_keeps_transition_time_while_status_holds() -> None:
    prev = [{"type": "Ready", "status": "True", "lastTransitionTime": "T0"}]
    assert policies.condition("Ready", True, "R", "m", 2, prev, "T1")["lastTransitionTime"] == "T0"
    assert policies.condition("Ready", False, "R", "m", 2, prev, "T1")["lastTransitionTime"] == "T1"


def test_render_config_map_copies_referenced_rego() -> None:
    body = {
        "apiVersion": "haltgate.dev/v1alpha1",
        "kind": "GovernancePolicy",
        "metadata": {
            "name": "p",
            "namespace": "n",
            "uid": "u",
            "generation": 3,
            "managedFields": [{}],
        },
        "spec": {"opa": {"configMapRef": {"name": "rules", "key": "main.rego"}}},
    }
    cm = policies.render_config_map(body, "package x")
    assert cm["metadata"]["name"] == "haltgate-policy-p"
    assert cm["data"]["main.rego"] == "package x"
    assert "managedFields" not in cm["data"]["policy.yaml"]
    assert cm["metadata"]["ownerReferences"][0]["uid"] == "u"


def _policy(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "haltgate.dev/v1alpha1",
        "kind": "GovernancePolicy",
        "metadata": {"name": "p", "namespace": "n"},
        "spec": spec,
    }


def test_validate_object_refuses_with_every_path() -> None:
    warnings: list[str] = []
    with pytest.raises(webhooks.Denied) as e:
        webhooks.validate_object(
            _policy({"budgets": {"tokens": {}}, "engine": {"type": "emocore"}}),
            None,
            "CREATE",
            warnings,
        )
    assert "spec.budgets.tokens" in str(e.value) and "spec.engine.profile" in str(e.value)
    assert e.value.code == 422


def test_validate_object_warnings_and_metadata_only_updates() -> None:
    warnings: list[str] = []
    assert webhooks.validate_object(_policy({}), None, "CREATE", warnings) == "valid"
    assert any(w.startswith("spec.selector") for w in warnings)
    # A stored object that is invalid today can still be annotated (halted) and deleted.
    bad = _policy({"budgets": {"tokens": {}}})
    assert webhooks.validate_object(bad, bad, "UPDATE", []) == "valid"


def test_validate_object_flow_values_action() -> None:
    """``spec.flows[].action: deny-untrusted-values`` is admitted; an unknown action is
    refused naming the field; ``anyToolResult`` with it is an admission warning."""
    rule = {
        "name": "inbox-values",
        "sources": [{"mcpServers": ["mail"], "mcpTools": ["read_email"]}],
        "sinks": [{"mcpServers": ["mail"], "mcpTools": ["send_email"]}],
        "action": "deny-untrusted-values",
    }
    selector = {"matchLabels": {"app": "mail"}}
    warnings: list[str] = []
    spec = {"selector": selector, "flows": [rule]}
    assert webhooks.validate_object(_policy(spec), None, "CREATE", warnings) == "valid"
    assert warnings == []
    wide = {**rule, "sources": [{"anyToolResult": True}]}
    spec = {"selector": selector, "flows": [wide]}
    assert webhooks.validate_object(_policy(spec), None, "CREATE", warnings) == "valid"
    assert any(w.startswith("spec.flows[0].sources[0].anyToolResult") for w in warnings)
    with pytest.raises(webhooks.Denied) as e:
        webhooks.validate_object(
            _policy({"selector": selector, "flows": [{**rule, "action": "deny-values"}]}),
            None,
            "CREATE",
            [],
        )
    assert "spec.flows[0].action" in str(e.value)


def test_pool_status() -> None:
    pool = {
        "apiVersion": "haltgate.dev/v1alpha1",
        "kind": "BudgetPool",
        "metadata": {
            "name": "shared",
            "namespace": "n",
            "generation": 1,
            "annotations": {halts.ANNOTATION_HALT: "budget review"},
        },
        "spec": {"costUSD": {"limit": 10}},
    }
    status = pools.pool_status(pool, [{"spec": {"pool": "shared"}}, {"spec": {}}], "T")
    assert status["members"] == 1 and status["state"] == "Halted"
    assert status["reason"] == "budget review"


def test_mutating_configuration_is_fail_closed_and_scoped() -> None:
    ep = webhookconfig.Endpoint(ca_bundle=b"PEM", url="https://127.0.0.1:9443")
    cfg = webhookconfig.mutating_configuration(
        ep, injection.InjectionConfig(operator_namespace="ops")
    )
    hooks = cfg["webhooks"]
    assert [h["name"] for h in hooks] == [
        "annotated.inject.haltgate.dev",
        "namespace.inject.haltgate.dev",
    ]
    for h in hooks:
        assert h["failurePolicy"] == "Fail" and h["timeoutSeconds"] == 10
        assert h["sideEffects"] == "None"
        assert h["clientConfig"]["url"] == "https://127.0.0.1:9443/inject"
        excluded = h["namespaceSelector"]["matchExpressions"][0]["values"]
        assert {"kube-system", "ops"} <= set(excluded)
    svc = webhookconfig.Endpoint(ca_bundle=b"PEM", service_name="hg", service_namespace="ops")
    assert svc.client_config("inject")["service"] == {
        "name": "hg",
        "namespace": "ops",
        "port": 443,
        "path": "/inject",
    }


def test_transitions_only_on_change() -> None:
    ok = {"type": "Ready", "status": "True", "reason": "Delivered", "message": "m"}
    bad = {"type": "Ready", "status": "False", "reason": "RegoNotFound", "message": "gone"}
    assert policies.transitions({"conditions": [ok]}, {"conditions": [ok]}) == []
    assert policies.transitions({"conditions": [ok]}, {"conditions": [bad]}) == [
        ("Warning", "RegoNotFound", "Ready: gone")
    ]
    assert policies.transitions({"conditions": [bad]}, {"conditions": [bad]}) == []
    assert policies.transitions({"conditions": [bad]}, {"conditions": [ok]}) == [
        ("Normal", "Delivered", "Ready: m")
    ]


def test_update_refusals() -> None:
    from haltgate.operator import refusals

    ours = injection.CONTAINER_NAMES
    old = {
        "spec": {
            "initContainers": [{"name": "haltgate-proxy", "image": "hg:1"}],
            "containers": [{"name": "agent", "image": "a:1"}],
        }
    }
    same = {"spec": {**old["spec"], "containers": [{"name": "agent", "image": "a:2"}]}}
    assert refusals.update_refusals(old, same, proxy_uid=17337, ours=ours) == []
    swapped = {
        "spec": {**old["spec"], "initContainers": [{"name": "haltgate-proxy", "image": "evil"}]}
    }
    assert [r.code for r in refusals.update_refusals(old, swapped, proxy_uid=17337, ours=ours)] == [
        "haltgate_container_changed"
    ]
    debug = {
        "spec": {
            **old["spec"],
            "ephemeralContainers": [
                {"name": "d1", "image": "b"},
                {"name": "d2", "image": "b", "securityContext": {"runAsUser": 17337}},
            ],
        }
    }
    with_d1 = {"spec": {**old["spec"], "ephemeralContainers": [{"name": "d1", "image": "b"}]}}
    found = refusals.update_refusals(with_d1, debug, proxy_uid=17337, ours=ours)
    assert [(r.code, r.path) for r in found] == [
        ("agent_runs_as_proxy_uid", "spec.ephemeralContainers[1].securityContext.runAsUser")
    ]


async def test_webhook_server_wire_format() -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from haltgate.operator import metrics, settings
    from haltgate.operator.runtime import Runtime

    rt = Runtime(
        settings=settings.OperatorSettings(),
        cluster=None,  # type: ignore[arg-type]
        template=injection_template.InjectionTemplate.load(
            injection_template.default_template_path()
        ),
        metrics=metrics.OperatorMetrics.create(),
    )
    async with TestClient(TestServer(webhooks.create_app(rt))) as client:

        def review(obj: dict[str, Any], op: str = "CREATE") -> dict[str, Any]:
            return {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "request": {"uid": "u-1", "operation": op, "object": obj},
            }

        resp = await client.post(
            "/validate-policy", json=review(_policy({"budgets": {"tokens": {}}}))
        )
        out = await resp.json()
        assert resp.status == 200 and out["response"]["uid"] == "u-1"
        assert out["response"]["allowed"] is False
        assert out["response"]["status"]["code"] == 422
        assert "spec.budgets.tokens" in out["response"]["status"]["message"]

        resp = await client.post("/validate-policy", json=review(_policy({})))
        out = await resp.json()
        assert out["response"]["allowed"] is True
        assert out["response"]["warnings"][0].startswith("spec.selector")

        # An opted-out pod: allowed, no patch, and no cluster lookup at all.
        pod = {"metadata": {"namespace": "n", "annotations": {"haltgate.dev/inject": "false"}}}
        out = await (await client.post("/inject", json=review(pod))).json()
        assert out["response"] == {"uid": "u-1", "allowed": True}

        assert (await client.post("/inject", data=b"not json")).status == 400
        assert (await client.post("/nope", json=review(pod))).status == 404
        assert (await client.get("/readyz")).status == 200


@pytest.mark.opa
async def test_webhook_compiles_inline_rego(
    opa_binary: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Admission refuses inline Rego that does not compile (with line and column), the same
    check as ``haltgate policy validate``; Rego that compiles is admitted."""
    from aiohttp.test_utils import TestClient, TestServer

    from haltgate.operator import metrics, settings
    from haltgate.operator.runtime import Runtime

    monkeypatch.setenv("HALTGATE_OPA", str(opa_binary))
    rt = Runtime(
        settings=settings.OperatorSettings(),
        cluster=None,  # type: ignore[arg-type]
        template=injection_template.InjectionTemplate.load(
            injection_template.default_template_path()
        ),
        metrics=metrics.OperatorMetrics.create(),
    )
    broken = "package haltgate\n\nallow if {\n  input.x ==\n}\n"
    good = "package haltgate\n\ndefault decision := true\n"
    no_decision = "package haltgate\n\ndefault allow := true\n"
    async with TestClient(TestServer(webhooks.create_app(rt))) as client:

        def review(rego: str) -> dict[str, Any]:
            obj = _policy({"selector": {"matchLabels": {"app": "a"}}, "opa": {"rego": rego}})
            return {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "request": {"uid": "u-2", "operation": "CREATE", "object": obj},
            }

        out = await (await client.post("/validate-policy", json=review(broken))).json()
        assert out["response"]["allowed"] is False, out
        assert "spec.opa.rego" in out["response"]["status"]["message"]
        out = await (await client.post("/validate-policy", json=review(good))).json()
        assert out["response"]["allowed"] is True, out
        out = await (await client.post("/validate-policy", json=review(no_decision))).json()
        assert out["response"]["allowed"] is False, out
        assert (
            "spec.opa.decisionPath: no rule at data.haltgate.decision"
            in out["response"]["status"]["message"]
        )
