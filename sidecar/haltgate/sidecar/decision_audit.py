"""Audit records and metrics of every decision: the durable intent before a call goes out,
the outcome queued after its answer, request/latency/finding metrics, fail-open events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, cast

from haltgate.governance.audit import AuditError, AuditRecord, InvalidRecordError
from haltgate.governance.audit.record import PayloadMode
from haltgate.governance.audit.redact import AuditScrubber
from haltgate.governance.errors import DeniedError, HaltgateError, UnavailableError
from haltgate.governance.policy_base import FailureType, PayloadCapture, RequestKind
from haltgate.sidecar.call import KIND_LABELS, Call
from haltgate.sidecar.drift_watch import DriftWatch
from haltgate.sidecar.pipeline_state import PipelineState
from haltgate.sidecar.replayinputs import replay_inputs
from haltgate.sidecar.usage import TokenCounts

__all__ = ["DecisionAudit"]

log = logging.getLogger("haltgate.sidecar")


class DecisionAudit(PipelineState):
    """Emits the audit records and decision metrics of each call."""

    async def audit_intent(self, call: Call) -> None:
        """Make the intent durable before anything leaves (no action without a record).

        ``durability: overlapped`` (the policy's opt-in): the record is sealed and queued
        here (a full spool or an invalid record still refuses the call before it leaves),
        and its commit overlaps forwarding; :meth:`confirm_intent` waits for it before the
        answer is released."""
        record = self._record(call, "intent", decision="allow")
        try:
            if call.controls.overlapped_intent and self._begin_intent is not None:
                call.intent_pending = self._begin_intent(record)
                return
            if self.in_flight == 1 and self._commit_now is not None and self._commit_now(record):
                # The only call in flight: the event loop has nothing else to do while the
                # disk syncs, so the commit runs here, without a hand-off to the spool's
                # thread and back (see spool_writer.py).
                return
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

    def refuse_or_note(self, call: Call, stage: str, err: HaltgateError) -> None:
        """A control refuses ``call`` at ``stage``: raise ``err`` (``enforcement:
        enforce``), or, in monitor mode, note it as a refusal the policy would make
        (audited, counted) and let the call go on.

        Only the controls' decisions are monitored: a policy refusal (``DeniedError``) or
        a control that failed closed (``UnavailableError``: OPA, guardrails). A halt from
        outside (EXTERNAL: admin API, pool, a state the sidecar cannot save) is enforced
        in both modes, and the boundary's own refusals never come here (docs/rollout.md).
        """
        if (
            not call.controls.monitor
            or not isinstance(err, (DeniedError, UnavailableError))
            or (err.failure_type is FailureType.EXTERNAL and stage in ("halted", "budget"))
        ):
            raise err
        if stage == "tools" and call.authz is not None and call.authz.allowed:
            stage = "mcp"  # spec.mcp refused a message after the tool rules passed
        call.would_refuse = (*call.would_refuse, (stage, err))
        call.refusal_headers = None  # nothing is refused: no refusal headers either
        self._child(
            self.metrics.would_refuse,
            stage,
            err.code,
            err.failure_type.value if err.failure_type is not None else "",
        ).inc()
        log.debug("monitor mode: %s would refuse %s (%s)", stage, call.decision_id, err.code)

    async def confirm_intent(self, call: Call) -> UnavailableError | None:
        """``durability: overlapped``: wait until the forwarded call's intent is durable;
        the error to answer instead of the upstream's answer when it never is."""
        pending, call.intent_pending = call.intent_pending, None
        if pending is None:
            return None
        try:
            async with asyncio.timeout(self.settings.intent_timeout):
                await pending
        except AuditError as e:
            return UnavailableError(f"audit trail unavailable: {e.message}", code=e.code)
        except TimeoutError:
            return UnavailableError(
                "audit trail did not confirm the record in time", code="audit_timeout"
            )
        return None

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
        enforcement, would_refuse = _monitor_fields(call) if call.controls.monitor else _ENFORCED
        model = view.model if view is not None else None
        return AuditRecord(
            decision_id=call.decision_id,
            time=call.ts,
            phase=phase,  # type: ignore[arg-type]
            namespace=call.agent.namespace,
            workload=call.agent.workload,
            pod=call.agent.pod,
            run_id=call.agent.run_id,
            kind=KIND_LABELS[view.kind] if view is not None and view.kind is not None else None,
            target=scrub.target(
                f"{call.method} {call.target.url}"
                if call.target is not None
                else f"{call.method} {call.raw_target}"
            ),
            # An absent value is not handed to the scrubber (None either way).
            model=scrub.name(model) if model is not None else None,
            tool=scrub.name(tool) if tool is not None else None,
            args_digest=call.fingerprint or None,
            decision=decision,
            failure_type=err.failure_type.value if err and err.failure_type else None,
            code=err.code if err else None,
            message=scrub.optional(err.message) if err is not None else None,
            budget_after=dict(err.budget) if err and err.budget else None,
            usage=scrub.strings_of(counts.as_dict()) if counts is not None else None,
            findings=scrub.findings(call.findings) if call.findings else (),
            status=status,
            latency_ms=(time.perf_counter() - call.started) * 1000 if phase != "intent" else None,
            cost_usd=call.cost_usd if phase != "intent" else None,
            payload_mode=_PAYLOAD_MODES[call.controls.payload],
            payload=None
            if call.controls.payload is PayloadCapture.NONE
            else self._payload(call, scrub),
            replay=replay_inputs(call, phase, err),
            # Passed by name, not as ``**``: a call with a mapping to unpack builds a dict
            # of every argument first.
            enforcement=enforcement,
            would_refuse=would_refuse,
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
        if self._queue_nowait is not None:
            # The spool queues it for its next group commit: no task, no future per call.
            try:
                try:
                    self._queue_nowait(record, _outcome_refused)
                except InvalidRecordError:
                    self._queue_nowait(_bare(record), _outcome_refused)
            except AuditError as e:
                log.error("audit outcome of %s not recorded: %s", record.decision_id, e)
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
        """Count the call's decision (metrics, drift baselines) in a loop callback, as its
        outcome record is: the stages call this just before they hand the answer over, so
        the counting is not in the agent's wait. The callback runs before the loop reads
        any other socket, so before the agent could send its next call."""
        asyncio.get_running_loop().call_soon(self._count_decision, call, decision, code)

    def _count_decision(self, call: Call, decision: str, code: str | None) -> None:
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
        drift = self.drift
        if drift is not None and not call.teardown:
            self._feed_drift(drift, call, decision)

    def _feed_drift(self, drift: DriftWatch, call: Call, decision: str) -> None:
        """The call's outcome into the drift baselines. Refusals of a halted run are not
        the agent's behaviour (every call is refused): left out."""
        governor = self.budget.governor
        if decision != "allow" and governor is not None and governor.halted:
            return
        if drift.record(call, decision) and governor is not None and governor.halted:
            self.metrics.sync_halt(governor)  # counts a new halt once

    def _guardrail_fail_open(self, call: Call, errors: Sequence[str]) -> None:
        """Detectors that failed while the scan still allowed (``failMode: open``): each is
        a fail-open event, on the metric and in the call's audit findings."""
        for error in errors:
            detector, _, kind = error.partition(":")
            self.metrics.fail_open.labels("guardrails").inc()
            call.findings.append({"detector": detector, "action": "fail_open", "error": kind})
        log.warning("guardrails failed (fail open) for %s: %s", call.decision_id, ", ".join(errors))


_ENFORCED: tuple[None, None] = (None, None)
_PAYLOAD_MODES: dict[PayloadCapture, PayloadMode] = {
    mode: cast(PayloadMode, mode.value) for mode in PayloadCapture
}
"""As ``KIND_LABELS``: a dict read, not an enum's ``.value`` descriptor."""


def _monitor_fields(call: Call) -> tuple[str | None, dict[str, Any] | None]:
    """``enforcement`` and ``would_refuse`` of a monitor-mode record (none in enforce:
    those records keep their layout)."""
    if not call.controls.monitor:
        return _ENFORCED
    if not call.would_refuse:
        return "monitor", None
    stage, err = call.would_refuse[0]
    return "monitor", {
        "stage": stage,
        "code": err.code,
        "failure_type": err.failure_type.value if err.failure_type is not None else None,
        "also": [{"stage": s, "code": e.code} for s, e in call.would_refuse[1:]],
    }


def _bare(record: AuditRecord) -> AuditRecord:
    """``record`` without the values that can make it unwritable: the decision is still
    audited when its payload or findings cannot be (a refusal is never left out)."""
    return replace(record, payload=None, findings=(), message=None, budget_after=None, usage=None)


def _outcome_refused(error: AuditError) -> None:
    log.error("audit outcome not recorded: %s", error)
