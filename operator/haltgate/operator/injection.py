"""The names injection writes into pods (annotations, labels, containers, volumes, paths)
and the operator-wide :class:`InjectionConfig` (the chart's ``injection`` values).

The decision itself is :func:`haltgate.operator.pod_mutation.mutate_pod`; the template it
renders is :mod:`haltgate.operator.injection_template`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

# ----------------------------------------------------------------------------- names
ANNOTATION_INJECT = "haltgate.dev/inject"
"""Pod (template) annotation: "true" opts in, "false" opts out (and wins over the namespace)."""
ANNOTATION_POLICY = "haltgate.dev/policy"
"""Pod annotation naming the GovernancePolicy; otherwise the policy whose selector matches."""
ANNOTATION_MODE = "haltgate.dev/mode"
"""Pod annotation: "transparent" (default, iptables only) or "explicit" (adds HTTP(S)_PROXY)."""
ANNOTATION_INJECTED = "haltgate.dev/injected"
"""Written by the webhook: JSON record of what was injected and from which policy generation."""
LABEL_NAMESPACE_INJECTION = "haltgate.dev/injection"
"""Namespace label: "enabled" opts every pod in; "disabled" opts every pod out."""
LABEL_POLICY = "haltgate.dev/policy"
"""Pod label set by the webhook, so the operator finds the pods of a policy (halts, counts)."""

INIT_CONTAINER_NAME = "haltgate-init"
VERIFY_CONTAINER_NAME = "haltgate-verify"
SIDECAR_CONTAINER_NAME = "haltgate-proxy"
OPA_CONTAINER_NAME = "haltgate-opa"
SHIPPER_CONTAINER_NAME = "haltgate-audit-shipper"
CONTAINER_NAMES = frozenset(
    {
        INIT_CONTAINER_NAME,
        SIDECAR_CONTAINER_NAME,
        OPA_CONTAINER_NAME,
        SHIPPER_CONTAINER_NAME,
        VERIFY_CONTAINER_NAME,
    }
)

VOLUME_POLICY = "haltgate-policy"
VOLUME_CA_BUNDLE = "haltgate-ca-bundle"
VOLUME_CA_KEY = "haltgate-ca-key"
VOLUME_ADMIN_TOKEN = "haltgate-admin-token"
VOLUME_STATE = "haltgate-state"
VOLUME_TMP = "haltgate-tmp"
VOLUME_XTABLES = "haltgate-xtables"

POLICY_DIR = "/etc/haltgate/policy"
POLICY_FILE = f"{POLICY_DIR}/policy.yaml"
CA_BUNDLE_DIR = "/etc/haltgate/ca"
CA_KEY_DIR = "/etc/haltgate/ca-key"
ADMIN_TOKEN_DIR = "/etc/haltgate/admin"
ADMIN_TOKEN_KEY = "token"
STATE_DIR = "/var/lib/haltgate"
AUDIT_SPOOL_DIR = f"{STATE_DIR}/audit"
"""The sidecar's spool (``--state-dir`` + ``/audit``), shared with the shipper container."""
XTABLES_DIR = "/run/xtables"
PRICE_TABLE_KEY = "prices.yaml"
"""Key of the chart's price table in each policy ConfigMap (mounted at POLICY_DIR)."""

ALWAYS_EXCLUDED_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})
RECORD_VERSION = 1
POLICY_CONFIGMAP_PREFIX = "haltgate-policy-"

Mode = Literal["transparent", "explicit"]


def policy_configmap_name(policy: str) -> str:
    """Name of the ConfigMap the operator renders for a GovernancePolicy."""
    return f"{POLICY_CONFIGMAP_PREFIX}{policy}"


