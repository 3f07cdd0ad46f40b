"""The pipeline's settings and the state it keeps across calls (one per sidecar).

The pipeline is built in layers, one concern each, each a subclass of the one below:
``PipelineState`` -> ``DecisionAudit`` -> ``BudgetStages`` -> ``Refusals`` ->
``RequestStages`` -> ``ResponseGuard`` -> ``AnswerRelay`` -> ``StreamRelay`` -> ``Pipeline``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import count
from typing import Any

from haltgate.governance.audit import AuditSink, MemoryAuditSink
from haltgate.governance.flow_taint import FlowTaint
from haltgate.governance.guardrails.response_body import MAX_DECODED_BYTES
from haltgate.governance.request import AgentIdentity
from haltgate.sidecar.bodybudget import DEFAULT_BODY_BUDGET, BodyBudget
from haltgate.sidecar.budget import Budget
from haltgate.sidecar.call import Call
from haltgate.sidecar.controls import Controls
from haltgate.sidecar.drift_watch import DriftWatch
from haltgate.sidecar.metrics import SidecarMetrics
from haltgate.sidecar.sse import DEFAULT_MAX_EVENT_BYTES
from haltgate.sidecar.upstream_pool import UpstreamClient

__all__ = ["PipelineSettings", "PipelineState"]


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


class PipelineState:
    """What the pipeline holds across calls: policy, budget, audit, metrics, the upstream
    client and the body memory budget; shared by every stage layer."""

    def __init__(
        self,
        *,
        controls: Controls,
        budget: Budget,
        audit: AuditSink,
        metrics: SidecarMetrics,
        upstream_client: UpstreamClient,
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
        self.upstream_client = upstream_client
        """The upstream leg (llhttp over asyncio, pooled): see upstream_pool.py."""
        self.agent = agent
        self.opa = opa
        self.pool = pool
        """``haltgate.sidecar.pool.PoolStage`` (shared budget, call chains) or ``None``."""
        self.flow_taint = flow_taint if flow_taint is not None else FlowTaint()
        """What untrusted sources this run took in (``spec.flows``); per run id."""
        self.drift: DriftWatch | None = None
        """Behaviour drift of the agent (``spec.drift``); set by the sidecar, ``None``
        when the policy has no drift section."""
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
        self._queue_nowait = getattr(audit, "queue_outcome", None)
        self._commit_now = getattr(audit, "commit_now", None)
        self._begin_intent = getattr(audit, "begin_intent", None)
        self.in_flight = 0
        """Calls in the pipeline now (a lone one commits its intent without a hand-off)."""
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.decisions: dict[str, int] = {"allow": 0, "deny": 0, "error": 0}
        self._last_budget: Mapping[str, Mapping[str, float]] = {}
        """The budget as the last reserve/settle left it: ``input.budget`` for OPA."""
        self.last_error: dict[str, Any] | None = None

    def _hold(self, call: Call, nbytes: int, direction: str) -> None:
        """Take ``nbytes`` of the body memory budget for ``call`` (or refuse it: 503)."""
        self.memory.take(nbytes, direction, call.held)
        call.held += nbytes

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
