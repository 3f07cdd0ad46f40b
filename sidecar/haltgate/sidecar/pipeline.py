"""The request pipeline: every governed call goes through these stages, in this order.

    identify -> read body -> classify -> not this pod? -> halted? -> tool authorization
    -> guardrails(in) -> policy decision (OPA) -> budget reserve -> audit intent -> forward
    -> usage + budget settle -> guardrails(out) -> audit outcome -> metrics

:meth:`Pipeline.handle` reads top-down as that list. Each stage is a small method with one
job; a stage refuses by raising a :class:`~haltgate.governance.errors.HaltgateError`, which
:meth:`Pipeline.handle` turns into a typed answer (JSON, JSON-RPC or a final SSE event),
audited like any other decision. Nothing reaches the upstream before the budget is
reserved and the intent record is durable; a reservation that is never forwarded is
released.

Hot-path rules: the request body is forwarded as the bytes that came in unless a stage
must change it (usage injection for streams, guardrail redaction); JSON is parsed once,
with orjson, and only for LLM and MCP calls.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from itertools import count
from typing import Any, TypeVar

import aiohttp
import orjson
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from haltgate.governance.audit import (
    AuditError,
    AuditRecord,
    AuditSink,
    InvalidRecordError,
    MemoryAuditSink,
)
from haltgate.governance.audit.redact import AuditScrubber, state_key
from haltgate.governance.canonical import check_meaning_overrides
from haltgate.governance.engine.units import pico_to_usd
from haltgate.governance.errors import (
    BadRequestError,
    DeniedError,
    HaltgateError,
    UnavailableError,
    UpstreamError,
)
from haltgate.governance.flows import APPROVAL_HEADER, FlowTaint
from haltgate.governance.flows import describe as describe_call
from haltgate.governance.guardrails.request_meta import scan_request_meta
from haltgate.governance.guardrails.response_body import (
    MAX_DECODED_BYTES,
    StreamDecoder,
    Unscannable,
    decode_content,
    scan_decoded_body,
)
from haltgate.governance.guardrails.sse import ChatStreamGuard
from haltgate.governance.policy_base import FailMode, FailureType, PayloadCapture, RequestKind
from haltgate.governance.request import AgentIdentity
from haltgate.governance.tools import AuthzResult
from haltgate.sidecar import mcp
from haltgate.sidecar import responses as r
from haltgate.sidecar.bodybudget import DEFAULT_BODY_BUDGET, BodyBudget, MemoryBudgetError
from haltgate.sidecar.budget import NO_BUDGET as _NO_BUDGET
from haltgate.sidecar.budget import Budget, BudgetVerdict
from haltgate.sidecar.classify import Classified, Target, classify
from haltgate.sidecar.controls import Controls
from haltgate.sidecar.destinations import check_destination
from haltgate.sidecar.injected_usage import HiddenUsage, ask_for_usage
from haltgate.sidecar.input_bound import max_input_tokens
from haltgate.sidecar.metrics import SidecarMetrics
from haltgate.sidecar.replayinputs import replay_inputs
from haltgate.sidecar.sse import DEFAULT_MAX_EVENT_BYTES, EventHold, SSEEvent, SSEParser
from haltgate.sidecar.sse_frames import EventFramer, parse_event
from haltgate.sidecar.usage import TokenCounts, UsageReader

__all__ = ["Call", "Pipeline", "PipelineSettings"]

log = logging.getLogger("haltgate.sidecar")
_T = TypeVar("_T")

# Hop-by-hop headers (RFC 9110 7.6.1) and those aiohttp recomputes: never relayed.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    }
)
# Also never forwarded: haltgate reads the whole body itself (Expect: 100-continue was
# answered to the agent already).
# The call-chain header is the pool stage's to set (agent upstreams only), never relayed.
_REQUEST_DROP = _HOP_BY_HOP | {"expect", "x-haltgate-chain"}
_RESPONSE_DROP = _HOP_BY_HOP - {"proxy-authenticate"}
_EVENT_STREAM = "text/event-stream"
_MAX_RAW_TARGET = 2048
"""Characters of an unresolved request target kept in its refusal record."""
_STREAM_FREE_BYTES = 64 * 1024
"""Unfinished-event bytes a stream holds without charging the body memory budget."""


@dataclass(frozen=True, slots=True)
class PipelineSettings:
    """Knobs of the pipeline that are not policy (process settings)."""

    default_max_output_tokens: int = 4096
    """Output tokens reserved for an LLM call that names no cap, when the price table does
    not know the model's largest completion (tokens). A known model reserves its real
    maximum (``PriceTable.max_output_tokens``): the worst case is the worst case."""
    client_body_timeout: float = 30.0
    """Seconds a client may take to send its request body (slow clients get 408)."""
    intent_timeout: float = 5.0
    """Seconds to wait for the audit intent to be durable before refusing (503)."""
    max_buffered_response_bytes: int = 64 * 1024 * 1024
    """Largest non-streamed LLM/MCP answer read whole (bytes); larger ones are refused
    (502 ``upstream_response_too_large``) rather than held in memory."""
    max_decoded_response_bytes: int = MAX_DECODED_BYTES
    """Largest decompressed answer the response guardrails read (bytes); a larger one is
    unscannable and follows ``failMode`` (a compression bomb is never inflated whole)."""
    body_memory_budget: int = DEFAULT_BODY_BUDGET
    """Body bytes all calls together may hold in memory (bodybudget.py); past it a call is
    refused with 503 ``memory_budget_exhausted`` before its body is read."""
    max_sse_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    """Largest SSE event held while relaying a stream (bytes); a stream whose event grows
    past it is ended with the error event ``sse_event_too_large``."""


@dataclass(slots=True)
class Call:
    """The state of one request as it moves through the stages."""

    decision_id: str
    started: float
    """perf_counter() at arrival."""
    ts: float
    """Wall clock (epoch seconds) at arrival: the budget engine's event time."""
    controls: Controls
    agent: AgentIdentity
    method: str = ""
    target: Target | None = None
    classified: Classified | None = None
    body: bytes = b""
    forward_body: bytes | None = None
    """Body to send upstream when a stage changed it (``None``: the original bytes)."""
    authz: AuthzResult | None = None
    risk: float = 0.0
    findings: list[Mapping[str, Any]] = field(default_factory=list)
    fingerprint: str = ""
    reserved: bool = False
    reservation: BudgetVerdict | None = None
    pool_need: Any = None
    """What the pool stage reserved from the shared pool (``None``: nothing)."""
    chain: str | None = None
    """``x-haltgate-chain`` value to send (calls to agent upstreams)."""
    upstream_headers: Mapping[str, str] | None = None
    """Headers an allowing OPA decision adds to the upstream request."""
    refusal_headers: Mapping[str, str] | None = None
    """Headers a denying OPA decision adds to the error response."""
    max_output_tokens: int = 0
    forward_started: float = 0.0
    upstream_done: float = 0.0
    overhead: float = 0.0
    """Seconds of the sidecar's own work (upstream time excluded)."""
    cost_usd: float | None = None
    """Priced spend of the call once settled (``None``: not an LLM call or not priced)."""
    scrub: AuditScrubber | None = None
    """Scrubs what the call's audit records store (redaction, NUL, depth); made once."""
    raw_target: str = ""
    """The request target as received, for the record of a call refused before its target
    was resolved."""
    redacted_headers: Mapping[str, Sequence[str]] | None = None
    """Header values a guardrail redacted, by lower-case name: forwarded instead."""
    held: int = 0
    """Body bytes this call holds of the sidecar's memory budget (given back at its end)."""
    mcp: mcp.McpCallState | None = None
    """Per-message decisions and reservations of an MCP request (``haltgate.sidecar.mcp``)."""

    @property
    def teardown(self) -> bool:
        """An MCP session's closing DELETE: never refused, never budgeted."""
        c = self.classified
        return c is not None and c.mcp is not None and c.mcp.teardown

    @property
    def kind_label(self) -> str:
        view = self.classified.view if self.classified else None
        return view.kind.value if view is not None and view.kind is not None else "unknown"

    @property
    def is_rpc(self) -> bool:
        """Answer errors as JSON-RPC: a POST to an MCP upstream (even one that did not parse)."""
        t = self.target
        return (
            t is not None
            and t.upstream is not None
            and t.upstream.kind is RequestKind.MCP
            and self.method == "POST"
        )


