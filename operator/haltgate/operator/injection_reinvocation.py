"""A pod that already carries haltgate's pieces (webhook reinvocation, or a copied pod):
accepted only if they are exactly what this operator would inject now."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from haltgate.operator import refusals
from haltgate.operator.injection import ANNOTATION_INJECTED, CONTAINER_NAMES, InjectionConfig
from haltgate.operator.injection_containers import (
    make_guaranteed,
    our_init_containers,
    volume_names,
)
from haltgate.operator.injection_outcome import Outcome, PolicyRef, Refuse, Skip


def looks_injected(pod: Mapping[str, Any]) -> bool:
    """The webhook's record is there: a second pass (or a copied pod). A pod that only uses
    one of haltgate's container names is the user's mistake, refused as ``name_conflict``
    by the rules; one that carries the record must carry genuine pieces."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    return ANNOTATION_INJECTED in annotations


def verify_existing(
    pod: Mapping[str, Any], rendered: Mapping[str, Any], policy: PolicyRef, config: InjectionConfig
) -> Outcome:
    """A pod that already carries haltgate's pieces (reinvocation, or a copied pod).

    Accept it only if the pieces are exactly what this operator would inject now; otherwise
    someone could pre-fill a look-alike sidecar and start ungoverned.
    """
    spec = pod.get("spec") or {}
    init = spec.get("initContainers") or []
    wanted = our_init_containers(rendered, policy, config)
    # By name, in order: a webhook called after ours (a mesh injector; reinvocationPolicy
    # IfNeeded calls ours again) may have put its own init containers first.
    have = [_without_token_mount(c) for c in init if c.get("name") in CONTAINER_NAMES]
    # As injected into a Guaranteed pod (requests = limits), or as the template has them.
    guaranteed = copy.deepcopy(wanted)
    for container in guaranteed:
        make_guaranteed(container, config.guaranteed_cpu)
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
    ours = volume_names(rendered)
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
