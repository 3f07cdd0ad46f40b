"""Reconcile GovernancePolicy objects.

For each policy: validate it (the same function as the admission webhook, so objects stored
before a rule changed are caught too), render the ConfigMap ``haltgate-policy-<name>`` the
sidecars mount and hot-reload, make sure the namespace has the Secrets injected pods mount
(admin token, inspection CA) and set the status: ``Valid`` and ``Ready`` conditions,
``observedGeneration``, ``matchedWorkloads``. The ConfigMap is owned by the policy, so
Kubernetes deletes it with the policy: no finalizer is needed.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import logging
import secrets
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

from haltgate.governance.validation import validate_document
from haltgate.operator import apierrors, certs, cluster, injection
from haltgate.operator.runtime import Runtime

POLICY_KEY = "policy.yaml"
CA_CERT_KEY = "ca.crt"
CA_KEY_KEY = "ca.key"
"""File names the sidecar's TLS minter loads from its CA directory."""
log = logging.getLogger("haltgate.operator.policies")
MANAGED_LABELS = {
    "app.kubernetes.io/managed-by": "haltgate",
    "app.kubernetes.io/part-of": "haltgate",
}


# ----------------------------------------------------------------------------- pure parts
def policy_document(body: Mapping[str, Any]) -> dict[str, Any]:
    """The policy as the sidecar loads it (``load_policy_file``): one clean document."""
    meta = body.get("metadata") or {}
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": "GovernancePolicy",
        "metadata": {k: meta[k] for k in ("name", "namespace", "generation", "uid") if k in meta},
        "spec": dict(body.get("spec") or {}),
    }


def render_config_map(
    body: Mapping[str, Any], rego: str | None, price_table: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The ConfigMap ``haltgate-policy-<name>``, owned by the policy.

    ``policy.yaml`` is what the sidecar loads. A ``spec.opa.configMapRef``'s Rego is copied
    in under the referenced key: the sidecar reads it from its rego directory (the mount of
    this ConfigMap) and uploads it to its OPA. The chart's price table (``price_table``) is
    copied in as ``prices.yaml``: a pod can mount ConfigMaps of its own namespace only, and
    this one is already mounted into every governed pod.
    """
    meta = body.get("metadata") or {}
    name = meta["name"]
    data = {POLICY_KEY: yaml.safe_dump(policy_document(body), sort_keys=False)}
    if price_table is not None:
        data[injection.PRICE_TABLE_KEY] = yaml.safe_dump(dict(price_table), sort_keys=False)
    ref = ((body.get("spec") or {}).get("opa") or {}).get("configMapRef")
    if rego is not None and ref:
        data[ref["key"]] = rego
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": injection.policy_configmap_name(name),
            "namespace": meta.get("namespace"),
            "labels": {**MANAGED_LABELS, injection.LABEL_POLICY: name},
            "ownerReferences": [
                {
                    "apiVersion": body.get("apiVersion"),
                    "kind": "GovernancePolicy",
                    "name": name,
                    "uid": meta.get("uid"),
                    "controller": True,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "data": data,
    }


def condition(
    kind: str,
    ok: bool,
    reason: str,
    message: str,
    generation: int,
    previous: Sequence[Mapping[str, Any]],
    now: str,
) -> dict[str, Any]:
    """A standard condition; lastTransitionTime moves only when the status flips."""
    status = "True" if ok else "False"
    before = next((c for c in previous if c.get("type") == kind), None)
    since = before.get("lastTransitionTime") if before and before.get("status") == status else now
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message[:1024],
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }


def count_workloads(pods: Sequence[Mapping[str, Any]]) -> int:
    """Distinct workloads among pods: the controller owner (ReplicaSet counted as its
    Deployment), or the pod itself when it has none."""
    seen: set[tuple[str, str]] = set()
    for pod in pods:
        meta = pod.get("metadata") or {}
        owner = next((o for o in meta.get("ownerReferences") or [] if o.get("controller")), None)
        if owner is None:
            seen.add(("Pod", meta.get("name", "")))
            continue
        kind, name = owner.get("kind", ""), owner.get("name", "")
        template_hash = (meta.get("labels") or {}).get("pod-template-hash")
        if kind == "ReplicaSet" and template_hash and name.endswith(f"-{template_hash}"):
            kind, name = "Deployment", name.removesuffix(f"-{template_hash}")
        seen.add((kind, name))
    return len(seen)


def now_rfc3339() -> str:
    """The current UTC time as Kubernetes writes it (RFC 3339, seconds)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ----------------------------------------------------------------------------- I/O parts
async def _rego_of(rt: Runtime, namespace: str, spec: Mapping[str, Any]) -> str | None:
    opa = spec.get("opa")
    if not opa:
        return None
    if opa.get("rego") is not None:
        return str(opa["rego"])
    ref = opa.get("configMapRef") or {}
    if ref["key"] == POLICY_KEY:
        raise apierrors.NotFound(
            f"spec.opa.configMapRef.key must not be {POLICY_KEY!r} (the "
            f"policy file has that name in the sidecar)"
        )
    try:
        cm = await rt.cluster.read_config_map(namespace, ref["name"])
    except apierrors.NotFound as e:
        raise apierrors.NotFound(
            f"spec.opa.configMapRef: ConfigMap {namespace}/{ref['name']} not found"
        ) from e
    value = (cm.get("data") or {}).get(ref["key"])
    if value is None:
        raise apierrors.NotFound(f"ConfigMap {namespace}/{ref['name']} has no key {ref['key']!r}")
    return str(value)


async def ensure_namespace_secrets(rt: Runtime, namespace: str) -> None:
    """Create the admin token Secret, the inspection CA Secret and the CA bundle ConfigMap
    of a namespace when missing (never overwritten: sidecars already use them)."""
    cfg = rt.settings.injection
    try:
        await rt.cluster.read_secret(namespace, cfg.admin_token_secret)
    except apierrors.NotFound:
        token = secrets.token_urlsafe(32).encode()
        try:
            await rt.cluster.create_secret(
                namespace,
                {
                    "metadata": {"name": cfg.admin_token_secret, "labels": dict(MANAGED_LABELS)},
                    "type": "Opaque",
                    "data": {injection.ADMIN_TOKEN_KEY: base64.b64encode(token).decode()},
                },
            )
        except apierrors.Conflict:
            pass  # another replica won the race: theirs is as good
    try:
        ca_secret = await rt.cluster.read_secret(namespace, cfg.ca_key_secret)
        ca_pem = base64.b64decode(ca_secret["data"][CA_CERT_KEY])
    except apierrors.NotFound:
        ca = certs.make_ca(f"haltgate inspection CA {namespace}", now=dt.datetime.now(dt.UTC))
        try:
            await rt.cluster.create_secret(
                namespace,
                {
                    "metadata": {"name": cfg.ca_key_secret, "labels": dict(MANAGED_LABELS)},
                    "type": "Opaque",
                    "data": {
                        CA_CERT_KEY: base64.b64encode(ca.cert_pem).decode(),
                        CA_KEY_KEY: base64.b64encode(ca.key_pem).decode(),
                    },
                },
            )
            ca_pem = ca.cert_pem
        except apierrors.Conflict:
            ca_secret = await rt.cluster.read_secret(namespace, cfg.ca_key_secret)
            ca_pem = base64.b64decode(ca_secret["data"][CA_CERT_KEY])
    roots = _system_roots()
    await rt.cluster.apply_config_map(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": cfg.ca_bundle_config_map,
                "namespace": namespace,
                "labels": dict(MANAGED_LABELS),
            },
            "data": {
                "haltgate-ca.crt": ca_pem.decode(),
                # Clients given SSL_CERT_FILE trust only that file: it must hold the public
                # roots too, for hosts the sidecar tunnels without inspection.
                "ca-bundle.crt": roots + ca_pem.decode(),
            },
        },
    )


