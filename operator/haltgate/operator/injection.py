"""What the webhook adds to an agent pod, as a pure function.

:func:`mutate_pod` takes the pod as the apiserver sent it, the namespace's labels, the
GovernancePolicies of the namespace, the operator's :class:`InjectionConfig` and the
:class:`InjectionTemplate`, and returns one of :class:`Skip`, :class:`Refuse` or
:class:`Inject`. No I/O, no clock: the webhook handler does the lookups, this module decides.
That keeps every decision testable from files (``tests/operator/testdata``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from haltgate.operator import refusals, selectors

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


# ----------------------------------------------------------------------------- template
_PLACEHOLDER = re.compile(r"\{\{\s*\.([A-Za-z][A-Za-z0-9]*)\s*\}\}")
_SECTIONS = (
    "initContainer",
    "verifyContainer",
    "sidecar",
    "opaContainer",
    "shipperContainer",
    "sidecarEnvOPA",
    "sidecarEnvPool",
    "sidecarEnvPrices",
    "volumes",
    "agentVolumeMounts",
    "agentEnv",
    "agentEnvExplicit",
)


class TemplateError(ValueError):
    """The injection template is malformed or uses an unknown name."""


@dataclass(frozen=True, slots=True)
class InjectionTemplate:
    """The parsed injection template (``charts/haltgate/files/injection-template.yaml``)."""

    sections: Mapping[str, Any]
    source: str = "<template>"

    @classmethod
    def from_text(cls, text: str, source: str = "<template>") -> InjectionTemplate:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise TemplateError(f"{source}: invalid YAML: {e}") from e
        if not isinstance(doc, dict):
            raise TemplateError(f"{source}: must be a mapping of sections")
        missing = [s for s in _SECTIONS if s not in doc]
        extra = sorted(set(doc) - set(_SECTIONS))
        if missing or extra:
            raise TemplateError(f"{source}: missing sections {missing}, unknown sections {extra}")
        tpl = cls(doc, source)
        # Fail at start-up, not on the first pod: every placeholder must be known.
        tpl.render(InjectionConfig().template_values(policy="check", mode="transparent"))
        return tpl

    @classmethod
    def load(cls, path: str | Path) -> InjectionTemplate:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise TemplateError(f"{p}: cannot read: {e.strerror}") from e
        return cls.from_text(text, str(p))

    def render(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Every section with its placeholders replaced (a fresh deep copy)."""

        def sub(node: Any, path: str) -> Any:
            if isinstance(node, dict):
                return {k: sub(v, f"{path}.{k}") for k, v in node.items()}
            if isinstance(node, list):
                return [sub(v, f"{path}[{i}]") for i, v in enumerate(node)]
            if not isinstance(node, str):
                return node
            whole = _PLACEHOLDER.fullmatch(node.strip())
            if whole:
                return copy.deepcopy(_value(whole.group(1), path))
            return _PLACEHOLDER.sub(lambda m: str(_value(m.group(1), path)), node)

        def _value(name: str, path: str) -> Any:
            if name not in values:
                raise TemplateError(f"{self.source}: {path}: unknown name .{name}")
            return values[name]

        rendered: dict[str, Any] = sub(dict(self.sections), "")
        return rendered


def default_template_path() -> Path:
    """The template shipped in the wheel, or the chart's copy in a source checkout."""
    here = Path(__file__).resolve().parent
    packaged = here / "injection-template.yaml"
    if packaged.is_file():
        return packaged
    # operator/haltgate/operator/ -> repository root
    return here.parents[2] / "charts" / "haltgate" / "files" / "injection-template.yaml"


# ----------------------------------------------------------------------------- policies
@dataclass(frozen=True, slots=True)
class PolicyRef:
    """What injection needs to know about one GovernancePolicy of the pod's namespace."""

    name: str
    generation: int
    selector: Mapping[str, Any] = field(default_factory=dict)
    uses_opa: bool = False
    pool: str | None = None

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> PolicyRef:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        return cls(
            name=str(meta.get("name", "")),
            generation=int(meta.get("generation") or 0),
            selector=spec.get("selector") or {},
            uses_opa=spec.get("opa") is not None,
            pool=spec.get("pool") or None,
        )


# ----------------------------------------------------------------------------- outcomes
@dataclass(frozen=True, slots=True)
class Skip:
    """Admit the pod unchanged."""

    reason: str
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Refuse:
    """Refuse the pod: it opted in but cannot be governed as asked."""

    code: str
    path: str
    reason: str
    more: tuple[refusals.Refusal, ...] = ()
    """Further reasons, so one round trip shows the user everything to fix."""

    @property
    def message(self) -> str:
        parts = [f"{self.path}: {self.reason}"]
        parts += [f"{r.path}: {r.reason} ({r.code})" for r in self.more]
        return f"haltgate: pod refused ({self.code}): " + "; ".join(parts)