class Pipeline:
    """Governs one request at a time (many concurrently, on one event loop)."""

    def __init__(
        self,
        *,
        controls: Controls,
        budget: Budget,
        audit: AuditSink,
        metrics: SidecarMetrics,
        session: aiohttp.ClientSession,
        agent: AgentIdentity,
        opa: Any | None = None,
        settings: PipelineSettings | None = None,
        pool: Any | None = None,
        flow_taint: FlowTaint | None = None,
    ) -> None:
        self.controls = controls
        """Current compiled policy; replaced on reload (requests keep theirs)."""
        self.budget = budget
        self.audit = audit
        self.metrics = metrics
        self.session = session
        self.agent = agent
        self.opa = opa
        self.pool = pool
        """``haltgate.sidecar.pool.PoolStage`` (shared budget, call chains) or ``None``."""
        self.flow_taint = flow_taint if flow_taint is not None else FlowTaint()
        """What untrusted sources this run took in (``spec.flows``); per run id."""
        self.settings = settings or PipelineSettings()
        self.memory = BodyBudget(
            self.settings.body_memory_budget,
            gauge=metrics.body_bytes_in_flight,
            refusals=metrics.body_budget_refusals,
        )
        """Body bytes held by all calls (a sidecar-wide bound, see bodybudget.py)."""
        self._model_thread: ThreadPoolExecutor | None = None
        """One thread for the guardrails model stage (created when a policy uses it)."""
        self._ids = count(1)
        self._id_prefix = os.urandom(6).hex() + "-"
        self._background: set[asyncio.Task[None]] = set()
        self._audit_in_memory = isinstance(audit, MemoryAuditSink)
        self._submit_nowait = getattr(audit, "submit_nowait", None)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.decisions: dict[str, int] = {"allow": 0, "deny": 0, "error": 0}
        self._last_budget: Mapping[str, Mapping[str, float]] = {}
        """The budget as the last reserve/settle left it: ``input.budget`` for OPA."""
        self.last_error: dict[str, Any] | None = None

    # ------------------------------------------------------------------ the pipeline

    async def handle(
        self, request: web.BaseRequest, target: Target | HaltgateError
    ) -> web.StreamResponse:
        """Govern one request to ``target`` (or answer the resolution error)."""
        call = self.identify()
        try:
            return await self._govern(request, target, call)
        finally:
            if call.held:  # the bodies' share of the memory budget, whatever happened
                self.memory.give(call.held)
                call.held = 0

    async def _govern(
        self, request: web.BaseRequest, target: Target | HaltgateError, call: Call
    ) -> web.StreamResponse:
        try:
            if isinstance(target, HaltgateError):
                raise target
            call.target = target
            call.method = request.method
            call.body = await self.read_body(request, call)
            check_meaning_overrides(request.headers, target.query, request.content_type, call.body)
            call.classified = classify(request.method, target, call.body, call.agent)
            await self.check_destination(call)
            self.check_not_halted(call)
            self.authorize_tools(call)
            self.check_flows(call)
            await self._scan(call, self.scan_request, call, request.headers)
            await self.decide_policy(call)
            if self.pool is not None and not call.teardown:
                await self.pool.admit(call, request.headers)
            self.reserve_budget(call)
            await self.audit_intent(call)
        except HaltgateError as err:
            return await self.refuse(request, call, err)
        except BaseException:
            # Not a decision (a bug, cancellation): nothing was forwarded, so what the
            # stages reserved goes back, or the budget and the pool would leak it.
            self.abandon(call)
            raise
        try:
            return await self.forward(request, call)
        except BaseException:
            # Cancelled (shutdown) or a bug: the call may have reached the upstream, so its
            # reservation becomes spend (usage unknown: fail closed), never a leak.
            if call.reserved:
                self.settle_budget(call, None, False, "interrupted", None)
            raise

    # ------------------------------------------------------------------ stages

    def identify(self) -> Call:
        """Give the call its decision id and timestamps; attach the agent identity."""
        return Call(
            decision_id=self._id_prefix + format(next(self._ids), "x"),
            started=time.perf_counter(),
            ts=time.time(),
            controls=self.controls,
            agent=self.agent,
        )

    async def read_body(self, request: web.BaseRequest, call: Call) -> bytes:
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

    def _hold(self, call: Call, nbytes: int, direction: str) -> None:
        """Take ``nbytes`` of the body memory budget for ``call`` (or refuse it: 503)."""
        self.memory.take(nbytes, direction, call.held)
        call.held += nbytes

    async def check_destination(self, call: Call) -> None:
        """Hosts the agent names itself (not policy upstreams) must not be this pod."""
        target = call.target
        if target is not None and target.upstream is None and not target.destination_checked:
            await check_destination(target.host, target.port)

    def check_not_halted(self, call: Call) -> None:
        """A halted run refuses every call until an operator resets it."""
        if call.teardown:
            return  # a halted agent still closes its sessions upstream
        verdict = self.budget.halted(call.ts)
        if not verdict.allowed:
            raise _denied(verdict)

    def authorize_tools(self, call: Call) -> None:
        """``spec.tools`` rules: deny wins, the default decides what no rule matches."""
        assert call.classified is not None
        if call.teardown:
            return
        result = call.controls.authorizer.authorize(call.classified.view)
        call.authz = result
        call.risk += result.risk
        if not result.allowed:
            raise DeniedError(
                result.message,
                code=result.code or "tool_not_allowed",
                failure_type=FailureType.SAFETY,
            )
        if call.classified.mcp is not None:
            # Resources, prompts, completions: spec.mcp, message by message.
            call.mcp = mcp.authorize(call, call.controls.authorizer, call.controls.mcp)

    def check_flows(self, call: Call) -> None:
        """``spec.flows``: a sink call of a run that took in untrusted content is refused."""
        flows = call.controls.flows
        if flows is None or call.teardown or call.classified is None:
            return
        self.flow_taint.bind(call.agent.run_id)
        self.flow_taint.tick()
        refusal = flows.check(call.classified.view, self.flow_taint, lambda: _fingerprint(call))
        if refusal is not None:
            if refusal.approval is not None:
                call.refusal_headers = {APPROVAL_HEADER: refusal.approval}
            raise DeniedError(refusal.message, code=refusal.code, failure_type=FailureType.SAFETY)

    def record_flow_sources(self, call: Call) -> None:
        """An answer from an untrusted source is about to reach the agent: taint the run."""
        flows = call.controls.flows
        if flows is None or call.classified is None:
            return
        view = call.classified.view
        if rules := flows.sources_hit(view):
            self.flow_taint.bind(call.agent.run_id)
            self.flow_taint.taint(rules, describe_call(view))

    async def _scan(self, call: Call, scan: Callable[..., _T], *args: Any) -> _T:
        """Run a guardrail stage: inline, or, when the policy turns the model stage on
        (a transformer forward pass: milliseconds to tens of them), on the model's own
        thread so the event loop keeps serving every other call meanwhile."""
        injection = call.controls.spec.guardrails.prompt_injection
        if injection is None or not injection.enabled or not injection.model:
            return scan(*args)
        if self._model_thread is None:
            self._model_thread = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="haltgate-guard-model"
            )
        return await asyncio.get_running_loop().run_in_executor(self._model_thread, scan, *args)

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
            raise UnavailableError(f"guardrails failed: {e}", code="guardrails_error") from e
        call.findings.extend(f.to_dict() for f in result.findings)
        call.risk += result.risk
        if result.errors and not result.blocked:
            self._guardrail_fail_open(call, result.errors)
        if result.blocked:
            raise DeniedError(
                "a guardrail blocked the request",
                code=result.code or "guardrail_blocked",
                failure_type=FailureType.SAFETY,
            )
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
            raise DeniedError(
                "a guardrail blocked the request",
                code=meta.code or "guardrail_blocked",
                failure_type=FailureType.SAFETY,
            )
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
        if decision.failure_type is None:
            raise UnavailableError(
                decision.reason or "policy decision unavailable",
                code=decision.code or "opa_unavailable",
            )
        raise DeniedError(
            decision.reason or "denied by policy",
            code=decision.code or "opa_denied",
            failure_type=decision.failure_type,
        )

    def reserve_budget(self, call: Call) -> None:
        """Reserve the call's worst case atomically; refuse if it does not fit."""
        classified = call.classified
        assert classified is not None and call.target is not None
        view = classified.view
        call.fingerprint = _fingerprint(call)
        if call.mcp is not None or call.teardown:
            # One reservation per message that does work upstream; none for protocol and
            # session messages (haltgate.sidecar.mcp).
            mcp_verdict = mcp.reserve(self.budget, call, call.mcp) if call.mcp is not None else None
            if mcp_verdict is None:
                return
            call.reservation = mcp_verdict
            if mcp_verdict.budget is not _NO_BUDGET:
                self._last_budget = mcp_verdict.budget
            if not mcp_verdict.allowed:
                raise _denied(mcp_verdict)
            call.reserved = True
            return
        if view.kind is RequestKind.LLM:
            call.max_output_tokens = (
                view.max_output_tokens
                if view.max_output_tokens is not None
                else self._model_max_output(view.model) * classified.choices
            )
            max_input = max_input_tokens(
                classified, len(call.forward_body or call.body), self.budget
            )
        else:
            max_input = 0
        verdict = self.budget.reserve(
            call_id=call.decision_id,
            ts=call.ts,
            kind=view.kind.value if view.kind is not None else "unknown",
            # Names the state file keeps: a key or an address in one is kept as a digest.
            host=state_key(view.host) or "",
            tool=state_key(view.tool_calls[0].name) if view.tool_calls else None,
            model=state_key(view.model),
            max_input_tokens=max_input,
            max_output_tokens=call.max_output_tokens,
            fingerprint=call.fingerprint,
            risk=call.risk,
        )
        call.reservation = verdict
        # Kept as it came (a lazy report): testing its truth would build it on every call.
        if verdict.budget is not _NO_BUDGET:
            self._last_budget = verdict.budget
        if not verdict.allowed:
            raise _denied(verdict)
        call.reserved = True
        if classified.wants_usage_injection:
            # Ask the upstream for a usage chunk so the stream is metered exactly; the relay
            # reads it and takes out what the option added (docs/sidecar.md).
            call.forward_body = ask_for_usage(classified.body)

    def _model_max_output(self, model: str | None) -> int:
        """Output tokens to reserve when the request names no cap: the model's maximum."""
        known = self.budget.max_output_tokens(model)
        return known if known is not None else self.settings.default_max_output_tokens

    async def audit_intent(self, call: Call) -> None:
        """Make the intent durable before anything leaves (no action without a record)."""
        record = self._record(call, "intent", decision="allow")
        try:
            if self._audit_in_memory:
                await self.audit.intent(record)  # cannot block: no timer on the hot path
            else:
                async with asyncio.timeout(self.settings.intent_timeout):
                    await self.audit.intent(record)
        except AuditError as e:
            raise UnavailableError(f"audit trail unavailable: {e.message}", code=e.code) from e
        except TimeoutError as e:
            raise UnavailableError(
                "audit trail did not confirm the record in time", code="audit_timeout"
            ) from e

    async def forward(self, request: web.BaseRequest, call: Call) -> web.StreamResponse:
        """Send the decided call upstream and relay the answer (streamed or whole)."""
        assert call.target is not None and call.classified is not None
        call.forward_started = time.perf_counter()
        try:
            upstream = await self.session.request(
                # encoded=True: the canonical path goes out as decided, never re-read.
                request.method,
                URL(call.target.url, encoded=True),
                data=(call.forward_body if call.forward_body is not None else call.body) or None,
                headers=_forward_headers(request.headers, call),
                allow_redirects=False,
                timeout=call.controls.upstream_timeout,
            )
        except TimeoutError as e:
            return await self.fail_upstream(
                request,
                call,
                UpstreamError("the upstream did not answer in time", code="upstream_timeout"),
                e,
            )
        except (aiohttp.ClientError, OSError) as e:
            return await self.fail_upstream(
                request,
                call,
                UpstreamError(
                    f"the upstream is unreachable: {type(e).__name__}", code="upstream_unreachable"
                ),
                e,
            )
        call.upstream_done = time.perf_counter()
        self.record_flow_sources(call)
        try:
            self._child(self.metrics.upstream_latency, call.kind_label).observe(
                call.upstream_done - call.forward_started
            )
            if (
                call.classified.mcp is not None
                and (refusal := mcp.encoding_refusal(call, upstream.headers)) is not None
            ):
                return await self.fail_upstream(request, call, refusal, None)
            if upstream.content_type == _EVENT_STREAM and not self._must_buffer(call):
                return await self.relay_stream(request, call, upstream)
            if self._passes_through(call):
                return await self.relay_through(request, call, upstream)
            return await self.relay_whole(request, call, upstream)
        finally:
            upstream.release()

    def _passes_through(self, call: Call) -> bool:
        # HTTP tools: nothing to read in the answer unless response guardrails scan it, so
        # it is relayed as it arrives (any size, compression untouched), never buffered.
        c = call.classified
        guardrails = call.controls.guardrails
        return (
            c is not None
            and c.view.kind is RequestKind.HTTP
            and (guardrails is None or not guardrails.active("response"))
        )

    def _must_buffer(self, call: Call) -> bool:
        # tools/list (resources/list, prompts/list) answers are rewritten (filtered), so
        # they are read whole even as SSE.
        c = call.classified
        return (
            c is not None
            and c.view.kind is RequestKind.MCP
            and (_lists_tools(c.body) or (c.mcp is not None and bool(mcp.listing_ids(c.mcp))))
        )

    async def relay_through(
        self, request: web.BaseRequest, call: Call, upstream: aiohttp.ClientResponse
    ) -> web.StreamResponse:
        """Relay an answer chunk by chunk without reading it (HTTP tools)."""
        resp = web.StreamResponse(
            status=upstream.status,
            reason=upstream.reason,
            headers=_response_headers(upstream.headers, call, None),
        )
        if upstream.content_length is not None:
            resp.content_length = upstream.content_length
        resp.headers[r.OVERHEAD_HEADER] = _overhead_ms(call)
        await resp.prepare(request)
        digest = hashlib.blake2b(digest_size=16)
        truncated = client_gone = False
        try:
            async for chunk in upstream.content.iter_any():
                digest.update(chunk)
                try:
                    await resp.write(chunk)
                except (ConnectionError, RuntimeError):
                    client_gone = True
                    break
        except (aiohttp.ClientError, TimeoutError, OSError):
            truncated = True
        if not client_gone:
            try:
                if truncated:
                    # The status line is out: closing without the rest is all that is left.
                    resp.force_close()
                else:
                    await resp.write_eof()
            except (ConnectionError, RuntimeError):
                pass
        ok = upstream.status < 500 and not truncated
        self.settle_budget(
            call, None, ok, None if ok else f"http_{upstream.status}", digest.hexdigest()
        )
        self._finish(call, "allow", None)
        self._audit_outcome(call, upstream.status, None, decision="allow")
        return resp

    async def relay_whole(
        self, request: web.BaseRequest, call: Call, upstream: aiohttp.ClientResponse
    ) -> web.StreamResponse:
        """A complete (non-streamed) answer: settle, scan, then send it."""
        limit = self.settings.max_buffered_response_bytes
        known = upstream.content_length
        if known is not None and known > limit:
            return await self.fail_upstream(
                request,
                call,
                UpstreamError(
                    f"the upstream answer exceeds {limit} bytes", code="upstream_response_too_large"
                ),
                None,
            )
        try:
            if known is not None:
                self._hold(call, known, "response")
            chunks: list[bytes] = []
            size = 0
            while chunk := await upstream.content.readany():
                size += len(chunk)
                if size > limit:
                    return await self.fail_upstream(
                        request,
                        call,
                        UpstreamError(
                            f"the upstream answer exceeds {limit} bytes",
                            code="upstream_response_too_large",
                        ),
                        None,
                    )
                if known is None or size > known:
                    self._hold(call, len(chunk), "response")
                chunks.append(chunk)
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            return await self.fail_upstream(
                request,
                call,
                UpstreamError("the upstream answer ended early", code="upstream_truncated"),
                e,
            )
        except MemoryBudgetError as e:
            # The call went out (its reservation is settled as failed): the answer cannot
            # be held now, so the agent gets a typed 503 rather than the sidecar the OOM.
            return await self.fail_upstream(request, call, e, None)
        call.upstream_done = time.perf_counter()
        classified = call.classified
        assert classified is not None
        counts, content_fp = self.read_usage(call, upstream.status, body=body)
        ok, err_fp = _outcome_of(call, upstream.status, body)
        if call.mcp is not None and call.mcp.sub_ids:
            mcp.read_outcomes(call.mcp, body)
        settle = self.settle_budget(call, counts, ok, err_fp, content_fp or _digest(body))
        if classified.view.kind is RequestKind.MCP and _lists_tools(classified.body):
            body = self.filter_tools_list(call, upstream, body)
        if classified.mcp is not None and upstream.status < 300:
            body = mcp.filter_listings(call, body, upstream.content_type, _rewrite_sse)
        try:
            if classified.mcp is not None:
                body = mcp.filter_answer(call, body, upstream.content_type)
            # Decoded here on the loop (its bytes charged to the memory budget), scanned
            # where the guardrails run.
            plain = self.decode_response(call, body, upstream.headers)
            new = (
                None
                if plain is None
                else await self._scan(
                    call, self.scan_response, call, plain, upstream.headers.get("Content-Type")
                )
            )
        except HaltgateError as err:
            decision = "deny" if isinstance(err, DeniedError) else "error"
            self._finish(call, decision, err.code)
            self._audit_outcome(call, upstream.status, counts, decision=decision, err=err)
            return await self._send_error(request, call, err)
        resp = web.Response(
            status=upstream.status,
            reason=upstream.reason,
            body=body if new is None else new,
            headers=_response_headers(upstream.headers, call, settle),
        )
        if new is not None and plain is not body:
            resp.headers.popall("Content-Encoding", None)  # sent decoded once redacted
        resp.headers[r.OVERHEAD_HEADER] = _overhead_ms(call)
        self._finish(call, "allow", None)
        self._audit_outcome(call, upstream.status, counts, decision="allow")
        return resp

    async def relay_stream(
        self, request: web.BaseRequest, call: Call, upstream: aiohttp.ClientResponse
    ) -> web.StreamResponse:
        """Relay an SSE answer, metering it event by event; cut it if the budget is crossed.

        A metered stream is checked after each event and cut right after the event that
        crossed the budget (at most one event beyond it), and every event the agent is
        charged for was relayed to it. What the sidecar added to the stream (a usage chunk
        the agent did not ask for) is read and not relayed."""
        classified = call.classified
        assert classified is not None
        guardrails = call.controls.guardrails
        decoder: StreamDecoder | None = None
        coding = upstream.headers.get("Content-Encoding", "identity").strip().lower()
        if guardrails is not None and guardrails.active("response") and coding != "identity":
            # The guardrails read events: a compressed stream is decoded as it comes (and
            # relayed decoded); a coding that cannot be decoded follows failMode.
            try:
                try:
                    decoder = StreamDecoder(coding, self.settings.max_decoded_response_bytes)
                except Unscannable as e:
                    self._unscannable(call, e)
                    guardrails = None
            except HaltgateError as refusal:
                self.settle_budget(call, None, False, refusal.code, None)
                self._finish(call, "error", refusal.code)
                self._audit_outcome(call, upstream.status, None, decision="error", err=refusal)
                return await self._send_error(request, call, refusal)
        resp = web.StreamResponse(
            status=upstream.status,
            reason=upstream.reason,
            headers=_response_headers(upstream.headers, call, None),
        )
        if decoder is not None:
            resp.headers.popall("Content-Encoding", None)
        resp.headers[r.OVERHEAD_HEADER] = _overhead_ms(call)
        await resp.prepare(request)
        max_event = self.settings.max_sse_event_bytes
        reader = (
            UsageReader(classified.dialect, classified.view.model)
            if classified.dialect is not None
            else None
        )
        hidden = HiddenUsage() if classified.wants_usage_injection else None
        # Response guardrails rewrite the stream event by event (redaction held back across
        # events, see ChatStreamGuard); without them the bytes are relayed unchanged.
        scan = (
            _StreamScan(self, call, guardrails, chat=reader is not None)
            if guardrails is not None and guardrails.active("response")
            else None
        )
        # Server requests the policy denies (sampling, elicitation) never reach the agent.
        server_filter = mcp.stream_filter(call) if classified.mcp is not None else None
        if scan is not None and server_filter is not None:
            scan = server_filter.wrap(scan)
        parser = SSEParser(max_event) if scan is not None else None
        framer = EventFramer(max_event) if scan is None and reader is not None else None
        """A metered stream without guardrails: split into raw events, each read, checked
        and relayed as it came."""
        hold = EventHold(max_event)
        """An unmetered stream: the start of an event not complete yet is relayed with the
        rest of its event, so a cut (or an upstream failure) never leaves half an event
        before the error event."""
        digest = hashlib.blake2b(digest_size=16)
        guard = _StreamGuard(call, self.budget)
        cut: HaltgateError | None = None
        truncated = False
        client_gone = False
        charged = 0
        """Bytes of unfinished events charged to the body memory budget (grows only)."""
        try:
            async for chunk in upstream.content.iter_any():
                digest.update(chunk)
                if decoder is not None:
                    try:
                        chunk = decoder.feed(chunk)
                    except Unscannable as e:
                        cut = self._stream_unscannable(call, e)
                        if cut is not None:
                            break
                        # Fail open: the rest as it comes, metered but not scanned.
                        decoder = scan = parser = None
                        if reader is not None:
                            framer = EventFramer(max_event)
                if parser is not None:
                    assert scan is not None
                    events = parser.feed(chunk)
                    if parser.oversized:
                        # An event too large to hold could not be scanned: end the stream
                        # with a typed error, never relay it unscanned or drop it silently.
                        cut = _event_too_large(max_event)
                        break
                    held = parser.buffered
                    out, cut = _scan_events(events, scan, reader, guard, hidden)
                elif framer is not None:
                    assert reader is not None
                    raws = framer.feed(chunk)
                    if framer.overflow:
                        cut = _event_too_large(max_event)
                        break
                    held = framer.buffered
                    out, cut = _meter_events(raws, reader, guard, hidden)
                else:
                    out = hold.feed(chunk)
                    if hold.overflow:
                        cut = _event_too_large(max_event)
                        break
                    held = hold.size
                if cut is None and held > charged:
                    try:
                        charged = self._charge_stream(call, charged, held)
                    except MemoryBudgetError as e:
                        cut = e
                if out and server_filter is not None and parser is None:
                    out = server_filter.raw(out)  # the scan path is filtered in the scan
                if out:
                    # Sent even when the stream is cut after them: the agent receives
                    # every event it is charged for.
                    try:
                        await resp.write(out)
                    except (ConnectionError, RuntimeError):
                        client_gone = True
                        break
                if cut is not None:
                    break
        except (aiohttp.ClientError, TimeoutError, OSError):
            truncated = True
        if not client_gone:
            try:
                # What was written ends at an event boundary: the error event parses.
                if cut is not None:
                    self.metrics.streams_cut.labels(cut.code).inc()
                    await resp.write(r.sse_error_event(cut, call.decision_id))
                elif truncated:
                    self.metrics.streams_cut.labels("upstream_truncated").inc()
                    err = UpstreamError(
                        "the upstream stream ended early", code="upstream_truncated"
                    )
                    await resp.write(r.sse_error_event(err, call.decision_id))
                elif parser is not None and parser.pending:
                    # A last event without its blank line: complete it, scan it, send it.
                    assert scan is not None
                    out, cut = _scan_events(parser.feed(b"\n\n"), scan, reader, guard, hidden)
                    if out:
                        await resp.write(out)
                    if cut is not None:
                        self.metrics.streams_cut.labels(cut.code).inc()
                        await resp.write(r.sse_error_event(cut, call.decision_id))
                elif framer is not None and (rest := framer.rest()):
                    # A last event without its blank line: read it, relay it as it came.
                    assert reader is not None
                    out, _ = _meter_events([rest], reader, guard, hidden)
                    if out:
                        await resp.write(out)
                elif rest := hold.rest():
                    # The upstream's own last bytes, unchanged (filtered like the rest).
                    await resp.write(server_filter.raw(rest) if server_filter else rest)
                await resp.write_eof()
            except (ConnectionError, RuntimeError):
                client_gone = True
        complete = cut is None and not truncated and not client_gone
        # A dialect guessed from the body shape (issue 15) without usage found: the usage is
        # unknown, so the reservation is charged (None), never an estimate of ours.
        counts = (
            reader.result(complete=complete, input_estimate=classified.input_estimate)
            if reader is not None and (reader.found or not classified.dialect_guessed)
            else None
        )
        if cut is None and truncated:  # recorded as what it was, not as a clean allow
            cut = UpstreamError("the upstream stream ended early", code="upstream_truncated")
        upstream_fault = isinstance(cut, UpstreamError)
        ok = upstream.status < 500 and not truncated and not upstream_fault
        self.settle_budget(
            call,
            counts,
            ok,
            None if ok else "stream_failed",
            reader.content_digest if reader is not None else digest.hexdigest(),
        )
        decision, code = (
            ("allow", None)
            if cut is None
            else ("deny" if isinstance(cut, DeniedError) else "error", cut.code)
        )
        self._finish(call, decision, code)
        self._audit_outcome(call, upstream.status, counts, decision=decision, err=cut)
        return resp

    def _charge_stream(self, call: Call, charged: int, held: int) -> int:
        """Charge the bytes a stream holds (unfinished events) past the first 64 KiB to
        the body memory budget: many streams that never end an event are bounded like
        bodies are. Returns the new charge (raises MemoryBudgetError: cut the stream)."""
        if held <= _STREAM_FREE_BYTES:
            return charged
        self._hold(call, held - charged, "response")
        return held

    def _guardrail_fail_open(self, call: Call, errors: Sequence[str]) -> None:
        """Detectors that failed while the scan still allowed (``failMode: open``): each is
        a fail-open event, on the metric and in the call's audit findings."""
        for error in errors:
            detector, _, kind = error.partition(":")
            self.metrics.fail_open.labels("guardrails").inc()
            call.findings.append({"detector": detector, "action": "fail_open", "error": kind})
        log.warning("guardrails failed (fail open) for %s: %s", call.decision_id, ", ".join(errors))

    def read_usage(
        self, call: Call, status: int, *, body: bytes
    ) -> tuple[TokenCounts | None, str | None]:
        """Token usage of a whole LLM answer and a digest of its content (``None, None``
        for other kinds)."""
        classified = call.classified
        if classified is None or classified.dialect is None:
            return None, None
        reader = UsageReader(classified.dialect, classified.view.model)
        if status < 300:
            reader.read_body(body)
            if classified.dialect_guessed and not reader.found:
                return None, reader.content_digest  # usage unknown: the reservation is spent
            return (
                reader.result(complete=True, input_estimate=classified.input_estimate),
                reader.content_digest,
            )
        # Refused or failed upstream calls are not billed by providers.
        return TokenCounts(model=classified.view.model), None

    def settle_budget(
        self,
        call: Call,
        counts: TokenCounts | None,
        ok: bool,
        error_fp: str | None,
        result_fp: str | None,
    ) -> BudgetVerdict | None:
        """Replace the reservation by what the call actually used."""
        if not call.reserved:
            return None
        usage = _engine_usage(counts) if counts is not None else None
        call.reserved = False
        if self.pool is not None:
            self.pool.settle(call, counts, ok)
        if counts is not None:
            self._count_spend(call, counts, usage)
        if call.mcp is not None:
            settled = mcp.settle(self.budget, call.mcp, time.time(), ok, error_fp, result_fp)
            if settled is None:
                return None
            verdict = settled
        else:
            verdict = self.budget.settle(
                call_id=call.decision_id,
                ts=time.time(),
                usage=usage,
                ok=ok,
                error_fingerprint=error_fp,
                result_fingerprint=result_fp,
            )
        if verdict.budget is not _NO_BUDGET:
            self._last_budget = verdict.budget
        if not verdict.allowed and verdict.failure_type is not None:
            self.metrics.sync_halt(self.budget.governor)
        return verdict

    def _count_spend(self, call: Call, counts: TokenCounts, usage: Any) -> None:
        """Token and cost metrics of a settled LLM call; the cost goes to the audit too."""
        model = counts.model or (call.classified.view.model if call.classified else None)
        label = self.metrics.model_label(model)
        tokens = self.metrics.tokens
        self._child(tokens, label, "input").inc(counts.input_tokens)
        self._child(tokens, label, "output").inc(counts.output_tokens)
        if counts.cached_input_tokens:
            self._child(tokens, label, "cached_input").inc(counts.cached_input_tokens)
        if counts.cache_write_tokens:
            self._child(tokens, label, "cache_write").inc(counts.cache_write_tokens)
        if counts.reasoning_tokens:
            self._child(tokens, label, "reasoning").inc(counts.reasoning_tokens)
        governor = self.budget.governor
        if governor is None or model is None:
            return
        pico = governor.engine.prices.cost_pico(usage, model)
        if pico is not None:
            call.cost_usd = pico_to_usd(pico)
            self._child(self.metrics.cost, label).inc(call.cost_usd)

    def filter_tools_list(self, call: Call, upstream: aiohttp.ClientResponse, body: bytes) -> bytes:
        """Hide the tools the agent may not call from ``tools/list`` answers."""
        classified = call.classified
        assert classified is not None
        server = classified.view.upstream or classified.view.host
        authorizer = call.controls.authorizer
        view = classified.view

        def rewrite(message: Any) -> Any:
            if isinstance(message, dict) and isinstance(message.get("result"), dict):
                tools = message["result"].get("tools")
                if isinstance(tools, list):
                    message["result"]["tools"] = authorizer.filter_tools_list(server, tools, view)
            return message

        if upstream.content_type == _EVENT_STREAM:
            return _rewrite_sse(body, rewrite)
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        obj = [rewrite(m) for m in obj] if isinstance(obj, list) else rewrite(obj)
        return orjson.dumps(obj)

    def decode_response(self, call: Call, body: bytes, headers: Mapping[str, str]) -> bytes | None:
        """The answer without its content codings, for the response guardrails (``None``:
        nothing to scan, or unscannable and passed under ``failMode: open``). The decoded
        bytes are held against the body memory budget (503 past it)."""
        guardrails = call.controls.guardrails
        if guardrails is None or not body or not guardrails.active("response"):
            return None
        coding = headers.get("Content-Encoding")
        if not coding or coding.strip().lower() == "identity":
            return body
        try:
            plain = decode_content(body, coding, self.settings.max_decoded_response_bytes)
        except Unscannable as e:
            self._unscannable(call, e)
            return None
        self._hold(call, len(plain), "response")
        return plain

    def scan_response(self, call: Call, body: bytes, content_type: str | None) -> bytes | None:
        """Guardrails on what comes back, decoded (a blocked answer is replaced by a
        refusal). Returns the redacted body, ``None`` when nothing changed. Any text type
        is scanned (see response_body); what cannot be scanned follows ``failMode``."""
        guardrails = call.controls.guardrails
        assert guardrails is not None  # decode_response returned a body to scan
        try:
            scanned = scan_decoded_body(guardrails, body, content_type)
        except Unscannable as e:
            self._unscannable(call, e)
            return None
        except Exception as e:
            if call.controls.spec.guardrails.fail_mode is FailMode.OPEN:
                self._guardrail_fail_open(call, [f"response:{type(e).__name__}"])
                return None
            raise UnavailableError(f"guardrails failed: {e}", code="guardrails_error") from e
        result = scanned.result
        call.findings.extend(f.to_dict() for f in result.findings)
        if result.errors and not result.blocked:
            self._guardrail_fail_open(call, result.errors)
        if result.risk:
            self.budget.add_risk(time.time(), result.risk, result.code or "guardrail_finding")
        if result.blocked:
            raise DeniedError(
                "a guardrail blocked the response",
                code=result.code or "guardrail_blocked",
                failure_type=FailureType.SAFETY,
            )
        return None if scanned.body is body else scanned.body

    def _stream_unscannable(self, call: Call, err: Unscannable) -> HaltgateError | None:
        """`_unscannable` in the middle of a stream: the error that cuts it (closed)."""
        try:
            self._unscannable(call, err)
        except HaltgateError as refusal:
            return refusal
        return None

    def _unscannable(self, call: Call, err: Unscannable) -> None:
        """An answer the guardrails cannot read: refused (closed) or passed, counted and
        audited as a fail-open event (open)."""
        closed = call.controls.spec.guardrails.fail_mode is not FailMode.OPEN
        self._child(
            self.metrics.guardrail_unscanned, err.reason, "refused" if closed else "passed"
        ).inc()
        if closed:
            raise UnavailableError(
                f"the answer cannot be scanned by the guardrails ({err})",
                code="guardrails_unscannable",
            )
        self.metrics.fail_open.labels("guardrails").inc()
        call.findings.append(
            {"detector": "response_body", "action": "fail_open", "error": err.reason}
        )

    # ------------------------------------------------------------------ refusals

    async def refuse(
        self, request: web.BaseRequest, call: Call, err: HaltgateError
    ) -> web.Response:
        """Answer a refusal: release any reservation, audit the decision, send the error."""
        self.abandon(call)
        decision = "deny" if isinstance(err, DeniedError) else "error"
        _overhead_ms(call)
        self._finish(call, decision, err.code)
        if err.failure_type is not None:
            self.metrics.sync_halt(self.budget.governor)  # counts a new halt once
        if call.target is None:
            # No target resolved (unknown alias, malformed path): the request as it came,
            # so probing leaves a trace too (scrubbed like every target).
            call.method = request.method
            call.raw_target = request.raw_path[:_MAX_RAW_TARGET]
        # Refusals are decisions: every one goes to the audit trail.
        self._audit_outcome(call, None, None, decision=decision, err=err)
        return await self._send_error(request, call, err)

    def abandon(self, call: Call) -> None:
        """Give back what the call reserved (budget, pool): it was never forwarded."""
        if call.reserved:
            if call.mcp is not None:
                mcp.release(self.budget, call.mcp, time.time())
            else:
                self.budget.release(call.decision_id, time.time())
            call.reserved = False
        if self.pool is not None:
            self.pool.release(call)

    async def fail_upstream(
        self,
        request: web.BaseRequest,
        call: Call,
        err: UpstreamError | MemoryBudgetError,
        cause: BaseException | None,
    ) -> web.Response:
        """The upstream failed after the call was decided: settle as failed, answer 502/504."""
        # The exception type only: aiohttp errors can quote the URL (and a key in it).
        log.info(
            "upstream failure for %s: %s",
            call.decision_id,
            type(cause).__name__ if cause is not None else err.code,
        )
        if not call.upstream_done:
            call.upstream_done = time.perf_counter()
        # Nothing (or nothing complete) came back: an LLM call may still have been billed,
        # so its usage is unknown (None: the engine charges the reservation, fail closed).
        self.settle_budget(call, None, False, err.code, None)
        _overhead_ms(call)
        self._finish(call, "error", err.code)
        self._audit_outcome(call, None, None, decision="error", err=err)
        return await self._send_error(request, call, err)

    async def _send_error(
        self, request: web.BaseRequest, call: Call, err: HaltgateError
    ) -> web.Response:
        c = call.classified
        retry = call.reservation.retry_after if call.reservation else None
        if isinstance(err, MemoryBudgetError):
            retry = 1.0  # bodies in flight end within seconds
        resp = r.error_response(
            err,
            call.decision_id,
            rpc=call.is_rpc,
            rpc_ids=c.rpc_ids if c else (),
            rpc_batch=bool(c and c.rpc_batch),
            retry_after=retry,
        )
        if err.code in ("body_too_large", "memory_budget_exhausted"):
            resp.force_close()  # the unread body would otherwise be parsed as a request
        if call.refusal_headers:
            # Set by the OPA decision that denied the call (validated: no framing headers).
            for name, value in call.refusal_headers.items():
                resp.headers.setdefault(name, value)
        resp.headers[r.OVERHEAD_HEADER] = f"{call.overhead * 1000:.3f}"
        self.last_error = {
            "decision_id": call.decision_id,
            "code": err.code,
            "type": err.type,
            "time": call.ts,
        }
        return resp

    # ------------------------------------------------------------------ audit, metrics

    def _record(
        self,
        call: Call,
        phase: str,
        *,
        decision: str,
        status: int | None = None,
        counts: TokenCounts | None = None,
        err: HaltgateError | None = None,
    ) -> AuditRecord:
        c = call.classified
        view = c.view if c is not None else None
        tool = view.tool_calls[0].name if view is not None and view.tool_calls else None
        if (
            tool is None
            and call.authz is not None
            and view is not None
            and view.kind is RequestKind.HTTP
        ):
            tool = call.authz.rule
        # Everything the agent or the upstream controls is scrubbed before it is stored
        # (redacted unless payload: full; never a NUL or an over-deep document).
        scrub = call.scrub
        if scrub is None:
            scrub = call.scrub = AuditScrubber(
                redact=call.controls.payload is not PayloadCapture.FULL
            )
        return AuditRecord(
            decision_id=call.decision_id,
            time=call.ts,
            phase=phase,  # type: ignore[arg-type]
            namespace=call.agent.namespace,
            workload=call.agent.workload,
            pod=call.agent.pod,
            run_id=call.agent.run_id,
            kind=view.kind.value if view is not None and view.kind is not None else None,
            target=scrub.target(
                f"{call.method} {call.target.url}"
                if call.target is not None
                else f"{call.method} {call.raw_target}"
            ),
            model=scrub.name(view.model if view is not None else None),
            tool=scrub.name(tool),
            args_digest=call.fingerprint or None,
            decision=decision,
            failure_type=err.failure_type.value if err and err.failure_type else None,
            code=err.code if err else None,
            message=scrub.optional(err.message if err else None),
            budget_after=dict(err.budget) if err and err.budget else None,
            usage=scrub.strings_of(counts.as_dict()) if counts is not None else None,
            findings=scrub.findings(call.findings),
            status=status,
            latency_ms=(time.perf_counter() - call.started) * 1000 if phase != "intent" else None,
            cost_usd=call.cost_usd if phase != "intent" else None,
            payload_mode=call.controls.payload.value,
            payload=self._payload(call, scrub),
            replay=replay_inputs(call, phase, err),
        )

    def _payload(self, call: Call, scrub: AuditScrubber) -> Any:
        c = call.classified
        if call.controls.payload is PayloadCapture.NONE or c is None or c.body is None:
            return None
        # ``redacted``: the audit's own PII and secrets pass, whatever the guardrails do.
        return scrub.payload(c.body)

    def _audit_outcome(
        self,
        call: Call,
        status: int | None,
        counts: TokenCounts | None,
        *,
        decision: str,
        err: HaltgateError | None = None,
    ) -> None:
        """Queue the outcome record; the answer waits neither for it nor for its fsync.

        The record is built and sealed in a loop callback that runs once the handler has
        handed its answer to the transport (the stages call this just before returning
        the response): the audit's CPU time is not in the agent's latency."""
        asyncio.get_running_loop().call_soon(
            self._queue_outcome, call, status, counts, decision, err
        )

    def _queue_outcome(
        self,
        call: Call,
        status: int | None,
        counts: TokenCounts | None,
        decision: str,
        err: HaltgateError | None,
    ) -> None:
        record = self._record(
            call, "outcome", decision=decision, status=status, counts=counts, err=err
        )
        if self._submit_nowait is not None:
            # The spool queues it for its next group commit: no task per call.
            try:
                try:
                    future = self._submit_nowait(record)
                except InvalidRecordError:
                    future = self._submit_nowait(_bare(record))
            except AuditError as e:
                log.error("audit outcome of %s not recorded: %s", record.decision_id, e)
                return
            if future is not None:
                future.add_done_callback(_log_failed_outcome)
            return
        task = asyncio.get_running_loop().create_task(self._write_outcome(record))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _write_outcome(self, record: AuditRecord) -> None:
        try:
            try:
                await self.audit.outcome(record)
            except InvalidRecordError:
                await self.audit.outcome(_bare(record))
        except AuditError as e:
            log.error("audit outcome of %s not recorded: %s", record.decision_id, e)

    def _finish(self, call: Call, decision: str, code: str | None) -> None:
        kind = call.kind_label
        self.decisions[decision] = self.decisions.get(decision, 0) + 1
        self._child(self.metrics.requests, kind, decision, code or "").inc()
        self._child(self.metrics.added_latency, kind).observe(max(call.overhead, 0.0))
        for finding in call.findings:  # usually none
            self._child(
                self.metrics.guardrail_findings,
                str(finding.get("detector")),
                "monitor" if finding.get("monitor_only") else str(finding.get("action")),
            ).inc()

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached: labels() costs more than inc() itself.
        Labels are bounded (kinds, decisions, stable codes), so is the cache."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    async def drain(self) -> None:
        """Wait for queued audit outcomes (at shutdown)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._model_thread is not None:
            self._model_thread.shutdown(wait=False)


# ---------------------------------------------------------------------- helpers


def _bare(record: AuditRecord) -> AuditRecord:
    """``record`` without the values that can make it unwritable: the decision is still
    audited when its payload or findings cannot be (a refusal is never left out)."""
    return replace(record, payload=None, findings=(), message=None, budget_after=None, usage=None)


def _log_failed_outcome(future: Any) -> None:
    error = future.exception()
    if error is not None:
        log.error("audit outcome not recorded: %s", error)


def _overhead_ms(call: Call) -> str:
    """Record the sidecar's own time so far (upstream wait excluded); header value in ms."""
    now = time.perf_counter()
    if call.forward_started:
        upstream = (call.upstream_done or now) - call.forward_started
        call.overhead = now - call.started - upstream
    else:
        call.overhead = now - call.started
    return f"{call.overhead * 1000:.3f}"


