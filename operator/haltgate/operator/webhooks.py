"""Admission webhooks: inject into opted-in pods, validate GovernancePolicy and BudgetPool,
guard updates of injected pods.

The decisions are made by pure code (:mod:`haltgate.operator.injection`,
:mod:`haltgate.operator.refusals` and
:func:`haltgate.governance.validation.validate_document`, the same function as
``haltgate policy validate``); this module fetches what they need and speaks the
AdmissionReview wire format over HTTPS.

The server is a small aiohttp application of our own rather than kopf's webhook server:
measured against the same apiserver, kopf's admission plumbing added ~10 ms per review, half
the latency budget of a pod creation (docs/operator.md, "Admission latency").
"""

from __future__ import annotations

import asyncio
import base64
import copy
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, TypedDict

import jsonpatch
import orjson
from aiohttp import web

from haltgate.governance import rego
from haltgate.governance.validation import PolicyCheck, validate_document
from haltgate.operator import (
    apierrors,
    injection,
    injection_outcome,
    pod_mutation,
    refusals,
    webhookconfig,
    workloads,
)
from haltgate.operator.runtime import Runtime

log = logging.getLogger("haltgate.operator.webhooks")

_POLICY_LOOKUP_CODES = frozenset({"no_policy", "unknown_policy", "ambiguous_policy"})
_MAX_MESSAGE = 4000  # the apiserver shows the whole message to the user: keep it readable
MAX_REVIEW_BYTES = 8 * 1024 * 1024  # a Pod is at most ~1.5 MiB in etcd; leave room


# ----------------------------------------------------------------------------- wire format
class RequestPayload(TypedDict):
    uid: str
    operation: str
    namespace: NotRequired[str]
    subResource: NotRequired[str]
    object: NotRequired[dict[str, Any] | None]
    oldObject: NotRequired[dict[str, Any] | None]
    dryRun: NotRequired[bool]


class AdmissionReview(TypedDict):
    apiVersion: str
    kind: Literal["AdmissionReview"]
    request: RequestPayload


class ResponseStatus(TypedDict):
    code: int
    message: str


class ResponsePayload(TypedDict):
    uid: str
    allowed: bool
    warnings: NotRequired[list[str]]
    patchType: NotRequired[Literal["JSONPatch"]]
    patch: NotRequired[str]
    status: NotRequired[ResponseStatus]


class AdmissionResponse(TypedDict):
    apiVersion: str
    kind: Literal["AdmissionReview"]
    response: ResponsePayload


class Denied(Exception):
    """The API operation under review is refused; ``code`` is the HTTP status shown."""

    def __init__(self, message: str, code: int = 403) -> None:
        super().__init__(message[:_MAX_MESSAGE])
        self.code = code


@dataclass(slots=True)
class Answer:
    """A handler's verdict: allowed (with an optional JSON patch) plus warnings."""

    outcome: str
    patch: list[dict[str, Any]] | None = None
    warnings: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- handlers
