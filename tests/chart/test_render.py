"""The chart without a cluster: lint, schema, what it renders, and that it agrees with the
operator's own code (webhook configurations, injection settings, CRDs)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml

from haltgate.operator import injection, webhookconfig
from tests.chart.conftest import CHART, FULL_VALUES, KUBE_VERSION, REPO, Helm, find, render

KV = ("--kube-version", KUBE_VERSION)
"""The chart requires Kubernetes >= 1.29; `helm template` alone assumes an older one."""
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job", "CronJob"}


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for d in docs:
        if d["kind"] == "CronJob":
            job = d["spec"]["jobTemplate"]["spec"]
            out.append((d["metadata"]["name"], job["template"]["spec"]))
        elif d["kind"] in WORKLOAD_KINDS:
            out.append((d["metadata"]["name"], d["spec"]["template"]["spec"]))
    return out


def test_lint_default_and_full(helm: Helm) -> None:
    helm("lint", "--strict", str(CHART))
    helm("lint", "--strict", str(CHART), "-f", str(FULL_VALUES))


@pytest.mark.parametrize(
    "override",
    [
        "bogus=1",
        "operator.replica=2",
        "image.tags=x",
        "metrics.serviceMonitor.enable=true",
        "webhook.certManager.issuerRef.nam=x",
        "pools.database.secret=x",
        "pools.migrate.enable=true",
    ],
)
def test_schema_rejects_unknown_keys(helm: Helm, override: str) -> None:
    res = helm("template", "t", str(CHART), *KV, "--set", override, check=False)
    assert res.returncode != 0
    assert "additional properties" in res.stderr, res.stderr


@pytest.mark.parametrize(
    "override",
    [
        "webhook.timeoutSeconds=31",
        "operator.replicas=0",
        "injection.proxyUID=0",
        "image.pullPolicy=Sometimes",
        "audit.export.destination=/tmp/x",
        "pools.database.secretKey=",
        "pools.migrate.enabled=yes",
    ],
)
def test_schema_rejects_bad_values(helm: Helm, override: str) -> None:
    assert helm("template", "t", str(CHART), *KV, "--set", override, check=False).returncode != 0


def test_every_values_key_is_documented() -> None:
    """Each leaf of values.yaml has a `# --` comment right above it (or above its parent
    block for maps such as resources)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for n, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or ":" not in stripped:
            continue
        if line.startswith(" ") and not stripped.split(":", 1)[1].strip():
            continue  # a block parent, documented by its children
        if not line.startswith(" ") and not stripped.split(":", 1)[1].strip():
            continue
        if stripped.split(":", 1)[0] in ("requests", "limits"):
            continue  # inside a documented `resources:` block
        above = lines[n - 1].strip() if n else ""
        if not above.startswith("#"):
            undocumented.append(stripped)
    assert not undocumented, undocumented


