"""The webhook configurations the operator keeps in the cluster.

kopf can manage webhook configurations too, but it cannot express what haltgate needs:
``matchConditions`` (only opted-in pods ever reach the webhook, so an operator outage
refuses only those and never blocks the rest of the cluster), a ``namespaceSelector`` that
excludes the system namespaces and the operator's own, and a 10 s timeout.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from haltgate.governance.policy import API_GROUP
from haltgate.operator import injection

MUTATING_NAME = "haltgate-injector"
VALIDATING_NAME = "haltgate-validator"
INJECT_WEBHOOK_ID = "inject"
VALIDATE_POLICY_ID = "validate-policy"
VALIDATE_POOL_ID = "validate-pool"
VALIDATE_POD_ID = "validate-pod"
VALIDATE_EPHEMERAL_ID = "validate-ephemeral"
ANNOTATIONS_ID = "warn-annotations"
TIMEOUT_SECONDS = 10
LABELS = {"app.kubernetes.io/part-of": "haltgate", "app.kubernetes.io/managed-by": "haltgate"}


def _annotation_is(key: str, value: str) -> str:
    # lowerAscii()/trim() keep CEL in step with pod_mutation.injection_requested().
    return (
        f"has(object.metadata.annotations) && '{key}' in object.metadata.annotations && "
        f"object.metadata.annotations['{key}'].trim().lowerAscii() == '{value}'"
    )


ANNOTATED_CEL = _annotation_is(injection.ANNOTATION_INJECT, "true")
"""Pod opted in by annotation."""
NOT_DECIDED_BY_ANNOTATION_CEL = (
    f"!({_annotation_is(injection.ANNOTATION_INJECT, 'true')}) && "
    f"!({_annotation_is(injection.ANNOTATION_INJECT, 'false')})"
)
"""Pod says neither true nor false: the namespace label decides."""
# Webhook matchConditions have no namespaceObject, so the namespace label is matched by the
# namespaceSelector of a second webhook. Together the two are the twin of
# pod_mutation.injection_requested().


def helm_owned(config: dict[str, Any], release: str | None, namespace: str) -> dict[str, Any]:
    """``config`` with Helm's ownership metadata for ``release`` (unchanged when None), so
    that ``helm upgrade`` can adopt the object the operator wrote (pure)."""
    if not release:
        return config
    meta = dict(config["metadata"])
    meta["labels"] = {**meta.get("labels", {}), "app.kubernetes.io/managed-by": "Helm"}
    meta["annotations"] = {
        **meta.get("annotations", {}),
        "meta.helm.sh/release-name": release,
        "meta.helm.sh/release-namespace": namespace,
    }
    return {**config, "metadata": meta}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the apiserver reaches the webhook: a URL, or a Service in the operator's
    namespace. ``ca_bundle`` is the PEM the apiserver trusts for it."""

    ca_bundle: bytes
    url: str | None = None
    service_name: str | None = None
    service_namespace: str | None = None
    service_port: int = 443

    def client_config(self, path: str) -> dict[str, Any]:
        cfg: dict[str, Any] = {"caBundle": base64.b64encode(self.ca_bundle).decode("ascii")}
        if self.url:
            cfg["url"] = f"{self.url.rstrip('/')}/{path}"
        else:
            cfg["service"] = {
                "name": self.service_name,
                "namespace": self.service_namespace,
                "port": self.service_port,
                "path": f"/{path}",
            }
        return cfg


def excluded_namespaces(config: injection.InjectionConfig) -> list[str]:
    return sorted(
        injection.ALWAYS_EXCLUDED_NAMESPACES
        | {config.operator_namespace}
        | set(config.excluded_namespaces)
    )