# ----------------------------------------------------------------------------- config
@dataclass(frozen=True, slots=True)
class InjectionConfig:
    """Operator-wide injection settings (the chart's ``injection`` values)."""

    image: str = "ghcr.io/haltgate/haltgate:0.1.0"
    """Image holding the ``haltgate`` CLI: runs the iptables step and the sidecar."""
    opa_image: str = "openpolicyagent/opa:1.22.2-static"
    """Image of the OPA container, injected only for policies with ``spec.opa``."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    proxy_uid: int = 17337
    """UID (and GID) of the sidecar. The iptables rules exempt exactly this UID, so no agent
    container may run as it."""
    opa_uid: int = 17338
    """UID of the OPA container (its traffic is redirected like the agent's)."""
    explicit_port: int = 17000
    """Sidecar port for explicit-proxy clients (HTTP(S)_PROXY) and alias paths."""
    transparent_port: int = 17001
    """Sidecar port the iptables rules redirect every other TCP connection to."""
    admin_port: int = 17020
    """Sidecar admin API (halt, lift, reset, readyz); bearer token from the admin Secret."""
    metrics_port: int = 17090
    opa_port: int = 8181
    opa_diagnostic_port: int = 8282
    ca_bundle_config_map: str = "haltgate-ca-bundle"
    """ConfigMap in the pod's namespace with ``ca-bundle.crt`` (public roots + haltgate CA)
    and ``haltgate-ca.crt``: what agent containers trust."""
    ca_key_secret: str = "haltgate-ca"
    """Secret in the pod's namespace with the inspection CA (ca.crt, ca.key); sidecar only."""
    admin_token_secret: str = "haltgate-admin-token"
    """Secret in the pod's namespace holding the sidecar admin token (key ``token``)."""
    pool_database_secret: str = "haltgate-pool-db"
    """Secret in the pod's namespace with the BudgetPool database URI (key ``dsn``), for
    pods whose policy names a pool; made by whoever provisions the database."""
    audit_database_secret: str = ""
    """Secret in the pod's namespace with the audit database URI (key ``dsn``, a role in
    ``haltgate_audit_writer``). Set: every pod gets the audit shipper container, which ships
    the sidecar's spool to PostgreSQL. Empty: records stay in the pod's spool."""
    shipper_metrics_port: int = 17091
    """Prometheus metrics of the audit shipper container (ship lag, errors)."""
    price_table: Mapping[str, Any] | None = None
    """The chart's ``pricing.table``: copied into every policy ConfigMap and loaded by the
    sidecar instead of the price table shipped in the image. None: the shipped one."""
    operator_namespace: str = "haltgate-system"
    """Never injected, so the operator can always recover."""
    excluded_namespaces: frozenset[str] = frozenset()
    """More namespaces never injected, on top of kube-system, kube-public, kube-node-lease."""
    mesh_proxy_uids: tuple[int, ...] = ()
    """UIDs of a service mesh's proxy (Istio's Envoy 1337, Linkerd's 2102): the iptables
    step leaves their traffic to the mesh (agent -> haltgate -> mesh), and only the mesh's
    own containers (``mesh_containers``) may run as them. Empty: no mesh."""
    redirect: Literal["init", "node"] = "init"
    """Who installs the pod's egress rules: "init", haltgate's init container (NET_ADMIN,
    root); "node", a node-side installer (``haltgate node apply``) so that pods pass Pod
    Security ``restricted``, with a capability-free verify step that keeps the agent from
    starting until the rules are there."""
    verify_uid: int = 17339
    """UID of the verify step (redirected like an agent, never the proxy's)."""
    guaranteed_cpu: str = "250m"
    """CPU of the sidecar and OPA containers in a pod of QoS class Guaranteed (every agent
    container has limits equal to requests): haltgate's containers then get requests equal
    to limits too (this CPU; memory at their limit), so the pod stays Guaranteed."""
    mesh_containers: frozenset[str] = frozenset()
    """Names of a mesh's containers (e.g. istio-init, istio-proxy, istio-validation) that
    may run as a mesh proxy UID and, for a run-once init container, add NET_ADMIN/NET_RAW.
    Trusted by name: prefer the mesh's CNI mode, which needs no capabilities."""

    def __post_init__(self) -> None:
        ports = {
            "explicitPort": self.explicit_port,
            "transparentPort": self.transparent_port,
            "adminPort": self.admin_port,
            "metricsPort": self.metrics_port,
            "opaPort": self.opa_port,
            "opaDiagnosticPort": self.opa_diagnostic_port,
            "shipperMetricsPort": self.shipper_metrics_port,
        }
        for name, port in ports.items():
            if not 1 <= port <= 65535:
                raise ValueError(f"injection.{name}: must be in 1..65535, got {port}")
        if len(set(ports.values())) != len(ports):
            raise ValueError(f"injection ports must be distinct: {ports}")
        for name, uid in (("proxyUID", self.proxy_uid), ("opaUID", self.opa_uid)):
            if uid < 1:
                raise ValueError(f"injection.{name}: must be >= 1 (never root), got {uid}")
        if self.redirect not in ("init", "node"):
            raise ValueError(f"injection.redirect: must be init or node, got {self.redirect!r}")
        if self.verify_uid < 1 or self.verify_uid in (self.proxy_uid, self.opa_uid):
            raise ValueError(
                "injection.verifyUID: must be >= 1 and differ from proxyUID and "
                "opaUID (its probe must be redirected like an agent's)"
            )
        for uid in self.mesh_proxy_uids:
            if uid < 1 or uid in (self.proxy_uid, self.opa_uid):
                raise ValueError(
                    f"injection.meshProxyUIDs: {uid} must be >= 1 and differ "
                    f"from proxyUID and opaUID"
                )
        if self.proxy_uid == self.opa_uid:
            raise ValueError(
                "injection.opaUID: must differ from proxyUID (the proxy UID is "
                "the one exempt from redirection)"
            )
        if not self.image or not self.opa_image:
            raise ValueError("injection.image and injection.opaImage must be set")
        if self.price_table is not None:
            # Refuse a malformed table at operator start, not in every sidecar.
            from haltgate.governance.pricing import PriceTableError, parse_table

            try:
                parse_table(dict(self.price_table))
            except (PriceTableError, TypeError) as e:
                raise ValueError(f"injection.priceTable: {e}") from e

    def excluded(self, namespace: str) -> bool:
        """True for namespaces the webhook never injects into."""
        return (
            namespace in ALWAYS_EXCLUDED_NAMESPACES
            or namespace == self.operator_namespace
            or namespace in self.excluded_namespaces
        )

    def template_values(self, *, policy: str, mode: Mode) -> dict[str, Any]:
        """The names a template may use, with their typed values."""
        return {
            "image": self.image,
            "opaImage": self.opa_image,
            "imagePullPolicy": self.image_pull_policy,
            "proxyUID": self.proxy_uid,
            "proxyUIDText": str(self.proxy_uid),
            "opaUID": self.opa_uid,
            "explicitPort": self.explicit_port,
            "transparentPort": self.transparent_port,
            "transparentPortText": str(self.transparent_port),
            "adminPortText": str(self.admin_port),
            "metricsPortText": str(self.metrics_port),
            "opaPortText": str(self.opa_port),
            "opaDiagnosticPortText": str(self.opa_diagnostic_port),
            "adminPort": self.admin_port,
            "metricsPort": self.metrics_port,
            "opaPort": self.opa_port,
            "opaDiagnosticPort": self.opa_diagnostic_port,
            "initContainerName": INIT_CONTAINER_NAME,
            "sidecarName": SIDECAR_CONTAINER_NAME,
            "opaName": OPA_CONTAINER_NAME,
            "policyName": policy,
            "policyConfigMap": policy_configmap_name(policy),
            "policyVolume": VOLUME_POLICY,
            "policyDir": POLICY_DIR,
            "policyFile": POLICY_FILE,
            "caBundleVolume": VOLUME_CA_BUNDLE,
            "caBundleConfigMap": self.ca_bundle_config_map,
            "caBundleDir": CA_BUNDLE_DIR,
            "caKeyVolume": VOLUME_CA_KEY,
            "caKeySecret": self.ca_key_secret,
            "caKeyDir": CA_KEY_DIR,
            "adminTokenVolume": VOLUME_ADMIN_TOKEN,
            "adminTokenSecret": self.admin_token_secret,
            "adminTokenDir": ADMIN_TOKEN_DIR,
            "poolDatabaseSecret": self.pool_database_secret,
            "adminTokenFile": f"{ADMIN_TOKEN_DIR}/{ADMIN_TOKEN_KEY}",
            "stateVolume": VOLUME_STATE,
            "stateDir": STATE_DIR,
            "tmpVolume": VOLUME_TMP,
            "mode": mode,
            "shipperName": SHIPPER_CONTAINER_NAME,
            "auditSpoolDir": AUDIT_SPOOL_DIR,
            "auditDatabaseSecret": self.audit_database_secret,
            "shipperMetricsPort": self.shipper_metrics_port,
            "shipperMetricsPortText": str(self.shipper_metrics_port),
            "priceTableKey": PRICE_TABLE_KEY,
            "xtablesVolume": VOLUME_XTABLES,
            "xtablesDir": XTABLES_DIR,
            "xtablesLockFile": f"{XTABLES_DIR}/xtables.lock",
            "meshProxyUIDsText": ",".join(str(u) for u in self.mesh_proxy_uids),
            "verifyContainerName": VERIFY_CONTAINER_NAME,
            "verifyUID": self.verify_uid,
        }

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> InjectionConfig:
        """Build from camelCase keys (the chart's values), rejecting unknown keys."""
        names = {
            "image": "image",
            "opaImage": "opa_image",
            "imagePullPolicy": "image_pull_policy",
            "proxyUID": "proxy_uid",
            "opaUID": "opa_uid",
            "explicitPort": "explicit_port",
            "transparentPort": "transparent_port",
            "adminPort": "admin_port",
            "metricsPort": "metrics_port",
            "opaPort": "opa_port",
            "opaDiagnosticPort": "opa_diagnostic_port",
            "caBundleConfigMap": "ca_bundle_config_map",
            "caKeySecret": "ca_key_secret",
            "adminTokenSecret": "admin_token_secret",
            "poolDatabaseSecret": "pool_database_secret",
            "auditDatabaseSecret": "audit_database_secret",
            "shipperMetricsPort": "shipper_metrics_port",
            "priceTable": "price_table",
            "operatorNamespace": "operator_namespace",
            "excludedNamespaces": "excluded_namespaces",
            "meshProxyUIDs": "mesh_proxy_uids",
            "meshContainers": "mesh_containers",
            "guaranteedCPU": "guaranteed_cpu",
            "redirect": "redirect",
            "verifyUID": "verify_uid",
        }
        unknown = sorted(set(raw) - set(names))
        if unknown:
            raise ValueError(f"injection: unknown keys {unknown}")
        kwargs: dict[str, Any] = {names[k]: v for k, v in raw.items()}
        if "excluded_namespaces" in kwargs:
            kwargs["excluded_namespaces"] = frozenset(kwargs["excluded_namespaces"])
        if "mesh_proxy_uids" in kwargs:
            kwargs["mesh_proxy_uids"] = tuple(int(u) for u in kwargs["mesh_proxy_uids"] or ())
        if "mesh_containers" in kwargs:
            kwargs["mesh_containers"] = frozenset(kwargs["mesh_containers"] or ())
        if not kwargs.get("price_table"):
            kwargs["price_table"] = None  # the chart's empty default: the shipped table
        return cls(**kwargs)