class _StreamScan:
    """Response guardrails on a relayed SSE stream, one parsed event at a time.

    LLM chat streams go through :class:`ChatStreamGuard` (text held back and redacted across
    events, provider-shaped events out); other streams (MCP over SSE) have each event's JSON
    scanned whole. Events come out re-encoded (``event:`` and ``data:`` fields only); an
    event the SSE parser had to skip as oversized is not relayed: it could not be scanned.
    """

    __slots__ = (
        "_blocked_code",
        "_call",
        "_chat",
        "_errors",
        "_findings",
        "_g",
        "_pipeline",
        "_risk",
    )

    def __init__(self, pipeline: Pipeline, call: Call, guardrails: Any, *, chat: bool) -> None:
        self._pipeline = pipeline
        self._call = call
        self._g = guardrails
        self._chat = ChatStreamGuard(guardrails, "response") if chat else None
        self._findings = 0
        self._errors = 0
        self._risk = 0.0
        self._blocked_code: str | None = None

    def events(self, events: Sequence[SSEEvent]) -> bytes:
        """The bytes to send for ``events`` (empty once the stream is blocked)."""
        out: list[bytes] = []
        for event in events:
            if self._blocked_code is not None:
                break
            try:
                obj = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                # Plain-text data ([DONE] and such, or a tool's text): scanned as text.
                text = self._text(event.data)
                if text is not None:
                    out.append(_sse_encode(event.event, text.encode()))
                continue
            try:
                sent = self._transform(obj)
            except Exception as e:  # a guardrail bug must not open the gate by accident
                if self._call.controls.spec.guardrails.fail_mode is not FailMode.OPEN:
                    self._blocked_code = "guardrails_error"
                    break
                self._pipeline._guardrail_fail_open(self._call, [f"stream:{type(e).__name__}"])
                sent = [obj]
            for new in sent:
                name = event.event
                if name != "message" and isinstance(new, dict) and isinstance(new.get("type"), str):
                    name = new["type"]  # a flushed text delta added before an end event
                out.append(_sse_encode(name, orjson.dumps(new)))
        return b"".join(out)

    def _text(self, data: str) -> str | None:
        """Data of a plain-text event to send (``None``: blocked)."""
        if len(data) < 6 or data == "[DONE]":
            return data
        try:
            result = self._g.scan(data, "response")
        except Exception as e:  # a guardrail bug must not open the gate by accident
            if self._call.controls.spec.guardrails.fail_mode is not FailMode.OPEN:
                self._blocked_code = "guardrails_error"
                return None
            self._pipeline._guardrail_fail_open(self._call, [f"stream:{type(e).__name__}"])
            return data
        self._note(result.findings, result.risk, result.errors, result.blocked)
        if result.blocked:
            self._blocked_code = result.code or "guardrail_blocked"
            return None
        return result.redacted_text if result.redacted_text is not None else data

    def _transform(self, obj: Any) -> list[Any]:
        if self._chat is not None:
            sent = self._chat.on_event(obj)
            if self._chat.blocked:
                self._blocked_code = next(
                    (
                        f"guardrail_{f.detector}"
                        for f in self._chat.findings
                        if f.action == "block" and not f.monitor_only
                    ),
                    "guardrail_error",
                )
            return sent
        result = self._g.scan_json(obj, "response")
        self._note(result.findings, result.risk, result.errors, result.blocked)
        if result.blocked:
            self._blocked_code = result.code or "guardrail_blocked"
            return []
        return [result.redacted_obj if result.redacted_obj is not None else obj]

    def verdict(self) -> HaltgateError | None:
        """Account new findings, risk and detector failures; the refusal once blocked."""
        chat = self._chat
        if chat is not None:
            new = chat.findings[self._findings :]
            errors = chat.errors[self._errors :]
            self._findings, self._errors = len(chat.findings), len(chat.errors)
            risk, self._risk = chat.risk - self._risk, chat.risk
            self._note(new, risk, errors, chat.blocked)
        if self._blocked_code is None:
            return None
        return DeniedError(
            "a guardrail blocked the response stream",
            code=self._blocked_code,
            failure_type=FailureType.SAFETY,
        )

    def _note(
        self, findings: Sequence[Any], risk: float, errors: Sequence[str], blocked: bool
    ) -> None:
        call = self._call
        if findings:
            call.findings.extend(f.to_dict() for f in findings)
        if risk:
            self._pipeline.budget.add_risk(time.time(), risk, "guardrail_finding")
        if errors and not blocked:
            self._pipeline._guardrail_fail_open(call, errors)