def test_default_render(helm: Helm) -> None:
    docs = render(helm)
    kinds = sorted({d["kind"] for d in docs})
    assert kinds == sorted(
        {
            "CustomResourceDefinition",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "ConfigMap",
            "Service",
            "Deployment",
            "PodDisruptionBudget",
            "ClusterKopfPeering",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        }
        | ({"ConfigMap"})
    ), kinds
    # Without cert-manager the operator writes the webhook configurations itself.
    assert not [d for d in docs if "WebhookConfiguration" in d["kind"]]
    dep = find(docs, "Deployment", "-operator")
    assert dep["spec"]["replicas"] == 2
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--peering=haltgate" in args and "--no-manage-webhook-configurations" not in args
    assert "--priority" in args[0]  # distinct per replica, derived from the pod name
    pdb = find(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1


def test_safe_pod_defaults(helm: Helm) -> None:
    for docs in (render(helm), render(helm, "-f", str(FULL_VALUES))):
        for name, spec in pod_specs(docs):
            psc = spec["securityContext"]
            assert psc["runAsNonRoot"] is True, name
            assert psc["seccompProfile"]["type"] == "RuntimeDefault", name
            for c in spec["containers"]:
                sc = c["securityContext"]
                assert sc["readOnlyRootFilesystem"] is True, (name, c["name"])
                assert sc["allowPrivilegeEscalation"] is False, (name, c["name"])
                assert sc["capabilities"]["drop"] == ["ALL"], (name, c["name"])
                assert "add" not in sc["capabilities"], (name, c["name"])
                assert c["resources"]["requests"], (name, c["name"])


def test_crds_are_the_generated_ones() -> None:
    """charts/haltgate/crds/ is a copy of crds/ (`make crds` refreshes both)."""
    for src in sorted((REPO / "crds").glob("*.yaml")):
        copy = CHART / "crds" / src.name
        assert copy.exists(), f"{copy} missing: run `make crds`"
        assert copy.read_bytes() == src.read_bytes(), f"{copy} differs from {src}: run `make crds`"


def test_injection_config_is_what_the_operator_accepts(helm: Helm) -> None:
    for extra in ((), ("-f", str(FULL_VALUES))):
        docs = render(helm, *extra)
        cm = find(docs, "ConfigMap", "-injection")
        raw = yaml.safe_load(cm["data"]["injection-config.yaml"])
        cfg = injection.InjectionConfig.from_mapping(raw)  # rejects unknown keys
        assert cfg.operator_namespace == "haltgate-system"
        assert (
            cm["data"]["injection-template.yaml"]
            == (CHART / "files" / "injection-template.yaml").read_text()
        )
    assert cfg.image.startswith("registry.example/haltgate@sha256:")
    assert cfg.excluded_namespaces == frozenset({"monitoring"})


def _strip_ca(config: dict[str, Any]) -> list[dict[str, Any]]:
    hooks = []
    for hook in config["webhooks"]:
        hook = dict(hook)
        hook["clientConfig"] = {k: v for k, v in hook["clientConfig"].items() if k != "caBundle"}
        hooks.append(hook)
    return hooks


def test_cert_manager_webhook_configurations_match_the_operators(helm: Helm) -> None:
    """The chart's configurations (cert-manager mode) are the twin of
    haltgate.operator.webhookconfig: same names, rules, selectors, CEL, failure policy."""
    docs = render(
        helm,
        "--set",
        "webhook.certManager.enabled=true",
        "--set",
        "operator.excludedNamespaces={monitoring}",
    )
    service = find(docs, "Service", "-webhook")["metadata"]["name"]
    endpoint = webhookconfig.Endpoint(
        ca_bundle=b"x", service_name=service, service_namespace="haltgate-system"
    )
    cfg = injection.InjectionConfig(
        operator_namespace="haltgate-system", excluded_namespaces=frozenset({"monitoring"})
    )
    for kind, want in (
        ("MutatingWebhookConfiguration", webhookconfig.mutating_configuration(endpoint, cfg)),
        ("ValidatingWebhookConfiguration", webhookconfig.validating_configuration(endpoint, cfg)),
    ):
        got = find(docs, kind)
        assert got["metadata"]["name"] == want["metadata"]["name"]
        assert got["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
            f"haltgate-system/{service}"
        )
        assert _strip_ca(got) == _strip_ca(want)
    assert base64.b64decode(endpoint.client_config("x")["caBundle"]) == b"x"
    dep = find(docs, "Deployment", "-operator")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--no-manage-webhook-configurations" in args
    assert "--tls-dir=/etc/haltgate/webhook-tls" in args
    cert = find(docs, "Certificate")
    assert f"{service}.haltgate-system.svc" in cert["spec"]["dnsNames"]


def test_cert_manager_mode_drops_webhook_configuration_rbac(helm: Helm) -> None:
    def rule_groups(docs: list[dict[str, Any]]) -> set[str]:
        return {g for r in find(docs, "ClusterRole", "-operator")["rules"] for g in r["apiGroups"]}

    assert "admissionregistration.k8s.io" in rule_groups(render(helm))
    assert "admissionregistration.k8s.io" not in rule_groups(
        render(helm, "--set", "webhook.certManager.enabled=true")
    )


def test_no_delete_verbs(helm: Helm) -> None:
    for d in render(helm, "-f", str(FULL_VALUES)):
        if d["kind"] in ("ClusterRole", "Role"):
            for rule in d["rules"]:
                assert not {"delete", "deletecollection", "*"} & set(rule["verbs"]), rule


def test_audit_settings_need_a_database(helm: Helm) -> None:
    res = helm(
        "template",
        "t",
        str(CHART),
        *KV,
        "--set",
        "audit.export.enabled=true",
        "--set",
        "audit.export.destination=s3://b/p",
        check=False,
    )
    assert res.returncode != 0 and "audit.database.existingSecret" in res.stderr
    docs = render(
        helm,
        "--set",
        "audit.export.enabled=true",
        "--set",
        "audit.export.destination=s3://b/p",
        "--set",
        "audit.database.existingSecret=audit-db",
    )
    job = find(docs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    env = {e["name"]: e for e in job["containers"][0]["env"]}
    assert env["HALTGATE_AUDIT_DSN"]["valueFrom"]["secretKeyRef"] == {
        "name": "audit-db",
        "key": "dsn",
    }


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("valueFrom", e.get("value")) for e in container.get("env", [])}


def _envvar(command: Any, option: str) -> str | None:
    return next(p.envvar for p in command.params if p.name == option)


def test_pool_database_wiring(helm: Helm) -> None:
    """pools.database reaches the operator as HALTGATE_POOL_DSN (the variable its --pool-dsn
    reads); pools.migrate renders a `haltgate pool migrate` hook Job, with its own Secret or
    the operator's, and refuses to render without either."""
    from haltgate.cli.operator import operator as operator_cmd
    from haltgate.cli.pool import migrate_cmd

    assert _envvar(operator_cmd, "pool_dsn") == "HALTGATE_POOL_DSN"
    assert _envvar(migrate_cmd, "dsn") == "HALTGATE_POOL_DSN"
    docs = render(helm)
    operator_env = _env(
        find(docs, "Deployment", "-operator")["spec"]["template"]["spec"]["containers"][0]
    )
    assert "HALTGATE_POOL_DSN" not in operator_env
    assert not [d for d in docs if d["metadata"]["name"].endswith("-pool-migrate")]

    docs = render(
        helm,
        "--set",
        "pools.database.existingSecret=pool-admin",
        "--set",
        "pools.migrate.enabled=true",
    )
    operator_env = _env(
        find(docs, "Deployment", "-operator")["spec"]["template"]["spec"]["containers"][0]
    )
    assert operator_env["HALTGATE_POOL_DSN"] == {
        "secretKeyRef": {"name": "pool-admin", "key": "dsn"}
    }
    job = find(docs, "Job", "-pool-migrate")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["haltgate", "pool", "migrate"]
    assert _env(container) == {
        "HALTGATE_POOL_DSN": {"secretKeyRef": {"name": "pool-admin", "key": "dsn"}}
    }

    docs = render(
        helm,
        "--set",
        "pools.database.existingSecret=pool-admin",
        "--set",
        "pools.database.secretKey=uri",
        "--set",
        "pools.migrate.enabled=true",
        "--set",
        "pools.migrate.existingSecret=pool-owner",
        "--set",
        "pools.migrate.secretKey=owner",
    )
    container = find(docs, "Job", "-pool-migrate")["spec"]["template"]["spec"]["containers"][0]
    assert _env(container)["HALTGATE_POOL_DSN"] == {
        "secretKeyRef": {"name": "pool-owner", "key": "owner"}
    }
    operator_env = _env(
        find(docs, "Deployment", "-operator")["spec"]["template"]["spec"]["containers"][0]
    )
    assert operator_env["HALTGATE_POOL_DSN"]["secretKeyRef"] == {"name": "pool-admin", "key": "uri"}

    res = helm("template", "t", str(CHART), *KV, "--set", "pools.migrate.enabled=true", check=False)
    assert res.returncode != 0 and "pools.database.existingSecret" in res.stderr


def test_migration_jobs_share_one_pod_shape(helm: Helm) -> None:
    """The audit and pool migration Jobs come from one helper: same hook, pod and security
    settings; only the component, the DSN variable, its Secret and the resources differ."""
    docs = render(helm, "-f", str(FULL_VALUES))
    audit, pool = find(docs, "Job", "-audit-migrate"), find(docs, "Job", "-pool-migrate")
    assert audit["metadata"]["annotations"] == pool["metadata"]["annotations"]
    audit_pod, pool_pod = audit["spec"]["template"]["spec"], pool["spec"]["template"]["spec"]
    audit_c, pool_c = audit_pod.pop("containers")[0], pool_pod.pop("containers")[0]
    assert audit_pod == pool_pod and audit_pod["automountServiceAccountToken"] is False
    assert audit_c["command"] == ["haltgate", "audit", "migrate"]
    assert set(_env(audit_c)) == {"HALTGATE_AUDIT_DSN"}
    assert _env(pool_c)["HALTGATE_POOL_DSN"]["secretKeyRef"]["name"] == "pool-db-owner"
    for c in (audit_c, pool_c):
        del c["command"], c["env"], c["resources"]
    assert audit_c == pool_c


def test_full_render_has_every_optional_part(helm: Helm) -> None:
    docs = render(helm, "-f", str(FULL_VALUES))
    kinds = {d["kind"] for d in docs}
    assert {
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "Certificate",
        "Issuer",
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
        "StatefulSet",
        "Job",
        "CronJob",
    } <= kinds, kinds
    # The price table reaches sidecars through the operator (copied into every policy
    # ConfigMap, which pods of any namespace can mount), validated at operator start.
    from haltgate.operator.injection import InjectionConfig

    operator_config = find(docs, "ConfigMap", "-injection")
    injection_config = InjectionConfig.from_mapping(
        yaml.safe_load(operator_config["data"]["injection-config.yaml"])
    )
    assert injection_config.price_table is not None
    assert injection_config.price_table["version"] == "2026-11-private"
    assert not [d for d in docs if d["metadata"]["name"].endswith("-prices")]
    dashboards = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    assert len(dashboards) == len(list((CHART / "dashboards").glob("*.json")))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("injection.opaUID=17337", "injection.opaUID (17337) must differ from injection.proxyUID"),
        ("injection.adminPort=17000", "injection ports must be distinct"),
        ("injection.meshProxyUIDs={17337}", "injection.meshProxyUIDs: 17337 must differ"),
    ],
)
def test_values_the_operator_would_refuse_fail_the_install(
    helm: Helm, override: str, message: str
) -> None:
    """Refused by helm with the value's name, not a crash loop after a "successful"
    install."""
    res = helm("template", "t", str(CHART), *KV, "--set", override, check=False)
    assert res.returncode != 0 and message in res.stderr, res.stderr


