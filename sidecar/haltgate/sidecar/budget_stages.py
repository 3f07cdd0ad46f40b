"""The budget stages of a call: refused when the run is halted, its worst case reserved
before it goes out, the reservation settled by the usage read from the answer (or given
back when the call is never forwarded).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from haltgate.governance.audit.redact import state_key
from haltgate.governance.engine import Usage
from haltgate.governance.engine.units import pico_to_usd
from haltgate.governance.errors import DeniedError
from haltgate.governance.policy_base import FailureType, RequestKind
from haltgate.sidecar import mcp
from haltgate.sidecar.budget import NO_BUDGET, BudgetVerdict
from haltgate.sidecar.call import KIND_LABELS, Call, fingerprint_of
from haltgate.sidecar.decision_audit import DecisionAudit
from haltgate.sidecar.injected_usage import ask_for_usage
from haltgate.sidecar.input_bound import max_input_tokens
from haltgate.sidecar.usage import TokenCounts, UsageReader

__all__ = ["BudgetStages", "budget_denial", "engine_usage"]


class BudgetStages(DecisionAudit):
    """Halt check, reservation, usage reading and settlement of each call."""

    def check_not_halted(self, call: Call) -> None:
        """A halted run refuses every call until an operator resets it."""
        if call.teardown:
            return  # a halted agent still closes its sessions upstream
        governor = self.budget.governor
        if governor is None or not governor.halted:
            return  # the common case, read here (Budget.halted builds the refusal)
        verdict = self.budget.halted(call.ts)
        if not verdict.allowed:
            self.refuse_or_note(call, "halted", budget_denial(verdict))

    def reserve_budget(self, call: Call) -> None:
        """Reserve the call's worst case atomically; refuse if it does not fit."""
        classified = call.classified
        assert classified is not None and call.target is not None
        view = classified.view
        call.fingerprint = fingerprint_of(call)
        if call.mcp is not None or call.teardown:
            # One reservation per message that does work upstream; none for protocol and
            # session messages (haltgate.sidecar.mcp).
            mcp_verdict = mcp.reserve(self.budget, call, call.mcp) if call.mcp is not None else None
            if mcp_verdict is None:
                return
            call.reservation = mcp_verdict
            if mcp_verdict.budget is not NO_BUDGET:
                self._last_budget = mcp_verdict.budget
            if not mcp_verdict.allowed:
                self._over_budget(call, mcp_verdict)
                return
            call.reserved = True
            return
        if view.kind is RequestKind.LLM:
            # One price lookup for both bounds of the worst case.
            known_output, window = self.budget.model_bounds(view.model)
            if view.max_output_tokens is not None:
                call.max_output_tokens = view.max_output_tokens
            else:
                # The request names no cap: the model's largest completion per choice.
                call.max_output_tokens = (
                    known_output
                    if known_output is not None
                    else self.settings.default_max_output_tokens
                ) * classified.choices
            max_input = max_input_tokens(
                classified, len(call.forward_body or call.body), self.budget, window
            )
        else:
            max_input = 0
        verdict = self.budget.reserve(
            call_id=call.decision_id,
            ts=call.ts,
            kind=KIND_LABELS[view.kind],
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
        if verdict.budget is not NO_BUDGET:
            self._last_budget = verdict.budget
        if not verdict.allowed:
            self._over_budget(call, verdict)
        else:
            call.reserved = True
        if classified.wants_usage_injection:
            # Ask the upstream for a usage chunk so the stream is metered exactly; the relay
            # reads it and takes out what the option added (docs/sidecar.md).
            call.forward_body = ask_for_usage(classified.body)

    def _over_budget(self, call: Call, verdict: BudgetVerdict) -> None:
        """The budget refused the reservation: refuse the call, or (monitor mode) let it go
        on without one, its usage still charged when it settles."""
        self.refuse_or_note(call, "budget", budget_denial(verdict))
        call.unreserved = True

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
        call.upstream_ok = ok
        if not call.reserved:
            if call.unreserved:  # monitor mode: forwarded over budget, its spend counts
                return self._settle_unreserved(call, counts, ok, error_fp, result_fp)
            return None
        usage = engine_usage(counts) if counts is not None else None
        call.reserved = False
        pool = self.pool
        if pool is not None and pool.client is not None:  # else nothing to charge it to
            pool.settle(call, counts, ok)
        if counts is not None:
            # Token and cost metrics, and the call's priced cost (read by its outcome record
            # and the drift baselines, both loop callbacks queued after this one): counted
            # once the answer is handed over, not in the agent's wait.
            asyncio.get_running_loop().call_soon(self._count_spend, call, counts, usage)
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
        return self._settled(call, verdict)

    def _settle_unreserved(
        self,
        call: Call,
        counts: TokenCounts | None,
        ok: bool,
        error_fp: str | None,
        result_fp: str | None,
    ) -> BudgetVerdict:
        """Charge a call that went on without a reservation (monitor mode): the engine
        charges what it used (one call and its tokens, one call per message of an MCP
        batch; nothing was reserved to fall back on when the usage is unknown)."""
        call.unreserved = False
        usage = engine_usage(counts) if counts is not None else None
        if self.pool is not None:
            self.pool.settle(call, counts, ok)  # the pool admitted it (pools are enforced)
        if counts is not None:
            self._count_spend(call, counts, usage)
        elements = len(call.mcp.message.budgeted) if call.mcp is not None else 0
        if elements > 1:  # an MCP batch: one call per message that did work upstream
            verdict = self.budget.settle_all(
                [
                    {
                        "call_id": f"{call.decision_id}.{n}",
                        "ts": time.time(),
                        "usage": None,
                        "ok": ok,
                        "error_fingerprint": error_fp,
                        "result_fingerprint": result_fp,
                    }
                    for n in range(elements)
                ]
            )
            return self._settled(call, verdict)
        verdict = self.budget.settle(
            call_id=call.decision_id,
            ts=time.time(),
            usage=usage,
            ok=ok,
            error_fingerprint=error_fp,
            result_fingerprint=result_fp,
        )
        return self._settled(call, verdict)

    def _settled(self, call: Call, verdict: BudgetVerdict) -> BudgetVerdict:
        if verdict.budget is not NO_BUDGET:
            self._last_budget = verdict.budget
        if not verdict.allowed and verdict.failure_type is not None:
            if call.controls.monitor and verdict.failure_type is not FailureType.EXTERNAL:
                # The engine would halt the run here; the Governor did not keep the halt.
                self._child(
                    self.metrics.would_refuse,
                    "halt",
                    verdict.code or "",
                    verdict.failure_type.value,
                ).inc()
            self.metrics.sync_halt(self.budget.governor)
        return verdict

    def _count_spend(self, call: Call, counts: TokenCounts, usage: Any) -> None:
        """Token and cost metrics of a settled LLM call; the cost goes to the audit too."""
        model = counts.model or (call.classified.view.model if call.classified else None)
        label = self.metrics.model_label(model)
        tokens = self.metrics.tokens
        call.tokens = counts.input_tokens + counts.output_tokens
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


def budget_denial(verdict: BudgetVerdict) -> DeniedError:
    return DeniedError(
        verdict.message or "the budget refused the call",
        code=verdict.code or "budget_denied",
        failure_type=verdict.failure_type or FailureType.EXHAUSTION,
        budget={k: dict(v) for k, v in verdict.budget.items()} if verdict.budget else None,
    )


def engine_usage(counts: TokenCounts) -> Any:
    return Usage(
        input_tokens=counts.input_tokens,
        output_tokens=counts.output_tokens,
        cached_input_tokens=counts.cached_input_tokens,
        cache_write_tokens=counts.cache_write_tokens,
        reasoning_tokens=counts.reasoning_tokens,
        estimated=counts.estimated,
        model=counts.model,
    )