def _sse_encode(event: str, data: bytes) -> bytes:
    """One SSE event: ``event:`` unless the default, one ``data:`` line per line of data."""
    head = b"" if event == "message" else b"event: " + event.encode() + b"\n"
    lines = data.split(b"\n")
    return head + b"".join(b"data: " + line + b"\n" for line in lines) + b"\n"


def _meter_events(
    raws: Sequence[bytes], reader: UsageReader, guard: _StreamGuard, hidden: HiddenUsage | None
) -> tuple[bytes, HaltgateError | None]:
    """Read framed events one at a time; stop after the one that crosses the budget.
    Returns the bytes to relay (those events, as they came, minus what is hidden) and the
    reason to cut, if any."""
    if len(raws) == 1 and hidden is None:
        reader.read_event(parse_event(raws[0]))
        return raws[0], guard.check(reader)
    out: list[bytes] = []
    cut: HaltgateError | None = None
    for raw in raws:
        event = parse_event(raw)
        obj = reader.read_event(event)
        visible = hidden.visible(raw, event, obj) if hidden is not None else raw
        if visible:
            out.append(visible)
        cut = guard.check(reader)
        if cut is not None:
            break
    return b"".join(out), cut


def _scan_events(
    events: Sequence[SSEEvent],
    scan: _StreamScan,
    reader: UsageReader | None,
    guard: _StreamGuard,
    hidden: HiddenUsage | None,
) -> tuple[bytes, HaltgateError | None]:
    """Parsed events through response guardrails, one at a time (a budget cut after the
    event that crossed it, as for :func:`_meter_events`)."""
    out: list[bytes] = []
    cut: HaltgateError | None = None
    for event in events:
        shown: SSEEvent | None = event
        if reader is not None:
            obj = reader.read_event(event)
            if hidden is not None:
                shown = hidden.visible_event(event, obj)
            cut = guard.check(reader)
        sent = scan.events([shown]) if shown is not None else b""
        blocked = scan.verdict()
        if blocked is not None:
            return b"".join(out), blocked  # nothing of the event that was blocked
        if sent:
            out.append(sent)
        if cut is not None:
            break
    return b"".join(out), cut