def test_kube_version_and_pdb_only_with_replicas(helm: Helm) -> None:
    res = helm("template", "t", str(CHART), "--kube-version", "1.28.0", check=False)
    assert res.returncode != 0 and "kubeVersion" in res.stderr, res.stderr
    assert [d for d in render(helm) if d["kind"] == "PodDisruptionBudget"]
    single = render(helm, "--set", "operator.replicas=1", "--set", "operator.peering=")
    assert not [d for d in single if d["kind"] == "PodDisruptionBudget"]


def test_price_table_keys_checked_at_install(helm: Helm) -> None:
    """A key the operator's price table parser refuses fails `helm install`, naming it."""
    bad = '{"version":"x","effective":"y","models":{"m":{"input":1,"output":2,"cached":1}}}'
    res = helm("template", "t", str(CHART), *KV, "--set-json", f"pricing.table={bad}", check=False)
    assert res.returncode != 0 and "'cached' not allowed" in res.stderr, res.stderr
    res = helm(
        "template", "t", str(CHART), *KV, "--set-json", 'pricing.table={"models":{}}', check=False
    )
    assert res.returncode != 0 and "missing properties 'version', 'effective'" in res.stderr
    good = (
        '{"version":"x","effective":"y","models":{"m":{"input":1,"output":2,'
        '"cached_input":0.1,"max_output_tokens":10}}}'
    )
    assert (
        helm(
            "template", "t", str(CHART), *KV, "--set-json", f"pricing.table={good}", check=False
        ).returncode
        == 0
    )