async def admit_pod(rt: Runtime, pod: dict[str, Any], namespace: str | None) -> Answer:
    """Inject, skip or refuse one pod at CREATE."""
    ns = namespace or (pod.get("metadata") or {}).get("namespace") or ""
    if not ns:
        raise Denied("haltgate: pod has no namespace", code=400)
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    if str(annotations.get(injection.ANNOTATION_INJECT, "")).strip().lower() == "false":
        return Answer("skipped")
    try:
        # Both lookups at once: the webhook is only called for opted-in pods, so the policy
        # list is almost always needed.
        labels, listed = await asyncio.gather(
            rt.cluster.namespace_labels(ns), rt.cluster.list_policies(ns, fresh=False)
        )
        if not pod_mutation.injection_requested(pod, labels):
            return Answer("skipped")
        outcome: injection_outcome.Outcome | None = None
        for fresh in (False, True):
            if fresh:
                listed = await rt.cluster.list_policies(ns, fresh=True)
            policies = [injection_outcome.PolicyRef.from_object(p) for p in listed]
            outcome = pod_mutation.mutate_pod(
                pod,
                namespace=ns,
                namespace_labels=labels,
                policies=policies,
                config=rt.settings.injection,
                template=rt.template,
            )
            # The cached list may miss a policy created a moment ago: before refusing for
            # want of a policy, ask again with a consistent read.
            if not (
                isinstance(outcome, injection_outcome.Refuse)
                and outcome.code in _POLICY_LOOKUP_CODES
            ):
                break
    except apierrors.NotFound as e:
        raise Denied(f"haltgate: cannot look up namespace {ns}: {e}", code=500) from e
    assert outcome is not None
    match outcome:
        case injection_outcome.Skip(reason=reason, warnings=more):
            log.debug("pod in %s not injected: %s", ns, reason)
            return Answer("skipped", warnings=list(more))
        case injection_outcome.Refuse():
            log.info("pod in %s refused: %s", ns, outcome.message)
            raise Denied(outcome.message, code=403)
        case injection_outcome.Inject(pod=mutated, warnings=more):
            ops = jsonpatch.JsonPatch.from_diff(pod, mutated).patch
            return Answer("injected", patch=ops, warnings=list(more))
    raise AssertionError(f"unexpected outcome {outcome!r}")


def validate_object(
    body: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    operation: str | None,
    warnings: list[str],
    checks: Sequence[PolicyCheck] = (),
) -> str:
    """Validate a GovernancePolicy/BudgetPool; refuse with every field path and reason.

    ``checks`` are extra checks of a policy spec (the Rego compile check of
    :func:`haltgate.governance.rego.default_checks`)."""
    doc = copy.deepcopy(dict(body))
    if (
        operation == "UPDATE"
        and old is not None
        and (old.get("spec") or {}) == (doc.get("spec") or {})
    ):
        # Metadata-only change (annotations such as haltgate.dev/halt, finalizers): an object
        # stored before a rule tightened must still be haltable and deletable.
        return "valid"
    result = validate_document(doc, extra_checks=checks)
    warnings.extend(f"{i.path}: {i.message}" for i in result.issues if i.warning)
    if not result.ok:
        meta = doc.get("metadata") or {}
        who = f"{doc.get('kind', 'object')} {meta.get('namespace', '')}/{meta.get('name', '')}"
        problems = "; ".join(str(i) for i in result.errors)
        raise Denied(f"haltgate: {who} is invalid: {problems}", code=422)
    return "valid"


