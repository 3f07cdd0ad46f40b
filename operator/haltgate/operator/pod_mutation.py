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
from collections.abc import Mapping, Sequence
from typing import Any

from haltgate.operator import refusals, selectors
from haltgate.operator.injection import (
    ANNOTATION_INJECT,
    ANNOTATION_INJECTED,
    ANNOTATION_MODE,
    ANNOTATION_POLICY,
    CONTAINER_NAMES,
    LABEL_NAMESPACE_INJECTION,
    LABEL_POLICY,
    RECORD_VERSION,
    InjectionConfig,
    Mode,
)
from haltgate.operator.injection_containers import (
    is_guaranteed,
    make_guaranteed,
    our_init_containers,
    volume_names,
)
from haltgate.operator.injection_outcome import Inject, Outcome, PolicyRef, Refuse, Skip
from haltgate.operator.injection_reinvocation import looks_injected, verify_existing
from haltgate.operator.injection_template import InjectionTemplate


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

    if looks_injected(pod):
        return verify_existing(pod, rendered, chosen, config)

    found = refusals.refusals(
        pod,
        proxy_uid=config.proxy_uid,
        reserved_containers=CONTAINER_NAMES,
        reserved_volumes=volume_names(rendered),
        mesh_uids=config.mesh_proxy_uids,
        mesh_containers=config.mesh_containers,
    )
    if found:
        first = found[0]
        return Refuse(first.code, first.path, first.reason, tuple(found[1:]))

    out = copy.deepcopy(dict(pod))
    spec = out.setdefault("spec", {})
    ours = our_init_containers(rendered, chosen, config)
    if is_guaranteed(spec):
        for container in ours:
            make_guaranteed(container, config.guaranteed_cpu)
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


def _selects_everything(selector: Mapping[str, Any]) -> bool:
    return not selector.get("matchLabels") and not selector.get("matchExpressions")


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