def mutating_configuration(endpoint: Endpoint, config: injection.InjectionConfig) -> dict[str, Any]:
    """The MutatingWebhookConfiguration: Pod CREATE of opted-in pods, fail closed.

    Two webhooks, one per way of opting in, both served by the same handler: pods opted in
    by annotation (unless their namespace says disabled) and pods of namespaces labelled
    enabled (unless the pod's annotation decides).
    """
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": MUTATING_NAME, "labels": dict(LABELS)},
        "webhooks": [
            _pod_webhook(
                "annotated.inject.haltgate.dev",
                endpoint,
                [
                    {
                        "key": "kubernetes.io/metadata.name",
                        "operator": "NotIn",
                        "values": excluded_namespaces(config),
                    },
                    {
                        "key": injection.LABEL_NAMESPACE_INJECTION,
                        "operator": "NotIn",
                        "values": ["disabled"],
                    },
                ],
                ANNOTATED_CEL,
            ),
            _pod_webhook(
                "namespace.inject.haltgate.dev",
                endpoint,
                [
                    {
                        "key": "kubernetes.io/metadata.name",
                        "operator": "NotIn",
                        "values": excluded_namespaces(config),
                    },
                    {
                        "key": injection.LABEL_NAMESPACE_INJECTION,
                        "operator": "In",
                        "values": ["enabled"],
                    },
                ],
                NOT_DECIDED_BY_ANNOTATION_CEL,
            ),
        ],
    }


def _pod_webhook(
    name: str, endpoint: Endpoint, ns_expressions: list[dict[str, Any]], cel: str
) -> dict[str, Any]:
    return {
        "name": name,
        "clientConfig": endpoint.client_config(INJECT_WEBHOOK_ID),
        "rules": [
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["pods"],
                "operations": ["CREATE"],
                "scope": "Namespaced",
            }
        ],
        "namespaceSelector": {"matchExpressions": ns_expressions},
        "matchConditions": [{"name": "opted-in", "expression": cel}],
        # An agent must not start ungoverned: no answer means no pod.
        "failurePolicy": "Fail",
        "sideEffects": "None",
        "timeoutSeconds": TIMEOUT_SECONDS,
        "admissionReviewVersions": ["v1"],
        "matchPolicy": "Equivalent",
        # Called again when a later webhook (a mesh injector) changed the pod: what it
        # added must pass the same rules (an injected pod is otherwise left alone).
        "reinvocationPolicy": "IfNeeded",
    }


INJECTED_CEL = (
    f"has(oldObject.metadata.annotations) && "
    f"'{injection.ANNOTATION_INJECTED}' in oldObject.metadata.annotations"
)
"""Only pods haltgate injected are checked on UPDATE."""


def _has_haltgate_annotation(meta: str) -> str:
    return f"has({meta}.annotations) && {meta}.annotations.exists(k, k.startsWith('haltgate.dev/'))"


BARE_POD_ANNOTATED_CEL = (
    f"!has(object.metadata.ownerReferences) && {_has_haltgate_annotation('object.metadata')}"
)
"""Pods people create themselves that mention haltgate (a controller's pods were already
checked as their workload's template)."""
WORKLOAD_ANNOTATED_CEL = (
    f"{_has_haltgate_annotation('object.metadata')} || "
    f"(has(object.spec.template.metadata) && "
    f"{_has_haltgate_annotation('object.spec.template.metadata')})"
)
"""Workloads that mention haltgate on the object or in the pod template."""
WORKLOAD_RESOURCES = (("apps", ("deployments", "statefulsets", "daemonsets")), ("batch", ("jobs",)))