def check_pod_update(rt: Runtime, old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> str:
    """Refuse UPDATEs that would weaken an injected pod's enforcement."""
    if old is None:
        return "valid"
    annotations = (old.get("metadata") or {}).get("annotations") or {}
    if injection.ANNOTATION_INJECTED not in annotations:
        return "valid"
    found = refusals.update_refusals(
        old, new, proxy_uid=rt.settings.injection.proxy_uid, ours=injection.CONTAINER_NAMES
    )
    if found:
        first = found[0]
        more = "; ".join(f"{r.path}: {r.reason} ({r.code})" for r in found[1:])
        raise Denied(
            f"haltgate: pod update refused ({first.code}): {first.path}: "
            f"{first.reason}" + (f"; {more}" if more else ""),
            code=403,
        )
    return "valid"


# ----------------------------------------------------------------------------- server
Handler = Callable[[RequestPayload], Awaitable[Answer]]


def _handlers(rt: Runtime) -> dict[str, Handler]:
    # Found once: the opa binary (on PATH in the image) compiles inline Rego at admission,
    # so a policy that OPA would refuse to load never reaches a sidecar. Without one the
    # check only warns.
    checks = rego.default_checks()
    if not isinstance(checks[0], rego.RegoCompileCheck):
        log.warning("no opa binary found: inline Rego is admitted without a compile check")

    async def inject(req: RequestPayload) -> Answer:
        if req.get("operation") != "CREATE":
            return Answer("skipped")
        return await admit_pod(rt, req.get("object") or {}, req.get("namespace"))

    async def validate(req: RequestPayload) -> Answer:
        warnings: list[str] = []
        # In a thread: the Rego check runs `opa check` (a subprocess), which must not stall
        # the other reviews on this event loop.
        outcome = await asyncio.to_thread(
            validate_object,
            req.get("object") or {},
            req.get("oldObject"),
            req.get("operation"),
            warnings,
            checks,
        )
        return Answer(outcome, warnings=warnings)

    async def pod_update(req: RequestPayload) -> Answer:
        return Answer(check_pod_update(rt, req.get("oldObject"), req.get("object") or {}))

    async def annotations(req: RequestPayload) -> Answer:
        # Warnings only, never a refusal (the webhook is failurePolicy Ignore).
        found = workloads.annotation_warnings(req.get("object") or {})
        return Answer("warned" if found else "ok", warnings=found)

    return {
        webhookconfig.INJECT_WEBHOOK_ID: inject,
        webhookconfig.VALIDATE_POLICY_ID: validate,
        webhookconfig.VALIDATE_POOL_ID: validate,
        webhookconfig.VALIDATE_POD_ID: pod_update,
        webhookconfig.VALIDATE_EPHEMERAL_ID: pod_update,
        webhookconfig.ANNOTATIONS_ID: annotations,
    }


def _response(review: Mapping[str, Any], payload: ResponsePayload) -> web.Response:
    out: AdmissionResponse = {
        "apiVersion": str(review.get("apiVersion", "admission.k8s.io/v1")),
        "kind": "AdmissionReview",
        "response": payload,
    }
    return web.Response(body=orjson.dumps(out), content_type="application/json")


def create_app(rt: Runtime) -> web.Application:
    """The webhook application: one POST route per webhook id (the URL path)."""
    handlers = _handlers(rt)
    m = rt.metrics

    async def serve(request: web.Request) -> web.Response:
        webhook_id = request.match_info["webhook"]
        handler = handlers.get(webhook_id)
        if handler is None:
            raise web.HTTPNotFound(reason=f"no webhook {webhook_id!r}")
        try:
            review = orjson.loads(await request.read())
            req: RequestPayload = review["request"]
            uid = str(req["uid"])
        except (orjson.JSONDecodeError, KeyError, TypeError) as e:
            # A malformed review is the apiserver's problem, not the object's: HTTP 400,
            # which failurePolicy Fail turns into a refusal.
            raise web.HTTPBadRequest(reason=f"not an AdmissionReview: {e}") from e
        start = time.perf_counter()
        outcome = "error"
        try:
            answer = await handler(req)
            outcome = answer.outcome
            payload: ResponsePayload = {"uid": uid, "allowed": True}
            if answer.warnings:
                payload["warnings"] = answer.warnings
            if answer.patch:
                payload["patchType"] = "JSONPatch"
                payload["patch"] = base64.b64encode(orjson.dumps(answer.patch)).decode()
        except Denied as e:
            outcome = "refused" if webhook_id == webhookconfig.INJECT_WEBHOOK_ID else "invalid"
            payload = {"uid": uid, "allowed": False, "status": {"code": e.code, "message": str(e)}}
        except Exception as e:
            # Fail closed, and say why (cut: error texts can carry untrusted content).
            log.exception("webhook %s failed", webhook_id)
            payload = {
                "uid": uid,
                "allowed": False,
                "status": {
                    "code": 500,
                    "message": f"haltgate: {webhook_id} failed: {type(e).__name__}: {e}"[
                        :_MAX_MESSAGE
                    ],
                },
            }
        finally:
            m.admission.labels(webhook_id, outcome).inc()
            m.admission_seconds.labels(webhook_id).observe(time.perf_counter() - start)
        return _response(review, payload)

    async def readyz(request: web.Request) -> web.Response:
        # For the pod's readiness probe (HTTPS on the webhook port): the Service sends
        # reviews only to replicas whose server is up.
        return web.json_response({"ready": True})

    app = web.Application(client_max_size=MAX_REVIEW_BYTES)
    app.router.add_get("/readyz", readyz)
    app.router.add_post("/{webhook}", serve)
    return app
