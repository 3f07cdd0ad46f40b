"""Admission handlers: inject into opted-in pods, validate GovernancePolicy and BudgetPool.

The decisions are made by pure code (:mod:`haltgate.operator.injection` and
:func:`haltgate.governance.validation.validate_document`, the same function as
``haltgate policy validate``); this module only fetches what they need and turns the result
into kopf's admission response (a JSON patch, warnings, or a refusal with a message).
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Mapping
from typing import Any, cast

import kopf

from haltgate.governance.validation import validate_document
from haltgate.operator import cluster, injection, refusals, webhookconfig
from haltgate.operator.runtime import Runtime

_POLICY_LOOKUP_CODES = frozenset({"no_policy", "unknown_policy", "ambiguous_policy"})
_MAX_MESSAGE = 4000  # the apiserver shows the whole message to the user: keep it readable


def _plain(body: Mapping[str, Any]) -> dict[str, Any]:
    # kopf bodies are read-only views; the pure functions take ordinary dicts.
    return copy.deepcopy(dict(body))


async def admit_pod(rt: Runtime, body: Mapping[str, Any], patch: kopf.Patch,
                    warnings: list[str], namespace: str | None,
                    logger: kopf.Logger) -> str:
    """Inject, skip or refuse one pod at CREATE; returns the outcome name (for metrics)."""
    pod = _plain(body)
    ns = namespace or (pod.get("metadata") or {}).get("namespace") or ""
    if not ns:
        raise kopf.AdmissionError("haltgate: pod has no namespace", code=400)
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    if str(annotations.get(injection.ANNOTATION_INJECT, "")).strip().lower() == "false":
        return "skipped"
    try:
        # Both lookups at once: the webhook is only called for opted-in pods, so the policy
        # list is almost always needed.
        labels, listed = await asyncio.gather(rt.cluster.namespace_labels(ns),
                                              rt.cluster.list_policies(ns, fresh=False))
        if not injection.injection_requested(pod, labels):
            return "skipped"
        outcome: injection.Outcome | None = None
        for fresh in (False, True):
            if fresh:
                listed = await rt.cluster.list_policies(ns, fresh=True)
            policies = [injection.PolicyRef.from_object(p) for p in listed]
            outcome = injection.mutate_pod(pod, namespace=ns, namespace_labels=labels,
                                           policies=policies, config=rt.settings.injection,
                                           template=rt.template)
            # The cached list may miss a policy created a moment ago: before refusing for
            # want of a policy, ask again with a consistent read.
            if not (isinstance(outcome, injection.Refuse)
                    and outcome.code in _POLICY_LOOKUP_CODES):
                break
    except cluster.NotFound as e:
        raise kopf.AdmissionError(f"haltgate: cannot look up namespace {ns}: {e}",
                                  code=500) from e
    assert outcome is not None
    match outcome:
        case injection.Skip(reason=reason, warnings=more):
            warnings.extend(more)
            logger.debug(f"not injected: {reason}")
            return "skipped"
        case injection.Refuse():
            logger.info(f"refused: {outcome.message}")
            raise kopf.AdmissionError(outcome.message[:_MAX_MESSAGE], code=403)
        case injection.Inject(pod=mutated, warnings=more):
            warnings.extend(more)

            def replace(raw: kopf.RawBody) -> None:
                target = cast(dict[str, Any], raw)  # a plain dict at run time
                target.clear()
                target.update(copy.deepcopy(mutated))

            # kopf diffs the original against this result into a JSON patch.
            patch.fns.append(replace)
            return "injected"
    raise AssertionError(f"unexpected outcome {outcome!r}")


def validate_object(body: Mapping[str, Any], old: Mapping[str, Any] | None,
                    operation: str | None, warnings: list[str]) -> str:
    """Validate a GovernancePolicy/BudgetPool; refuse with every field path and reason."""
    doc = _plain(body)
    if (operation == "UPDATE" and old is not None
            and (old.get("spec") or {}) == (doc.get("spec") or {})):
        # Metadata-only change (annotations such as haltgate.dev/halt, finalizers): an object
        # stored before a rule tightened must still be haltable and deletable.
        return "valid"
    result = validate_document(doc)
    warnings.extend(f"{i.path}: {i.message}" for i in result.issues if i.warning)
    if not result.ok:
        meta = doc.get("metadata") or {}
        who = f"{doc.get('kind', 'object')} {meta.get('namespace', '')}/{meta.get('name', '')}"
        problems = "; ".join(str(i) for i in result.errors)
        raise kopf.AdmissionError(f"haltgate: {who} is invalid: {problems}"[:_MAX_MESSAGE],
                                  code=422)
    return "valid"


def check_pod_update(rt: Runtime, old: Mapping[str, Any] | None,
                     new: Mapping[str, Any]) -> str:
    """Refuse UPDATEs that would weaken an injected pod's enforcement."""
    if old is None:
        return "valid"
    annotations = (old.get("metadata") or {}).get("annotations") or {}
    if injection.ANNOTATION_INJECTED not in annotations:
        return "valid"
    found = refusals.update_refusals(_plain(old), _plain(new),
                                     proxy_uid=rt.settings.injection.proxy_uid,
                                     ours=injection.CONTAINER_NAMES)
    if found:
        first = found[0]
        more = "; ".join(f"{r.path}: {r.reason} ({r.code})" for r in found[1:])
        raise kopf.AdmissionError(
            (f"haltgate: pod update refused ({first.code}): {first.path}: {first.reason}"
             + (f"; {more}" if more else ""))[:_MAX_MESSAGE], code=403)
    return "valid"


