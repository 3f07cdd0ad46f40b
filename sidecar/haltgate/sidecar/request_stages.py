"""The stages that judge a request before anything is reserved: its body read within the
limits, the destination check, tool rules, flows, request guardrails and the OPA decision.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

import aiohttp
import orjson

from haltgate.governance.errors import BadRequestError, DeniedError, UnavailableError
from haltgate.governance.flow_values import ValuesUnreadable, answer_values
from haltgate.governance.flows import APPROVAL_HEADER
from haltgate.governance.flows import describe as describe_call
from haltgate.governance.guardrails.model_clock import ModelClock, run_with
from haltgate.governance.guardrails.request_meta import scan_request_meta
from haltgate.governance.guardrails.response_body import Unscannable, decode_content
from haltgate.governance.policy_base import FailMode, FailureType
from haltgate.sidecar import mcp
from haltgate.sidecar.call import Call, fingerprint_of
from haltgate.sidecar.destinations import check_destination
from haltgate.sidecar.flow_arguments import sink_arguments
from haltgate.sidecar.pipeline_request import PipelineRequest
from haltgate.sidecar.refusals import Refusals

__all__ = ["RequestStages"]

log = logging.getLogger("haltgate.sidecar")
_T = TypeVar("_T")


class RequestStages(Refusals):
    """Reads and judges the request (each stage refuses by raising)."""

    async def read_body(self, request: PipelineRequest, call: Call) -> bytes:
        """The whole request body, within the policy's size limit, the sidecar's body
        memory budget and the client timeout."""
        limit = call.controls.max_body_bytes
        coding = request.headers.get("Content-Encoding")
        if coding is not None and coding.strip().lower() not in ("", "identity"):
            # aiohttp decodes one layer on the way in, and an upstream that decompresses
            # requests would decode again what the rules judged as opaque bytes; with a
            # Content-Length the decoded body is cut at the encoded length. One reading:
            # request bodies travel uncompressed (tests/differential, body-*).
            raise BadRequestError(
                f"request bodies with Content-Encoding {coding[:32]!r} are "
                "not accepted; send the body uncompressed",
                code="encoded_request_body",
            )
        length = request.content_length
        if length is not None and length > limit:
            raise BadRequestError(
                f"request body of {length} bytes exceeds the limit of {limit} bytes",
                code="body_too_large",
            )
        if not request.body_exists:
            return b""
        if length is not None:
            self._hold(call, length, "request")  # before a byte of it is read
        if length is not None:
            # Fast path: a small body usually arrived with the headers; no timer needed.
            first = request.content.read_nowait(length)
            if len(first) == length:
                return first
        else:
            first = b""
        try:
            async with asyncio.timeout(self.settings.client_body_timeout):
                if length is not None:
                    return first + await request.content.readexactly(length - len(first))
                chunks: list[bytes] = []
                size = 0
                async for chunk in request.content.iter_any():
                    size += len(chunk)
                    if size > limit:
                        raise BadRequestError(
                            f"request body exceeds the limit of {limit} bytes",
                            code="body_too_large",
                        )
                    self._hold(call, len(chunk), "request")
                    chunks.append(chunk)
                return b"".join(chunks)
        except TimeoutError as e:
            raise BadRequestError(
                "the client sent its request body too slowly", code="client_timeout"
            ) from e
        except (asyncio.IncompleteReadError, aiohttp.ClientPayloadError, ConnectionError) as e:
            raise BadRequestError("the request body ended early", code="truncated_body") from e

    async def check_destination(self, call: Call) -> None:
        """Hosts the agent names itself (not policy upstreams) must not be this pod."""
        target = call.target
        if target is not None and target.upstream is None and not target.destination_checked:
            await check_destination(target.host, target.port)

    def authorize_tools(self, call: Call) -> None:
        """``spec.tools`` rules: deny wins, the default decides what no rule matches."""
        assert call.classified is not None
        if call.teardown:
            return
        result = call.controls.authorizer.authorize(call.classified.view)
        call.authz = result
        call.risk += result.risk
        if not result.allowed:
            self.refuse_or_note(
                call,
                "tools",
                DeniedError(
                    result.message,
                    code=result.code or "tool_not_allowed",
                    failure_type=FailureType.SAFETY,
                ),
            )
        if call.classified.mcp is not None:
            # Resources, prompts, completions: spec.mcp, message by message.
            call.mcp = mcp.authorize(
                call,
                call.controls.authorizer,
                call.controls.mcp,
                lambda err: self.refuse_or_note(call, "mcp", err),
            )

    def check_flows(self, call: Call, headers: Mapping[str, str]) -> None:
        """``spec.flows``: a sink call of a run that took in untrusted content is refused
        (or, for ``deny-untrusted-values`` rules, one that carries a value of it)."""
        flows = call.controls.flows
        if flows is None or call.teardown or call.classified is None:
            return
        self.flow_taint.bind(call.agent.run_id)
        self.flow_taint.tick()
        refusal, approved = flows.check(
            call.classified.view,
            self.flow_taint,
            lambda: fingerprint_of(call),
            lambda: sink_arguments(call, headers),
        )
        if approved is not None:
            call.flow_stage = approved.audit("approved")
        if refusal is not None:
            call.flow_stage = refusal.audit()
            if refusal.approval is not None:
                call.refusal_headers = {APPROVAL_HEADER: refusal.approval}
            self.refuse_or_note(
                call,
                "flows",
                DeniedError(refusal.message, code=refusal.code, failure_type=FailureType.SAFETY),
            )

    def record_flow_sources(self, call: Call) -> None:
        """An answer from an untrusted source is about to reach the agent: taint the run
        (and mark the rules whose values the answer must be read for)."""
        flows = call.controls.flows
        if flows is None or call.classified is None:
            return
        view = call.classified.view
        if rules := flows.sources_hit(view):
            self.flow_taint.bind(call.agent.run_id)
            self.flow_taint.taint(rules, describe_call(view))
            call.flow_value_rules = tuple(r for r in rules if r in flows.value_rules)

    async def record_flow_values(self, call: Call, body: bytes, headers: Mapping[str, str]) -> None:
        """Keep the values of an untrusted answer (hashed), durably, before it reaches the
        agent (the file is written on a worker thread: other calls go on meanwhile); an
        answer that cannot be read closes the rules' sinks for the run (fail closed)."""
        rules = call.flow_value_rules
        assert call.classified is not None
        source = describe_call(call.classified.view)
        try:
            plain = decode_content(
                body, headers.get("Content-Encoding"), self.settings.max_decoded_response_bytes
            )
            if plain is not body:
                self._hold(call, len(plain), "response")
            values = answer_values(plain, headers.get("Content-Type"))
        except (Unscannable, ValuesUnreadable) as e:
            log.warning(
                "flow rules %s: the answer of %s cannot be read for values (%s): their sinks "
                "are closed for this run",
                ", ".join(rules),
                call.decision_id,
                e,
            )
            self.flow_taint.values_unread(rules, source)
            return
        taint = self.flow_taint
        if taint.record_values(rules, values, save=False) and taint.values is not None:
            await asyncio.to_thread(taint.save)
            self.metrics.flow_value_fill.set(taint.values.fill())

    async def _scan(self, call: Call, scan: Callable[..., _T], *args: Any) -> _T:
        """Run a guardrail stage: inline, or, when the policy turns the model stage on
        (a transformer forward pass: milliseconds to tens of them), on the model's own
        thread so the event loop keeps serving every other call meanwhile."""
        thread = self.model_thread(call)
        if thread is None:
            return scan(*args)
        return await asyncio.get_running_loop().run_in_executor(
            thread, run_with, call.model_clock, scan, *args
        )

    def model_thread(self, call: Call) -> ThreadPoolExecutor | None:
        """The guardrails model's own thread when the call's policy runs the model stage
        (whole bodies and stream events alike), else ``None``: scans run inline. Scans run
        there under the call's model clock (:func:`run_with`, ``modelBudgetMs``)."""
        injection = call.controls.spec.guardrails.prompt_injection
        if injection is None or not injection.enabled or not injection.model:
            return None
        if call.model_clock is None and injection.model_budget_ms is not None:
            call.model_clock = ModelClock(injection.model_budget_ms / 1000)
        if self._model_thread is None:
            self._model_thread = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="haltgate-guard-model"
            )
        return self._model_thread

    def scan_request(self, call: Call, headers: Mapping[str, str] | None = None) -> None:
        """Guardrails on what the agent sends (prompts, tool arguments; URL and headers)."""
        guardrails = call.controls.guardrails
        classified = call.classified
        if guardrails is None or classified is None or not guardrails.active("request"):
            return
        if call.target is not None:
            self._scan_request_meta(call, guardrails, headers or {})
        subject: Any = classified.body
        if subject is None:
            if not call.body:
                return
            subject = call.body.decode("utf-8", "replace")
        try:
            result = (
                guardrails.scan_json(subject, "request")
                if not isinstance(subject, str)
                else guardrails.scan(subject, "request")
            )
        except Exception as e:  # a detector bug must not open the gate by accident
            if call.controls.spec.guardrails.fail_mode is FailMode.OPEN:
                self.metrics.fail_open.labels("guardrails").inc()
                log.warning("guardrails failed (fail open): %s", e)
                return
            self.refuse_or_note(
                call,
                "guardrails",
                UnavailableError(f"guardrails failed: {e}", code="guardrails_error"),
            )
            return
        call.findings.extend(f.to_dict() for f in result.findings)
        call.risk += result.risk
        if result.errors and not result.blocked:
            self._guardrail_fail_open(call, result.errors)
        if result.blocked:
            self.refuse_or_note(
                call,
                "guardrails",
                DeniedError(
                    "a guardrail blocked the request",
                    code=result.code or "guardrail_blocked",
                    failure_type=FailureType.SAFETY,
                ),
            )
        if call.controls.monitor:
            return  # monitor mode changes nothing: a redaction is a finding, not applied
        if result.redacted_obj is not None and classified.body is not None:
            classified.body = result.redacted_obj
            call.forward_body = orjson.dumps(result.redacted_obj)
        elif result.redacted_text is not None and classified.body is None:
            call.forward_body = result.redacted_text.encode()

    def _scan_request_meta(self, call: Call, guardrails: Any, headers: Mapping[str, str]) -> None:
        """The secrets guardrail on the URL and header values (see request_meta)."""
        target = call.target
        assert target is not None
        meta = scan_request_meta(guardrails, target.path, target.query, headers.items())
        if not meta.findings and not meta.errors:
            return
        call.findings.extend(f.to_dict() for f in meta.findings)
        call.risk += meta.risk
        if meta.errors and not meta.blocked:
            self._guardrail_fail_open(call, meta.errors)
        if meta.blocked:
            self.refuse_or_note(
                call,
                "guardrails",
                DeniedError(
                    "a guardrail blocked the request",
                    code=meta.code or "guardrail_blocked",
                    failure_type=FailureType.SAFETY,
                ),
            )
        if call.controls.monitor:
            return  # not redacted in monitor mode (the findings say what would be)
        if meta.path is not None or meta.query is not None:
            call.target = replace(
                target,
                path=target.path if meta.path is None else meta.path,
                query=target.query if meta.query is None else meta.query,
            )
        call.redacted_headers = meta.headers

    async def decide_policy(self, call: Call) -> None:
        """The policy's OPA decision, when the policy has one."""
        if self.opa is None or call.controls.spec.opa is None or call.teardown:
            return
        from haltgate.governance.opa_input import build_input

        assert call.classified is not None
        budget = {k: dict(v) for k, v in self._last_budget.items()}
        usage: dict[str, Any] = {
            dim: budget[dim]["used"]
            for dim in ("calls", "tokens", "cost_usd")
            if dim in budget and "used" in budget[dim]
        }
        decision = await self.opa.decide(
            build_input(
                call.classified.view,
                authz=call.authz,
                budget=budget,
                usage=usage,
                findings=call.findings,
            )
        )
        call.risk += decision.risk
        if decision.fail_open:
            self.metrics.fail_open.labels("opa").inc()
        self._child(
            self.metrics.opa_decisions,
            "fail_open"
            if decision.fail_open
            else "allow"
            if decision.allow
            else "error"
            if decision.failure_type is None
            else "deny",
        ).inc()
        if decision.allow:
            call.upstream_headers = decision.headers or None
            return
        call.refusal_headers = decision.headers or None
        self.refuse_or_note(
            call,
            "opa",
            UnavailableError(
                decision.reason or "policy decision unavailable",
                code=decision.code or "opa_unavailable",
            )
            if decision.failure_type is None
            else DeniedError(
                decision.reason or "denied by policy",
                code=decision.code or "opa_denied",
                failure_type=decision.failure_type,
            ),
        )