class _StreamGuard:
    """Decides whether a relayed stream must be cut: budget crossed or run halted."""

    __slots__ = ("_budget", "_call", "_check_every", "_headroom", "_n")

    def __init__(self, call: Call, budget: Budget) -> None:
        self._call = call
        self._budget = budget
        self._n = 0
        self._check_every = 16
        self._headroom = _token_headroom(call)

    def check(self, reader: UsageReader) -> HaltgateError | None:
        # Output beyond the reservation is allowed only while the token budget has room
        # for it: a client without max_tokens can otherwise run past the budget mid-stream.
        extra = reader.streamed_output_estimate - self._call.max_output_tokens
        if extra > 0 and self._headroom is not None and extra > self._headroom:
            return DeniedError(
                "the stream crossed the token budget",
                code="tokens_exhausted",
                failure_type=FailureType.EXHAUSTION,
            )
        self._n += 1
        if self._n % self._check_every == 0:
            verdict = self._budget.halted(time.time())
            if not verdict.allowed:
                return _denied(verdict)
        return None


def _token_headroom(call: Call) -> int | None:
    """Tokens left beyond this call's reservation (``None``: no token budget)."""
    budget = call.reservation.budget if call.reservation else None
    if not budget:
        return None
    room: int | None = None
    for key in ("tokens", "output_tokens"):
        dim = budget.get(key)
        if dim is None or dim.get("limit") is None:
            continue
        left = int(dim["limit"] - dim.get("used", 0) - dim.get("reserved", 0))
        room = left if room is None else min(room, left)
    return room