def _system_roots() -> str:
    path = ssl.get_default_verify_paths().cafile
    if path and Path(path).is_file():
        text = Path(path).read_text(encoding="utf-8", errors="replace")
        return text if text.endswith("\n") else text + "\n"
    return ""


_decision_checks: dict[tuple[str, str], str | None] = {}
"""Rego digest and decision path -> the missing-rule problem (``opa parse`` runs once)."""


def _missing_decision(rego: str, decision_path: str) -> str | None:
    from haltgate.governance import rego as rego_tools

    key = (hashlib.sha256(rego.encode()).hexdigest(), decision_path)
    if key not in _decision_checks:
        opa = rego_tools.find_opa_binary()
        if opa is None:
            return None  # not checked here; the sidecar's OPA reports opa_undefined
        try:
            why = rego_tools.missing_decision(rego, decision_path, opa=opa)
        except rego_tools.RegoToolError:
            return None  # does not compile: admission and the sidecar say so
        if len(_decision_checks) > 1024:
            _decision_checks.clear()
        _decision_checks[key] = why
    return _decision_checks[key]


async def readiness_problem(
    rt: Runtime, namespace: str, spec: Mapping[str, Any], rego: str | None
) -> tuple[str, str] | None:
    """Why the policy's agents would have every call refused although it is valid:
    (reason, message), or None. A pool that does not exist, a pool without the database
    Secret its members need, Rego without a rule at ``decisionPath``."""
    pool = spec.get("pool")
    if pool:
        try:
            await rt.cluster.read_custom(cluster.POOL_PLURAL, namespace, pool)
        except apierrors.NotFound:
            return (
                "PoolNotFound",
                f"spec.pool: no BudgetPool {namespace}/{pool}; the "
                f"policy's agents would have every call refused",
            )
        secret = rt.settings.injection.pool_database_secret
        try:
            await rt.cluster.read_secret_key(namespace, secret, "dsn")
        except apierrors.NotFound:
            return (
                "PoolDatabaseSecretMissing",
                f"spec.pool: Secret {namespace}/{secret} (key dsn) with the pool "
                f"database URI is missing; the policy's pods cannot start their sidecar",
            )
        except Exception as e:  # e.g. RBAC without get on that Secret: cannot tell
            log.debug("pool database Secret %s/%s not checked: %s", namespace, secret, e)
    opa = spec.get("opa") or {}
    if rego is not None:
        path = str(opa.get("decisionPath") or "haltgate/decision")
        why = await asyncio.to_thread(_missing_decision, rego, path)
        if why:
            return "DecisionRuleMissing", f"spec.opa.decisionPath: {why}"
    return None


