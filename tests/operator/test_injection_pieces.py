"""Optional injected pieces: the audit shipper container, the chart's price table, and the
writable xtables lock of the iptables step."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from haltgate.operator import (
    injection,
    injection_outcome,
    injection_template,
    pod_mutation,
    policies,
)
from haltgate.testbed.controlplane import ControlPlane

TEMPLATE = injection_template.InjectionTemplate.load(injection_template.default_template_path())
POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "a",
        "namespace": "agents",
        "annotations": {injection.ANNOTATION_INJECT: "true"},
        "labels": {"app": "research"},
    },
    "spec": {"containers": [{"name": "agent", "image": "agent:1"}]},
}
POLICY = injection_outcome.PolicyRef(
    name="research", generation=1, selector={"matchLabels": {"app": "research"}}
)
TABLE = {
    "version": "2030-01-private",
    "effective": "2030-01-01",
    "currency": "USD",
    "unit": "per_1m_tokens",
    "models": {"m": {"input": 1.0, "output": 2.0}},
}


def inject(config: injection.InjectionConfig) -> dict[str, Any]:
    out = pod_mutation.mutate_pod(
        POD,
        namespace="agents",
        namespace_labels={},
        policies=[POLICY],
        config=config,
        template=TEMPLATE,
    )
    assert isinstance(out, injection_outcome.Inject), out
    again = pod_mutation.mutate_pod(
        yaml.safe_load(yaml.safe_dump(out.pod)),
        namespace="agents",
        namespace_labels={},
        policies=[POLICY],
        config=config,
        template=TEMPLATE,
    )
    assert again == injection_outcome.Skip("already injected")
    return out.pod


def containers(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in pod["spec"]["initContainers"]}


def test_iptables_step_has_a_writable_xtables_lock() -> None:
    pod = inject(injection.InjectionConfig())
    init = containers(pod)[injection.INIT_CONTAINER_NAME]
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    lock = {e["name"]: e["value"] for e in init["env"]}["XTABLES_LOCKFILE"]
    mounts = {m["mountPath"]: m["name"] for m in init["volumeMounts"]}
    volume = next(mounts[d] for d in mounts if lock.startswith(d + "/"))
    assert "emptyDir" in next(v for v in pod["spec"]["volumes"] if v["name"] == volume)


def test_no_shipper_and_no_price_table_by_default() -> None:
    pod = inject(injection.InjectionConfig())
    assert injection.SHIPPER_CONTAINER_NAME not in containers(pod)
    proxy = containers(pod)[injection.SIDECAR_CONTAINER_NAME]
    assert "HALTGATE_PRICE_TABLE" not in {e["name"] for e in proxy["env"]}


def test_shipper_container_ships_the_spool_with_the_secret_dsn() -> None:
    config = injection.InjectionConfig.from_mapping({"auditDatabaseSecret": "audit-db"})
    pod = inject(config)
    names = [c["name"] for c in pod["spec"]["initContainers"]]
    # Before the proxy: stopped after it at pod termination, so it ships the last records.
    assert names[:3] == [
        injection.INIT_CONTAINER_NAME,
        injection.SHIPPER_CONTAINER_NAME,
        injection.SIDECAR_CONTAINER_NAME,
    ]
    assert "--drain-seconds" in containers(pod)[injection.SHIPPER_CONTAINER_NAME]["args"]
    shipper = containers(pod)[injection.SHIPPER_CONTAINER_NAME]
    proxy = containers(pod)[injection.SIDECAR_CONTAINER_NAME]
    assert shipper["restartPolicy"] == "Always"  # native sidecar: restarts on its own
    assert shipper["args"][:4] == ["audit", "ship", "--spool", injection.AUDIT_SPOOL_DIR]
    env = {e["name"]: e for e in shipper["env"]}
    assert env["HALTGATE_AUDIT_DSN"]["valueFrom"]["secretKeyRef"] == {
        "name": "audit-db",
        "key": "dsn",
    }
    # The credentials stay out of the proxy; the spool is shared through the state volume.
    assert "HALTGATE_AUDIT_DSN" not in {e["name"] for e in proxy["env"]}
    assert "secretKeyRef" not in yaml.safe_dump(proxy)
    state = {m["name"]: m["mountPath"] for m in shipper["volumeMounts"]}
    assert state == {injection.VOLUME_STATE: injection.STATE_DIR}
    assert injection.AUDIT_SPOOL_DIR.startswith(injection.STATE_DIR + "/")
    # Same UID as the proxy: owns the spool files, and its traffic is not redirected.
    assert shipper["securityContext"]["runAsUser"] == proxy["securityContext"]["runAsUser"]
    assert shipper["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    # The agent cannot reach the shipper's metrics port either.
    init = containers(pod)[injection.INIT_CONTAINER_NAME]
    assert str(config.shipper_metrics_port) in init["args"]


def test_price_table_is_copied_into_the_policy_config_map_and_named_to_the_sidecar() -> None:
    config = injection.InjectionConfig.from_mapping({"priceTable": TABLE})
    proxy = containers(inject(config))[injection.SIDECAR_CONTAINER_NAME]
    env = {e["name"]: e.get("value") for e in proxy["env"]}
    assert env["HALTGATE_PRICE_TABLE"] == f"{injection.POLICY_DIR}/{injection.PRICE_TABLE_KEY}"
    body = {
        "apiVersion": "haltgate.dev/v1alpha1",
        "kind": "GovernancePolicy",
        "metadata": {"name": "research", "namespace": "agents", "uid": "u"},
        "spec": {},
    }
    cm = policies.render_config_map(body, None, config.price_table)
    assert yaml.safe_load(cm["data"][injection.PRICE_TABLE_KEY]) == TABLE
    assert injection.PRICE_TABLE_KEY not in policies.render_config_map(body, None)["data"]
    # The chart's empty default means the shipped table.
    assert injection.InjectionConfig.from_mapping({"priceTable": {}}).price_table is None


def test_malformed_price_table_fails_operator_start() -> None:
    with pytest.raises(ValueError, match="priceTable"):
        injection.InjectionConfig.from_mapping({"priceTable": {"version": "x", "models": 3}})


def test_every_optional_piece_passes_apiserver_validation(
    kube: ControlPlane, kube_namespace: str
) -> None:
    """The pod with shipper, price table env and xtables volume is a valid Pod for the real
    apiserver (server-side dry run; not opted in, so no webhook touches it)."""
    config = injection.InjectionConfig.from_mapping(
        {"auditDatabaseSecret": "audit-db", "priceTable": TABLE}
    )
    pod = inject(config)
    pod["metadata"]["namespace"] = kube_namespace
    pod["metadata"]["annotations"] = {}
    res = kube.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(pod))
    assert res.returncode == 0, res.stderr
    stored = json.loads(res.stdout)["spec"]
    assert [c["name"] for c in stored["initContainers"]] == [
        injection.INIT_CONTAINER_NAME,
        injection.SHIPPER_CONTAINER_NAME,
        injection.SIDECAR_CONTAINER_NAME,
    ]