def test_switching_certificate_modes_keeps_the_webhook(helm: Helm) -> None:
    """Operator-written configurations carry the release's Helm ownership (helm adopts them
    when switching to cert-manager); the chart's carry resource-policy keep (helm leaves
    them when switching back, for the new operator to replace in place)."""
    from haltgate.operator import webhookconfig

    dep = find(render(helm), "Deployment", "-operator")
    assert "--helm-release=haltgate" in dep["spec"]["template"]["spec"]["containers"][0]["args"]
    owned = webhookconfig.helm_owned(
        {"metadata": {"name": "x", "labels": {"a": "b"}}}, "haltgate", "haltgate-system"
    )
    assert owned["metadata"]["labels"] == {"a": "b", "app.kubernetes.io/managed-by": "Helm"}
    assert owned["metadata"]["annotations"] == {
        "meta.helm.sh/release-name": "haltgate",
        "meta.helm.sh/release-namespace": "haltgate-system",
    }
    docs = render(helm, "--set", "webhook.certManager.enabled=true")
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        meta = find(docs, kind)["metadata"]
        assert meta["annotations"]["helm.sh/resource-policy"] == "keep"


def test_notes_crd_upgrade_command_survives_changed_crds() -> None:
    # NOTES.txt as shipped (`helm template` does not render it; these lines are literal).
    out = (CHART / "templates" / "NOTES.txt").read_text()
    assert "kubectl apply --server-side --force-conflicts -f charts/haltgate/crds/" in out
    assert "kubectl delete secret,configmap -A -l app.kubernetes.io/managed-by=haltgate" in out


