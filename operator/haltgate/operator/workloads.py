"""haltgate's annotations on workload objects, as people write them (pure).

Two jobs:

- :func:`carry_patch`: ``kubectl annotate deploy/NAME haltgate.dev/inject=true`` puts the
  opt-in on the Deployment object, where the pod webhook never looks (it sees pods). The
  operator carries ``haltgate.dev/inject``, ``haltgate.dev/policy`` and ``haltgate.dev/mode``
  from a Deployment, StatefulSet or DaemonSet into its pod template (one rollout) and
  records which keys it carried in ``haltgate.dev/carried`` on the template, so removing
  the object's annotation removes what it added (another rollout) and never touches what
  the user wrote into the template themselves (the template's own value wins).
- :func:`annotation_warnings`: admission warnings for haltgate annotations that sit where
  nothing reads them (a typo'd key, ``haltgate.dev/inject`` on a Job object, a halt on a
  pod, a value other than true/false).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from haltgate.operator import halts, injection

ANNOTATION_CARRIED = "haltgate.dev/carried"
"""On a pod template, written by the operator: the keys it carried from the object."""
CARRIED_KEYS = (injection.ANNOTATION_INJECT, injection.ANNOTATION_POLICY, injection.ANNOTATION_MODE)
CARRYING_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet"})
"""Workloads whose object annotations the operator carries into the pod template."""

POD_KEYS = frozenset(
    {
        injection.ANNOTATION_INJECT,
        injection.ANNOTATION_POLICY,
        injection.ANNOTATION_MODE,
        injection.ANNOTATION_INJECTED,
        halts.ANNOTATION_HALTED,
        ANNOTATION_CARRIED,
    }
)
"""What is read (or written by haltgate) on a pod or pod template."""
_HALT_TARGETS = (
    "the GovernancePolicy (kubectl annotate govpol NAME haltgate.dev/halt=...), "
    "the Deployment or the BudgetPool"
)


def _annotations(meta: Any) -> dict[str, str]:
    if not isinstance(meta, Mapping):
        return {}
    raw = meta.get("annotations")
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}


def template_annotations(obj: Mapping[str, Any]) -> dict[str, str]:
    """Annotations of ``spec.template.metadata`` (empty when there is none)."""
    template = (obj.get("spec") or {}).get("template") or {}
    return _annotations(template.get("metadata"))


def carried(template: Mapping[str, str]) -> set[str]:
    """The keys the operator carried into a pod template earlier."""
    return {k for k in template.get(ANNOTATION_CARRIED, "").split(",") if k}


def carry_patch(obj: Mapping[str, Any]) -> dict[str, str | None] | None:
    """The merge patch of ``spec.template.metadata.annotations`` that carries the object's
    opt-in into its pod template, or undoes an earlier carry; None when nothing changes."""
    meta = obj.get("metadata") or {}
    ours = _annotations(meta)
    template = template_annotations(obj)
    before = carried(template)
    patch: dict[str, str | None] = {}
    now: set[str] = set()
    for key in CARRIED_KEYS:
        if key in template and key not in before:
            continue  # the user's own template annotation wins
        want = ours.get(key)
        if want is not None:
            now.add(key)
            if template.get(key) != want:
                patch[key] = want
        elif key in before:
            patch[key] = None
    marker = ",".join(k for k in CARRIED_KEYS if k in now) or None
    if template.get(ANNOTATION_CARRIED) != marker:
        patch[ANNOTATION_CARRIED] = marker
    return patch or None


def _unknown(key: str, where: str, known: frozenset[str]) -> str:
    hint = ""
    if key == injection.LABEL_NAMESPACE_INJECTION:
        hint = (
            f" ({key} is a namespace label; on a pod template use "
            f'{injection.ANNOTATION_INJECT}: "true")'
        )
    known_text = ", ".join(sorted(known)) or "none on this kind"
    return (
        f"haltgate: annotation {key} on {where} is not read by haltgate{hint}; known: {known_text}"
    )


def _pod_level(annotations: Mapping[str, str], where: str) -> list[str]:
    out = []
    for key, value in sorted(annotations.items()):
        if not key.startswith("haltgate.dev/"):
            continue
        if key == halts.ANNOTATION_HALT:
            out.append(
                f"haltgate: {key} on {where} is not read by haltgate: halt through {_HALT_TARGETS}"
            )
        elif key not in POD_KEYS:
            out.append(_unknown(key, where, POD_KEYS - {ANNOTATION_CARRIED}))
        elif key == injection.ANNOTATION_INJECT and value.strip().lower() not in ("true", "false"):
            out.append(f'haltgate: {key}: {value!r} on {where} does nothing; use "true" or "false"')
    return out


def annotation_warnings(obj: Mapping[str, Any]) -> list[str]:
    """Warnings for haltgate annotations that nothing reads where they are (pure)."""
    kind = str(obj.get("kind") or "")
    meta = obj.get("metadata") or {}
    if kind == "Pod":
        return _pod_level(_annotations(meta), "this pod")
    out: list[str] = []
    where = f"the {kind} object"
    object_keys = frozenset(CARRIED_KEYS) if kind in CARRYING_KINDS else frozenset()
    if kind == "Deployment":
        object_keys |= {halts.ANNOTATION_HALT}
    template = template_annotations(obj)
    for key, value in sorted(_annotations(meta).items()):
        if not key.startswith("haltgate.dev/"):
            continue
        if key in object_keys:
            if key in template and key not in carried(template) and template[key] != value:
                out.append(
                    f"haltgate: {key}: {value!r} on {where} is ignored: the pod "
                    f"template's own value {template[key]!r} wins"
                )
            elif key == injection.ANNOTATION_INJECT and value.strip().lower() not in (
                "true",
                "false",
            ):
                out.append(
                    f'haltgate: {key}: {value!r} on {where} does nothing; use "true" or "false"'
                )
        elif key in CARRIED_KEYS:
            out.append(
                f"haltgate: {key} on {where} is not read by haltgate: put it on "
                f"spec.template.metadata.annotations (only Deployment, StatefulSet "
                f"and DaemonSet objects are carried into their pods)"
            )
        elif key == halts.ANNOTATION_HALT:
            out.append(
                f"haltgate: {key} on {where} is not read by haltgate: halt through {_HALT_TARGETS}"
            )
        else:
            out.append(_unknown(key, where, object_keys))
    out += _pod_level(template, f"the pod template of this {kind}")
    return out