@dataclass(frozen=True, slots=True)
class Inject:
    """Admit the pod as ``pod`` (the input with haltgate's pieces added)."""

    pod: dict[str, Any]
    record: dict[str, Any]
    warnings: tuple[str, ...] = ()


Outcome = Skip | Refuse | Inject


# ----------------------------------------------------------------------------- decision
def injection_requested(pod: Mapping[str, Any], namespace_labels: Mapping[str, str]) -> bool:
    """Whether the pod opted in: annotation "true", or namespace label "enabled".

    An explicit "false" annotation or a "disabled" namespace label wins over any opt-in.
    """
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    pod_says = str(annotations.get(ANNOTATION_INJECT, "")).strip().lower()
    # Exact match for the label: the webhook's namespaceSelector matches it exactly too.
    ns_says = namespace_labels.get(LABEL_NAMESPACE_INJECTION, "")
    if pod_says == "false" or ns_says == "disabled":
        return False
    return pod_says == "true" or ns_says == "enabled"


def mutate_pod(
    pod: Mapping[str, Any],
    *,
    namespace: str,
    namespace_labels: Mapping[str, str],
    policies: Sequence[PolicyRef],
    config: InjectionConfig,
    template: InjectionTemplate,
) -> Outcome:
    """Decide what happens to a pod at CREATE: skip, refuse, or inject (pure)."""
    if not injection_requested(pod, namespace_labels):
        return Skip("not opted in")
    if config.excluded(namespace):
        return Skip(
            f"namespace {namespace} is never injected",
            (
                f"haltgate: namespace {namespace} is excluded from injection; "
                f"this pod runs without governance",
            ),
        )

    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    mode_raw = str(annotations.get(ANNOTATION_MODE, "transparent")).strip().lower()
    if mode_raw not in ("transparent", "explicit"):
        return Refuse(
            "invalid_mode",
            f"metadata.annotations[{ANNOTATION_MODE}]",
            f"must be transparent or explicit, got {mode_raw!r}",
        )
    mode: Mode = "explicit" if mode_raw == "explicit" else "transparent"

    chosen = _choose_policy(pod, namespace, policies)
    if isinstance(chosen, Refuse):
        return chosen

    rendered = template.render(config.template_values(policy=chosen.name, mode=mode))

    if _looks_injected(pod):
        return _verify_existing(pod, rendered, chosen, config)

    found = refusals.refusals(
        pod,
        proxy_uid=config.proxy_uid,
        reserved_containers=CONTAINER_NAMES,
        reserved_volumes=_volume_names(rendered),
        mesh_uids=config.mesh_proxy_uids,
        mesh_containers=config.mesh_containers,
    )
    if found:
        first = found[0]
        return Refuse(first.code, first.path, first.reason, tuple(found[1:]))

    out = copy.deepcopy(dict(pod))
    spec = out.setdefault("spec", {})
    ours = _our_init_containers(rendered, chosen, config)
    if _guaranteed(spec):
        for container in ours:
            _make_guaranteed(container, config.guaranteed_cpu)
    volumes = list(rendered["volumes"])
    user_init = list(spec.get("initContainers") or [])
    agent_env = list(rendered["agentEnv"])
    if mode == "explicit":
        agent_env += rendered["agentEnvExplicit"]
    for container in user_init + list(spec.get("containers") or []):
        if container.get("name") in config.mesh_containers:
            continue  # a service mesh's own container: not an agent, keeps its trust store
        _merge_named(container, "env", agent_env)
        _merge_named(container, "volumeMounts", rendered["agentVolumeMounts"])
    spec["initContainers"] = ours + user_init
    spec["volumes"] = list(spec.get("volumes") or []) + volumes

    record = {
        "version": RECORD_VERSION,
        "policy": chosen.name,
        "policyGeneration": chosen.generation,
        "mode": mode,
        "initContainers": [c["name"] for c in ours],
        "volumes": [v["name"] for v in volumes],
        "agentContainers": [
            c.get("name", "")
            for c in user_init + (spec.get("containers") or [])
            if c.get("name") not in config.mesh_containers
        ],
        "template": template_digest(rendered),
    }
    out_meta = out.setdefault("metadata", {})
    out_meta.setdefault("annotations", {})[ANNOTATION_INJECTED] = json.dumps(
        record, sort_keys=True, separators=(",", ":")
    )
    out_meta.setdefault("labels", {})[LABEL_POLICY] = chosen.name
    return Inject(out, record)