def _grants(rules: list[dict[str, Any]], resource: str) -> set[str]:
    """Verbs ``rules`` grant on a core-group ``resource`` (any name)."""
    return {
        v
        for r in rules
        if "" in r["apiGroups"] and resource in r["resources"] and not r.get("resourceNames")
        for v in r["verbs"]
    }


def test_nothing_sensitive_is_granted_cluster_wide(helm: Helm) -> None:
    """Issue 16: no cluster-wide secrets, pod writes or ConfigMap writes; those live in a
    ClusterRole that only per-namespace RoleBindings use."""
    for docs in (
        render(helm),
        render(helm, "-f", str(FULL_VALUES)),
        render(helm, "--set", "operator.agentNamespaces={a,b}"),
    ):
        bound = {d["roleRef"]["name"] for d in docs if d["kind"] == "ClusterRoleBinding"}
        for role in (
            d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] in bound
        ):
            rules = role["rules"]
            assert not [r for r in rules if "secrets" in r["resources"]], role
            assert not {"patch", "update", "create"} & _grants(rules, "pods"), role
            assert not {"create", "update", "patch"} & _grants(rules, "configmaps"), role
            assert not [
                r
                for r in rules
                if "apps" in r["apiGroups"] and {"patch", "update"} & set(r["verbs"])
            ], role
            assert not [r for r in rules if "*" in r["verbs"] or "*" in r["resources"]]
            assert not [
                r for r in rules if {"bind", "escalate", "impersonate"} & set(r["verbs"])
            ], role


def test_agent_namespaces_opt_in_with_a_rolebinding_each(helm: Helm) -> None:
    from haltgate.operator.injection import InjectionConfig

    docs = render(helm, "--set", "operator.agentNamespaces={research,support}")
    agent_role = find(docs, "ClusterRole", "-agent-namespace")
    bindings = [
        d
        for d in docs
        if d["kind"] == "RoleBinding" and d["roleRef"]["name"] == agent_role["metadata"]["name"]
    ]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["research", "support"]
    for b in bindings:
        assert b["roleRef"]["kind"] == "ClusterRole"
        assert b["subjects"] == [
            {"kind": "ServiceAccount", "name": "haltgate", "namespace": "haltgate-system"}
        ]
    assert not [
        d
        for d in docs
        if d["kind"] == "ClusterRoleBinding"
        and d["roleRef"]["name"] == agent_role["metadata"]["name"]
    ]
    # The only Secrets it may read: the two the operator creates, and the pool database
    # Secret it checks for Ready (same names as the
    # injection defaults the sidecars mount).
    named = [
        r for r in agent_role["rules"] if "secrets" in r["resources"] and r.get("resourceNames")
    ]
    defaults = InjectionConfig()
    assert named == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": sorted(
                [defaults.admin_token_secret, defaults.ca_key_secret, defaults.pool_database_secret]
            ),
            "verbs": ["get"],
        }
    ]
    assert not [
        d
        for d in render(helm)
        if d["kind"] == "RoleBinding" and d["roleRef"]["name"] == agent_role["metadata"]["name"]
    ]


def test_admission_guard_can_be_switched_off(helm: Helm) -> None:
    kinds = {d["kind"] for d in render(helm, "--set", "operator.admissionGuard=false")}
    assert "ValidatingAdmissionPolicy" not in kinds
    guard = find(render(helm), "ValidatingAdmissionPolicy")
    assert guard["spec"]["matchConditions"][0]["expression"].endswith(
        '"system:serviceaccount:haltgate-system:haltgate"'
    )
