"""The state of one governed request as it moves through the pipeline's stages, and the
figures derived from it alone (its fingerprint, the sidecar's own time so far).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from haltgate.governance.audit.redact import AuditScrubber
from haltgate.governance.errors import HaltgateError
from haltgate.governance.guardrails.base import Channel
from haltgate.governance.guardrails.model_clock import ModelClock
from haltgate.governance.policy_base import RequestKind
from haltgate.governance.request import AgentIdentity
from haltgate.governance.tools import AuthzResult
from haltgate.sidecar.budget import BudgetVerdict
from haltgate.sidecar.classify import Classified, Target
from haltgate.sidecar.controls import Controls
from haltgate.sidecar.mcp_messages import McpCallState

__all__ = ["KIND_LABELS", "Call", "fingerprint_of", "overhead_ms"]

KIND_LABELS: dict[RequestKind | None, str] = {
    **{kind: kind.value for kind in RequestKind},
    None: "unknown",
}
"""A call's kind as its metrics, budget events and records name it: a dict read, where an
enum's ``.value`` is two Python calls (its descriptor) on every read."""


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
    tokens: int | None = None
    """Input + output tokens of a settled LLM call (``None``: unknown or not an LLM call)."""
    upstream_ok: bool | None = None
    """Set when the call is settled: whether the upstream answered without failing
    (``None``: never forwarded, or not budgeted)."""
    scrub: AuditScrubber | None = None
    """Scrubs what the call's audit records store (redaction, NUL, depth); made once."""
    raw_target: str = ""
    """The request target as received, for the record of a call refused before its target
    was resolved."""
    redacted_headers: Mapping[str, Sequence[str]] | None = None
    """Header values a guardrail redacted, by lower-case name: forwarded instead."""
    held: int = 0
    model_clock: ModelClock | None = None
    """The model time this call may still spend (``promptInjection.modelBudgetMs``)."""
    """Body bytes this call holds of the sidecar's memory budget (given back at its end)."""
    mcp: McpCallState | None = None
    """Per-message decisions and reservations of an MCP request (``haltgate.sidecar.mcp``)."""
    would_refuse: tuple[tuple[str, HaltgateError], ...] = ()
    """``spec.enforcement: monitor``: the refusals the controls would have made, as
    ``(stage, error)`` in pipeline order; the call went on (``DecisionAudit.refuse_or_note``)."""
    unreserved: bool = False
    """Monitor mode: the budget refused the reservation and the call went on without one;
    its settlement still charges what it used."""
    intent_pending: Awaitable[None] | None = None
    """``durability: overlapped``: the intent's commit, still in flight while the call is
    forwarded; awaited before anything goes back to the agent (``None``: durable already)."""
    flow_stage: Mapping[str, Any] | None = None
    """The ``flows`` stage of the audit record: a flow rule refused the call or let it
    pass on an operator's approval (rule, source, sink; no payload)."""
    flow_value_rules: tuple[str, ...] = ()
    """Flow rules whose values this call's answer (an untrusted source) must be read for."""

    @property
    def teardown(self) -> bool:
        """An MCP session's closing DELETE: never refused, never budgeted."""
        c = self.classified
        return c is not None and c.mcp is not None and c.mcp.teardown

    @property
    def kind_label(self) -> str:
        view = self.classified.view if self.classified else None
        return KIND_LABELS[view.kind] if view is not None else "unknown"

    @property
    def answer_channel(self) -> Channel:
        """The guardrail channel of this call's answer: a model's answer is text the model
        writes for the agent (``request``); what an MCP server, an HTTP tool or a web page
        answers is a ``document`` (a tool result)."""
        view = self.classified.view if self.classified else None
        return "request" if view is not None and view.kind is RequestKind.LLM else "document"

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


def overhead_ms(call: Call) -> str:
    """Record the sidecar's own time so far (upstream wait excluded); header value in ms."""
    now = time.perf_counter()
    if call.forward_started:
        upstream = (call.upstream_done or now) - call.forward_started
        call.overhead = now - call.started - upstream
    else:
        call.overhead = now - call.started
    return f"{call.overhead * 1000:.3f}"


def fingerprint_of(call: Call) -> str:
    """Request identity: the same call gives the same value (retries, stagnation)."""
    c = call.classified
    assert c is not None and call.target is not None
    if c.view.tool_calls:
        # Tool name and arguments only: the JSON-RPC id changes on every retry.
        payload = orjson.dumps(
            [[t.name, t.arguments] for t in c.view.tool_calls], option=orjson.OPT_SORT_KEYS
        )
        return hashlib.sha256(payload).hexdigest()
    # One digest of "METHOD URL\n" + body (the same value as feeding the two in turn).
    return hashlib.sha256(f"{c.view.method} {call.target.url}\n".encode() + call.body).hexdigest()