def _denied(verdict: BudgetVerdict) -> DeniedError:
    return DeniedError(
        verdict.message or "the budget refused the call",
        code=verdict.code or "budget_denied",
        failure_type=verdict.failure_type or FailureType.EXHAUSTION,
        budget={k: dict(v) for k, v in verdict.budget.items()} if verdict.budget else None,
    )


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _fingerprint(call: Call) -> str:
    """Request identity: the same call gives the same value (retries, stagnation)."""
    c = call.classified
    assert c is not None and call.target is not None
    if c.view.tool_calls:
        # Tool name and arguments only: the JSON-RPC id changes on every retry.
        payload = orjson.dumps(
            [[t.name, t.arguments] for t in c.view.tool_calls], option=orjson.OPT_SORT_KEYS
        )
        return hashlib.sha256(payload).hexdigest()
    h = hashlib.sha256(f"{c.view.method} {call.target.url}\n".encode())
    h.update(call.body)
    return h.hexdigest()


def _lists_tools(body: Any) -> bool:
    if isinstance(body, dict):
        return body.get("method") == "tools/list"
    if isinstance(body, list):
        return any(isinstance(m, dict) and m.get("method") == "tools/list" for m in body)
    return False


def _outcome_of(call: Call, status: int, body: bytes) -> tuple[bool, str | None]:
    """Whether the call succeeded, and a digest of its error if not (stagnation)."""
    if status >= 500:
        return False, f"http_{status}"
    c = call.classified
    if c is not None and c.view.tool_calls and status < 300:
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            return True, None
        for msg in obj if isinstance(obj, list) else [obj]:
            if not isinstance(msg, dict):
                continue
            result = msg.get("result")
            if "error" in msg or (isinstance(result, dict) and result.get("isError") is True):
                return False, _digest(
                    orjson.dumps(msg.get("error") or result, option=orjson.OPT_SORT_KEYS)
                )
    return True, None


