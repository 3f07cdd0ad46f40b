"""The request pipeline: every governed call goes through these stages, in this order.

    identify -> read body -> classify -> not this pod? -> halted? -> tool authorization
    -> guardrails(in) -> policy decision (OPA) -> budget reserve -> audit intent -> forward
    -> usage + budget settle -> guardrails(out) -> audit outcome -> metrics

:meth:`Pipeline.handle` reads top-down as that list. Each stage is a small method with one
job, in the module of its concern (the layers are listed in :mod:`.pipeline_state`; this
module is the top one: the order of the stages and the forwarding). A stage refuses by
raising a :class:`~haltgate.governance.errors.HaltgateError`, which :meth:`Pipeline.handle`
turns into a typed answer (JSON, JSON-RPC or a final SSE event), audited like any other
decision. Nothing reaches the upstream before the budget is reserved and the intent record
is durable (``spec.audit.durability: overlapped``, an opt-in: the intent's fsync overlaps
forwarding, and nothing goes back to the agent before it is durable); a reservation that is
never forwarded is released.

Hot-path rules: the request body is forwarded as the bytes that came in unless a stage
must change it (usage injection for streams, guardrail redaction); JSON is parsed once,
with orjson, and only for LLM and MCP calls.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from aiohttp import web

from haltgate.governance.canonical import check_meaning_overrides
from haltgate.governance.canonical_query import canonical_query
from haltgate.governance.errors import HaltgateError, UpstreamError
from haltgate.governance.policy_base import RequestKind
from haltgate.sidecar import mcp_answers
from haltgate.sidecar.call import Call
from haltgate.sidecar.classify import Target, classify
from haltgate.sidecar.pipeline_request import PipelineRequest
from haltgate.sidecar.relay_headers import EVENT_STREAM, forward_headers
from haltgate.sidecar.response_guard import lists_tools
from haltgate.sidecar.stream_relay import StreamRelay
from haltgate.sidecar.upstream_response import UpstreamProtocolError

__all__ = ["Pipeline"]


class Pipeline(StreamRelay):
    """Governs one request at a time (many concurrently, on one event loop)."""

    async def handle(
        self, request: PipelineRequest, target: Target | HaltgateError
    ) -> web.StreamResponse:
        """Govern one request to ``target`` (or answer the resolution error)."""
        call = self.identify()
        self.in_flight += 1
        try:
            # The stages in one coroutine (not one more per call to enter them).
            try:
                if isinstance(target, HaltgateError):
                    raise target
                if target.query:
                    # The query's one reading: what the rules read is what is forwarded.
                    query = canonical_query(target.query, call.controls.authorizer.query_names)
                    target = replace(target, query=query.forward, query_pairs=query.pairs)
                call.target = target
                call.method = request.method
                call.body = await self.read_body(request, call)
                check_meaning_overrides(
                    request.headers, target.query, request.content_type, call.body
                )
                call.classified = classify(request.method, target, call.body, call.agent)
                # The awaited stages are entered only when they have work (a coroutine per
                # stage and call otherwise, for nothing): hosts the agent names itself, request
                # guardrails, an OPA decision.
                if target.upstream is None and not target.destination_checked:
                    await self.check_destination(call)
                self.check_not_halted(call)
                self.authorize_tools(call)
                if call.controls.flows is not None:
                    self.check_flows(call, request.headers)
                guardrails = call.controls.guardrails
                if guardrails is not None and guardrails.active("request"):
                    await self._scan(call, self.scan_request, call, request.headers)
                if self.opa is not None:
                    await self.decide_policy(call)
                pool = self.pool
                if pool is not None and not call.teardown and pool.has_work(call, request.headers):
                    await pool.admit(call, request.headers)
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
        finally:
            self.in_flight -= 1
            if call.held:  # the bodies' share of the memory budget, whatever happened
                self.memory.give(call.held)
                call.held = 0

    def identify(self) -> Call:
        """Give the call its decision id and timestamps; attach the agent identity."""
        return Call(
            decision_id=self._id_prefix + format(next(self._ids), "x"),
            started=time.perf_counter(),
            ts=time.time(),
            controls=self.controls,
            agent=self.agent,
        )

    async def forward(self, request: PipelineRequest, call: Call) -> web.StreamResponse:
        """Send the decided call upstream and relay the answer (streamed or whole)."""
        assert call.target is not None and call.classified is not None
        call.forward_started = time.perf_counter()
        try:
            upstream = await self.upstream_client.request(
                # The canonical target goes out as decided, byte for byte, never re-read.
                request.method,
                call.target.url,
                forward_headers(request.headers, call).items(),
                call.forward_body if call.forward_body is not None else call.body,
                call.controls.upstream_timeout,
            )
        except TimeoutError as e:
            return await self.fail_upstream(
                request,
                call,
                await self.confirm_intent(call)
                or UpstreamError("the upstream did not answer in time", code="upstream_timeout"),
                e,
            )
        except OSError as e:
            # A malformed answer (UpstreamProtocolError) is the upstream's fault too.
            what = (
                "the upstream's answer cannot be framed"
                if isinstance(e, UpstreamProtocolError)
                else f"the upstream is unreachable: {type(e).__name__}"
            )
            return await self.fail_upstream(
                request,
                call,
                await self.confirm_intent(call) or UpstreamError(what, code="upstream_unreachable"),
                e,
            )
        call.upstream_done = time.perf_counter()
        if call.intent_pending is not None:
            # durability: overlapped. The upstream has the call; its answer goes back only
            # once the intent is durable, and never when the commit failed.
            try:
                unconfirmed = await self.confirm_intent(call)
            except BaseException:
                upstream.release()
                raise
            if unconfirmed is not None:
                upstream.close()  # the answer is withheld, unread
                return await self.fail_upstream(request, call, unconfirmed, None)
        if call.controls.flows is not None:
            self.record_flow_sources(call)
        try:
            # Observed once the answer is handed over (a loop callback), not in its wait.
            asyncio.get_running_loop().call_soon(
                self._child(self.metrics.upstream_latency, call.kind_label).observe,
                call.upstream_done - call.forward_started,
            )
            if (
                call.classified.mcp is not None
                and (refusal := mcp_answers.encoding_refusal(call, upstream.headers)) is not None
            ):
                return await self.fail_upstream(request, call, refusal, None)
            if upstream.content_type == EVENT_STREAM and not self._must_buffer(call):
                return await self.relay_stream(request, call, upstream)
            if self._passes_through(call):
                return await self.relay_through(request, call, upstream)
            return await self.relay_whole(request, call, upstream)
        finally:
            upstream.release()

    def _passes_through(self, call: Call) -> bool:
        # HTTP tools: nothing to read in the answer unless response guardrails scan it (or
        # a flow rule keeps its values), so it is relayed as it arrives (any size,
        # compression untouched), never buffered.
        c = call.classified
        guardrails = call.controls.guardrails
        return (
            c is not None
            and c.view.kind is RequestKind.HTTP
            and (guardrails is None or not guardrails.active("response"))
            and not call.flow_value_rules
        )

    def _must_buffer(self, call: Call) -> bool:
        # tools/list (resources/list, prompts/list) answers are rewritten (filtered), so
        # they are read whole even as SSE; so are answers of untrusted sources whose values
        # a flow rule keeps (read before any of it reaches the agent).
        c = call.classified
        if call.flow_value_rules:
            return True
        return (
            c is not None
            and c.view.kind is RequestKind.MCP
            and (
                lists_tools(c.body) or (c.mcp is not None and bool(mcp_answers.listing_ids(c.mcp)))
            )
        )