def template_digest(rendered: Mapping[str, Any]) -> str:
    """Short digest of the rendered pieces: tells which template/config a pod got."""
    blob = json.dumps(rendered, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _choose_policy(
    pod: Mapping[str, Any], namespace: str, policies: Sequence[PolicyRef]
) -> PolicyRef | Refuse:
    meta = pod.get("metadata") or {}
    named = str((meta.get("annotations") or {}).get(ANNOTATION_POLICY, "")).strip()
    if named:
        for p in policies:
            if p.name == named:
                return p
        return Refuse(
            "unknown_policy",
            f"metadata.annotations[{ANNOTATION_POLICY}]",
            f"no GovernancePolicy {named!r} in namespace {namespace}; an agent "
            f"must not start ungoverned",
        )
    labels = meta.get("labels") or {}
    matching = [p for p in policies if selectors.matches(p.selector, labels)]
    if len(matching) > 1:
        # A policy with an empty selector is the namespace's default: a policy that names
        # the pod's labels wins over it.
        specific = [p for p in matching if not _selects_everything(p.selector)]
        matching = specific or matching
    if not matching:
        return Refuse(
            "no_policy",
            "metadata.labels",
            f"no GovernancePolicy in namespace {namespace} selects this pod; create "
            f"one or name it with the {ANNOTATION_POLICY} annotation (an agent must "
            f"not start ungoverned)",
        )
    if len(matching) > 1:
        names = ", ".join(sorted(p.name for p in matching))
        return Refuse(
            "ambiguous_policy",
            "metadata.labels",
            f"several GovernancePolicies select this pod ({names}); name one with "
            f"the {ANNOTATION_POLICY} annotation",
        )
    return matching[0]


_QOS_RESOURCES = ("cpu", "memory")


def _guaranteed(spec: Mapping[str, Any]) -> bool:
    """The pod is of QoS class Guaranteed: every container sets cpu and memory limits, and
    requests (when set) equal them."""
    containers = list(spec.get("initContainers") or []) + list(spec.get("containers") or [])
    if not containers:
        return False
    for c in containers:
        res = c.get("resources") or {}
        limits, requests = res.get("limits") or {}, res.get("requests") or {}
        for name in _QOS_RESOURCES:
            if name not in limits or str(requests.get(name, limits[name])) != str(limits[name]):
                return False
    return True


def _make_guaranteed(container: dict[str, Any], cpu: str) -> None:
    """Requests equal to limits: memory at the template's limit, CPU ``cpu`` for the
    long-running containers (the run-once init step keeps its small request)."""
    res = container.get("resources") or {}
    limits, requests = dict(res.get("limits") or {}), dict(res.get("requests") or {})
    memory = limits.get("memory") or requests.get("memory")
    runs_once = container.get("restartPolicy") != "Always"
    both = {"cpu": requests.get("cpu", cpu) if runs_once else cpu, "memory": memory}
    container["resources"] = {"requests": dict(both), "limits": dict(both)}


def _selects_everything(selector: Mapping[str, Any]) -> bool:
    return not selector.get("matchLabels") and not selector.get("matchExpressions")


def _our_init_containers(
    rendered: Mapping[str, Any], policy: PolicyRef, config: InjectionConfig
) -> list[dict[str, Any]]:
    """haltgate's init containers, in start order: iptables step, shipper, proxy, OPA.

    The shipper starts before the proxy so that the kubelet, which stops native sidecars in
    reverse order, stops it after the proxy: it can ship the proxy's last records."""
    sidecar = copy.deepcopy(rendered["sidecar"])
    ours = [copy.deepcopy(rendered["initContainer"])] if config.redirect == "init" else []
    if config.audit_database_secret:
        ours.append(copy.deepcopy(rendered["shipperContainer"]))
    ours.append(sidecar)
    if policy.pool:
        sidecar.setdefault("env", []).extend(copy.deepcopy(rendered["sidecarEnvPool"]))
    if config.price_table is not None:
        sidecar.setdefault("env", []).extend(copy.deepcopy(rendered["sidecarEnvPrices"]))
    if policy.uses_opa:
        sidecar.setdefault("env", []).extend(copy.deepcopy(rendered["sidecarEnvOPA"]))
        ours.append(copy.deepcopy(rendered["opaContainer"]))
    if config.redirect == "node":
        # Last of ours, so the sidecar (a native sidecar) is up; before the agent's.
        ours.append(copy.deepcopy(rendered["verifyContainer"]))
    return ours


def _looks_injected(pod: Mapping[str, Any]) -> bool:
    """The webhook's record is there: a second pass (or a copied pod). A pod that only uses
    one of haltgate's container names is the user's mistake, refused as ``name_conflict``
    by the rules; one that carries the record must carry genuine pieces."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    return ANNOTATION_INJECTED in annotations


def _verify_existing(
    pod: Mapping[str, Any], rendered: Mapping[str, Any], policy: PolicyRef, config: InjectionConfig
) -> Outcome:
    """A pod that already carries haltgate's pieces (reinvocation, or a copied pod).

    Accept it only if the pieces are exactly what this operator would inject now; otherwise
    someone could pre-fill a look-alike sidecar and start ungoverned.
    """
    spec = pod.get("spec") or {}
    init = spec.get("initContainers") or []
    wanted = _our_init_containers(rendered, policy, config)
    # By name, in order: a webhook called after ours (a mesh injector; reinvocationPolicy
    # IfNeeded calls ours again) may have put its own init containers first.
    have = [_without_token_mount(c) for c in init if c.get("name") in CONTAINER_NAMES]
    # As injected into a Guaranteed pod (requests = limits), or as the template has them.
    guaranteed = copy.deepcopy(wanted)
    for container in guaranteed:
        _make_guaranteed(container, config.guaranteed_cpu)
    if len(have) != len(wanted) or not all(
        _contains(h, w) or _contains(h, g) for h, w, g in zip(have, wanted, guaranteed, strict=True)
    ):
        return Refuse(
            "forged_injection",
            "spec.initContainers",
            "the pod carries haltgate containers or the "
            f"{ANNOTATION_INJECTED} annotation, but not the ones this operator "
            "injects; remove them and let the webhook inject",
        )
    # Ours are genuine; everything else (the agent's, a later webhook's) must still pass
    # every rule.
    agent_only = copy.deepcopy(dict(pod))
    agent_spec = agent_only.setdefault("spec", {})
    agent_spec["initContainers"] = [c for c in init if c.get("name") not in CONTAINER_NAMES]
    ours = _volume_names(rendered)
    agent_spec["volumes"] = [v for v in (spec.get("volumes") or []) if v.get("name") not in ours]
    found = refusals.refusals(
        agent_only,
        proxy_uid=config.proxy_uid,
        reserved_containers=CONTAINER_NAMES,
        reserved_volumes=ours,
        mesh_uids=config.mesh_proxy_uids,
        mesh_containers=config.mesh_containers,
    )
    if found:
        first = found[0]
        return Refuse(first.code, first.path, first.reason, tuple(found[1:]))
    return Skip("already injected")


SERVICE_ACCOUNT_TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def _without_token_mount(container: Mapping[str, Any]) -> dict[str, Any]:
    """The container without the API token mount the apiserver's ServiceAccount plugin adds
    to every container (also to ours, when it runs again before a reinvocation)."""
    out = dict(container)
    mounts = [
        m
        for m in container.get("volumeMounts") or []
        if m.get("mountPath") != SERVICE_ACCOUNT_TOKEN_DIR
    ]
    if mounts:
        out["volumeMounts"] = mounts
    else:
        out.pop("volumeMounts", None)
    return out


def _contains(have: Any, want: Any) -> bool:
    """``want`` is a sub-document of ``have`` (the apiserver adds defaults to what we set)."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(
            k in have and _contains(have[k], v) for k, v in want.items()
        )
    if isinstance(want, list):
        return (
            isinstance(have, list)
            and len(have) == len(want)
            and all(_contains(h, w) for h, w in zip(have, want, strict=True))
        )
    if isinstance(want, int) and isinstance(have, str):
        return str(want) == have
    return bool(have == want)


def _merge_named(
    container: dict[str, Any], list_field: str, items: Sequence[Mapping[str, Any]]
) -> None:
    """Append ``items`` to ``container[list_field]``, replacing entries of the same name.

    Ours replace the user's: an agent that set its own SSL_CERT_FILE would otherwise fail
    TLS through the inspecting proxy, and a user-set HTTPS_PROXY would point elsewhere.
    """
    names = {i["name"] for i in items}
    kept = [e for e in (container.get(list_field) or []) if e.get("name") not in names]
    container[list_field] = kept + [copy.deepcopy(dict(i)) for i in items]


def _volume_names(rendered: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(v["name"] for v in rendered["volumes"])