def register(registry: kopf.OperatorRegistry, rt: Runtime) -> None:
    """Attach the admission handlers to ``registry`` (ids are the webhook URL paths)."""
    m = rt.metrics

    @kopf.on.mutate("", "v1", "pods", id=webhookconfig.INJECT_WEBHOOK_ID,
                    operations=["CREATE"], registry=registry)
    async def inject(body: kopf.Body, patch: kopf.Patch, warnings: list[str],
                     namespace: str | None, logger: kopf.Logger, **_: Any) -> None:
        start = time.perf_counter()
        outcome = "error"
        try:
            outcome = await admit_pod(rt, body, patch, warnings, namespace, logger)
        except kopf.AdmissionError:
            outcome = "refused"
            raise
        finally:
            m.admission.labels(webhookconfig.INJECT_WEBHOOK_ID, outcome).inc()
            m.admission_seconds.labels(webhookconfig.INJECT_WEBHOOK_ID).observe(
                time.perf_counter() - start)

    def _validator(webhook_id: str, plural: str) -> None:
        @kopf.on.validate("haltgate.dev", "v1alpha1", plural, id=webhook_id,
                          operations=["CREATE", "UPDATE"], registry=registry)
        def validate(body: kopf.Body, warnings: list[str], **kwargs: Any) -> None:
            old: Mapping[str, Any] | None = kwargs.get("old")
            operation: str | None = kwargs.get("operation")
            start = time.perf_counter()
            outcome = "error"
            try:
                outcome = validate_object(body, old, operation, warnings)
            except kopf.AdmissionError:
                outcome = "invalid"
                raise
            finally:
                m.admission.labels(webhook_id, outcome).inc()
                m.admission_seconds.labels(webhook_id).observe(time.perf_counter() - start)

    def _pod_update(webhook_id: str, subresource: str | None) -> None:
        @kopf.on.validate("", "v1", "pods", id=webhook_id, operations=["UPDATE"],
                          subresource=subresource, registry=registry)
        def validate(body: kopf.Body, **kwargs: Any) -> None:
            start = time.perf_counter()
            outcome = "error"
            try:
                outcome = check_pod_update(rt, kwargs.get("old"), body)
            except kopf.AdmissionError:
                outcome = "invalid"
                raise
            finally:
                m.admission.labels(webhook_id, outcome).inc()
                m.admission_seconds.labels(webhook_id).observe(time.perf_counter() - start)

    _pod_update(webhookconfig.VALIDATE_POD_ID, None)
    _pod_update(webhookconfig.VALIDATE_EPHEMERAL_ID, "ephemeralcontainers")
    _validator(webhookconfig.VALIDATE_POLICY_ID, "governancepolicies")
    _validator(webhookconfig.VALIDATE_POOL_ID, "budgetpools")
