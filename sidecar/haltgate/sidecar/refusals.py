"""Refusals: a call refused by a stage or failed by its upstream is settled or released,
audited and answered with a typed error (JSON, JSON-RPC).
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

from haltgate.governance.errors import DeniedError, HaltgateError, UnavailableError, UpstreamError
from haltgate.sidecar import responses as r
from haltgate.sidecar.bodybudget import MemoryBudgetError
from haltgate.sidecar.budget_stages import BudgetStages
from haltgate.sidecar.call import Call, overhead_ms
from haltgate.sidecar.pipeline_request import PipelineRequest

__all__ = ["Refusals"]

log = logging.getLogger("haltgate.sidecar")


_MAX_RAW_TARGET = 2048
"""Characters of an unresolved request target kept in its refusal record."""


class Refusals(BudgetStages):
    """Answers refusals and upstream failures, each audited as a decision."""

    async def refuse(
        self, request: PipelineRequest, call: Call, err: HaltgateError
    ) -> web.Response:
        """Answer a refusal: release any reservation, audit the decision, send the error."""
        self.abandon(call)
        decision = "deny" if isinstance(err, DeniedError) else "error"
        overhead_ms(call)
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

    async def fail_upstream(
        self,
        request: PipelineRequest,
        call: Call,
        err: UpstreamError | MemoryBudgetError | UnavailableError,
        cause: BaseException | None,
    ) -> web.Response:
        """The upstream failed after the call was decided: settle as failed, answer 502/504.
        Also the answer to a forwarded call whose intent never became durable
        (``durability: overlapped``, an ``UnavailableError``): the upstream's answer is
        withheld and the call settled as failed (usage unknown: its reservation is spent)."""
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
        overhead_ms(call)
        self._finish(call, "error", err.code)
        self._audit_outcome(call, None, None, decision="error", err=err)
        return await self._send_error(request, call, err)

    async def _send_error(
        self, request: PipelineRequest, call: Call, err: HaltgateError
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