def _engine_usage(counts: TokenCounts) -> Any:
    from haltgate.governance.engine import Usage

    return Usage(
        input_tokens=counts.input_tokens,
        output_tokens=counts.output_tokens,
        cached_input_tokens=counts.cached_input_tokens,
        cache_write_tokens=counts.cache_write_tokens,
        reasoning_tokens=counts.reasoning_tokens,
        estimated=counts.estimated,
        model=counts.model,
    )


def _forward_headers(headers: CIMultiDictProxy[str], call: Call) -> CIMultiDict[str]:
    """The agent's headers minus hop-by-hop ones; Host is the upstream's."""
    out: CIMultiDict[str] = CIMultiDict()
    connection_listed = headers.get("connection", "")
    extra_drop = (
        {h.strip().lower() for h in connection_listed.split(",")} if connection_listed else set()
    )
    redacted = call.redacted_headers or {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in _REQUEST_DROP or lower in extra_drop or lower in redacted:
            continue
        out.add(name, value)
    for name, values in redacted.items():
        for value in values:
            out.add(name, value)
    if call.upstream_headers:
        # The OPA decision's headers (validated by parse_decision: no framing headers);
        # haltgate's own headers below win over them.
        for name, value in call.upstream_headers.items():
            out[name] = value
    if call.chain is not None:
        out["x-haltgate-chain"] = call.chain
    c = call.classified
    if c is not None and c.view.kind in (RequestKind.LLM, RequestKind.MCP):
        # haltgate must read these answers (usage, JSON-RPC): ask for them uncompressed.
        out["Accept-Encoding"] = "identity"
    return out


def _response_headers(
    headers: CIMultiDictProxy[str], call: Call, settle: BudgetVerdict | None
) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        if name.lower() not in _RESPONSE_DROP:
            out.add(name, value)
    out[r.DECISION_HEADER] = call.decision_id
    warnings = (
        settle.warnings
        if settle is not None
        else (call.reservation.warnings if call.reservation else ())
    )
    if warnings:
        out[r.WARNING_HEADER] = ",".join(warnings)
    return out


def _event_too_large(limit: int) -> UpstreamError:
    return UpstreamError(
        f"the upstream sent an SSE event larger than {limit} bytes (or never ended one)",
        code="sse_event_too_large",
    )


def _rewrite_sse(body: bytes, rewrite: Any) -> bytes:
    parser = SSEParser()
    out = []
    for event in parser.feed(body + b"\n\n"):
        try:
            message = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            out.append(f"event: {event.event}\ndata: {event.data}\n\n".encode())
            continue
        if isinstance(message, list):
            message = [rewrite(m) for m in message]
        else:
            message = rewrite(message)
        out.append(
            b"event: " + event.event.encode() + b"\ndata: " + orjson.dumps(message) + b"\n\n"
        )
    return b"".join(out)