def validating_configuration(
    endpoint: Endpoint, config: injection.InjectionConfig | None = None
) -> dict[str, Any]:
    """The ValidatingWebhookConfiguration: GovernancePolicy and BudgetPool; and UPDATEs of
    injected pods (haltgate's containers are immutable, ephemeral containers follow the
    agent rules)."""
    cfg = config if config is not None else injection.InjectionConfig()

    def hook(name: str, path: str, plural: str) -> dict[str, Any]:
        return {
            "name": name,
            "clientConfig": endpoint.client_config(path),
            "rules": [
                {
                    "apiGroups": [API_GROUP],
                    "apiVersions": ["v1alpha1"],
                    "resources": [plural],
                    "operations": ["CREATE", "UPDATE"],
                    "scope": "Namespaced",
                }
            ],
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "timeoutSeconds": TIMEOUT_SECONDS,
            "admissionReviewVersions": ["v1"],
            "matchPolicy": "Equivalent",
        }

    def pod_hook(name: str, path: str, resource: str) -> dict[str, Any]:
        return {
            "name": name,
            "clientConfig": endpoint.client_config(path),
            "rules": [
                {
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "resources": [resource],
                    "operations": ["UPDATE"],
                    "scope": "Namespaced",
                }
            ],
            "namespaceSelector": {
                "matchExpressions": [
                    {
                        "key": "kubernetes.io/metadata.name",
                        "operator": "NotIn",
                        "values": excluded_namespaces(cfg),
                    }
                ]
            },
            "matchConditions": [{"name": "injected", "expression": INJECTED_CEL}],
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "timeoutSeconds": TIMEOUT_SECONDS,
            "admissionReviewVersions": ["v1"],
            "matchPolicy": "Equivalent",
        }

    def warn_hook(name: str, rules: list[dict[str, Any]], cel: str) -> dict[str, Any]:
        # Warnings only: an operator outage must never block a workload for this.
        return {
            "name": name,
            "clientConfig": endpoint.client_config(ANNOTATIONS_ID),
            "rules": rules,
            "namespaceSelector": {
                "matchExpressions": [
                    {
                        "key": "kubernetes.io/metadata.name",
                        "operator": "NotIn",
                        "values": excluded_namespaces(cfg),
                    }
                ]
            },
            "matchConditions": [{"name": "mentions-haltgate", "expression": cel}],
            "failurePolicy": "Ignore",
            "sideEffects": "None",
            "timeoutSeconds": 5,
            "admissionReviewVersions": ["v1"],
            "matchPolicy": "Equivalent",
        }

    workload_rules = [
        {
            "apiGroups": [group],
            "apiVersions": ["v1"],
            "resources": list(res),
            "operations": ["CREATE", "UPDATE"],
            "scope": "Namespaced",
        }
        for group, res in WORKLOAD_RESOURCES
    ]
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": VALIDATING_NAME, "labels": dict(LABELS)},
        "webhooks": [
            hook("governancepolicies.haltgate.dev", VALIDATE_POLICY_ID, "governancepolicies"),
            hook("budgetpools.haltgate.dev", VALIDATE_POOL_ID, "budgetpools"),
            pod_hook("pods.haltgate.dev", VALIDATE_POD_ID, "pods"),
            pod_hook(
                "ephemeral.pods.haltgate.dev", VALIDATE_EPHEMERAL_ID, "pods/ephemeralcontainers"
            ),
            warn_hook(
                "annotations.pods.haltgate.dev",
                [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["pods"],
                        "operations": ["CREATE"],
                        "scope": "Namespaced",
                    }
                ],
                BARE_POD_ANNOTATED_CEL,
            ),
            warn_hook("annotations.workloads.haltgate.dev", workload_rules, WORKLOAD_ANNOTATED_CEL),
        ],
    }


def hosts_for(
    endpoint_url: str | None, service: str | None, namespace: str, extra: Sequence[str] = ()
) -> list[str]:
    """The names the serving certificate must cover."""
    hosts: list[str] = []
    if endpoint_url:
        from urllib.parse import urlsplit

        host = urlsplit(endpoint_url).hostname
        if host:
            hosts.append(host)
    if service:
        hosts += [
            f"{service}.{namespace}.svc",
            f"{service}.{namespace}.svc.cluster.local",
            f"{service}.{namespace}",
        ]
    hosts += [h for h in extra if h not in hosts]
    return hosts