async def reconcile(
    rt: Runtime,
    body: Mapping[str, Any],
    status_patch: Any,
    logger: Any,
    pods: Sequence[Mapping[str, Any]],
) -> bool:
    """Bring one policy's ConfigMap and status up to date; True when Ready.

    ``pods`` are the pods injected for this policy (label ``haltgate.dev/policy``).
    """
    meta = body.get("metadata") or {}
    namespace, name = meta["namespace"], meta["name"]
    generation = int(meta.get("generation") or 0)
    previous = list((body.get("status") or {}).get("conditions") or [])
    now = now_rfc3339()
    result = validate_document(dict(body))
    if not result.ok:
        problems = "; ".join(str(i) for i in result.errors)
        status_patch["conditions"] = [
            condition("Valid", False, "Invalid", problems, generation, previous, now),
            condition(
                "Ready", False, "Invalid", "the policy is invalid", generation, previous, now
            ),
        ]
        status_patch["ready"] = False
        status_patch["observedGeneration"] = generation
        rt.metrics.reconciles.labels("GovernancePolicy", "invalid").inc()
        logger.error(f"GovernancePolicy {namespace}/{name} is invalid: {problems}")
        return False
    ready, reason, message = True, "Delivered", "policy ConfigMap is up to date"
    try:
        rego = await _rego_of(rt, namespace, body.get("spec") or {})
        changed = await rt.cluster.apply_config_map(
            namespace, render_config_map(body, rego, rt.settings.injection.price_table)
        )
        await ensure_namespace_secrets(rt, namespace)
        if changed:
            logger.info(f"rendered ConfigMap {injection.policy_configmap_name(name)}")
        if (
            problem := await readiness_problem(rt, namespace, body.get("spec") or {}, rego)
        ) is not None:
            ready, reason, message = False, *problem
    except apierrors.NotFound as e:
        ready, reason, message = False, "RegoNotFound", str(e)
    except apierrors.Forbidden as e:
        ready, reason, message = (
            False,
            "NamespaceNotEnabled",
            (
                f"the operator may not write in namespace {namespace} ({e}): add it to the "
                "chart's operator.agentNamespaces (docs/operator.md)"
            ),
        )
    status_patch["conditions"] = [
        condition(
            "Valid", True, "Valid", "the policy passed validation", generation, previous, now
        ),
        condition("Ready", ready, reason, message, generation, previous, now),
    ]
    status_patch["ready"] = ready
    status_patch["observedGeneration"] = generation
    status_patch["matchedWorkloads"] = count_workloads(pods)
    # What the sidecars of this policy do with a refusal (docs/rollout.md).
    status_patch["enforcement"] = (body.get("spec") or {}).get("enforcement") or "enforce"
    rt.metrics.reconciles.labels("GovernancePolicy", "ready" if ready else "error").inc()
    if not ready:
        logger.error(f"GovernancePolicy {namespace}/{name} not ready: {message}")
    return ready


EventType = Literal["Normal", "Warning"]


def transitions(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[EventType, str, str]]:
    """Events worth posting when a status goes from ``old`` to ``new``: (type, reason,
    message), for conditions that change (pure). Halts: :func:`haltview.transitions`."""
    out: list[tuple[EventType, str, str]] = []
    before = {c.get("type"): c for c in old.get("conditions") or []}
    for c in new.get("conditions") or []:
        prev = before.get(c.get("type"))
        if prev is not None and (prev.get("status"), prev.get("message")) == (
            c.get("status"),
            c.get("message"),
        ):
            continue
        if c.get("status") == "False":
            out.append(
                (
                    "Warning",
                    str(c.get("reason") or c.get("type")),
                    f"{c.get('type')}: {c.get('message', '')}",
                )
            )
        elif prev is not None and prev.get("status") == "False":
            out.append(
                (
                    "Normal",
                    str(c.get("reason") or c.get("type")),
                    f"{c.get('type')}: {c.get('message', '')}",
                )
            )
    return out
