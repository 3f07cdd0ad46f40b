"""A policy compiled for the hot path: everything derived from the spec, built once.

A new :class:`Controls` is built when the policy file changes and swapped in atomically (one
attribute assignment); requests in flight keep the controls they started with.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from haltgate.governance.flows import FlowPolicy
from haltgate.governance.mcp import McpAuthorizer
from haltgate.governance.policy import GovernancePolicySpec
from haltgate.governance.policy_base import PayloadCapture
from haltgate.governance.tools import ToolAuthorizer
from haltgate.sidecar.upstream_response import UpstreamTimeout
from haltgate.sidecar.upstreams import UpstreamTable

__all__ = ["Controls", "compile_controls"]


def _guardrails_for(spec: GovernancePolicySpec) -> Any | None:
    """The guardrails scanner, or ``None`` when no detector is enabled (nothing to scan)."""
    g = spec.guardrails
    if not any(d is not None and d.enabled for d in (g.prompt_injection, g.pii, g.secrets)):
        return None
    from haltgate.governance.guardrails import Guardrails

    return Guardrails.from_spec(g)


@dataclass(frozen=True, slots=True)
class Controls:
    """The compiled policy the pipeline reads. Immutable."""

    spec: GovernancePolicySpec
    digest: str
    """SHA-256 of the policy file bytes: which policy decided (status, audit)."""
    upstreams: UpstreamTable
    authorizer: ToolAuthorizer
    mcp: McpAuthorizer
    """``spec.mcp``: resources, prompts, sampling, elicitation."""
    guardrails: Any | None
    """``haltgate.governance.guardrails.Guardrails`` or ``None`` when all detectors are off."""
    max_body_bytes: int
    upstream_timeout: UpstreamTimeout
    payload: PayloadCapture
    flows: FlowPolicy | None = None
    """``spec.flows`` compiled; ``None`` when the policy has no flow rules."""
    monitor: bool = False
    """``spec.enforcement: monitor``: the controls' refusals are noted, not applied."""
    overlapped_intent: bool = False
    """``spec.audit.durability: overlapped``: the intent's fsync overlaps forwarding."""


def compile_controls(spec: GovernancePolicySpec, source: bytes = b"") -> Controls:
    """Compile a validated spec. Raises on what validation cannot catch (bad patterns)."""
    return Controls(
        spec=spec,
        digest=hashlib.sha256(source).hexdigest(),
        upstreams=UpstreamTable(spec.upstreams),
        authorizer=ToolAuthorizer(spec.tools),
        mcp=McpAuthorizer(spec.mcp),
        guardrails=_guardrails_for(spec),
        max_body_bytes=spec.limits.max_body_bytes,
        # Not a total: a stream may run as long as bytes keep coming. The bound is on the
        # wait for the answer's head and on every silence inside it (read).
        upstream_timeout=UpstreamTimeout(connect=10, read=spec.limits.upstream_timeout_seconds),
        payload=spec.audit.payload,
        flows=FlowPolicy(spec.flows) if spec.flows else None,
        monitor=spec.enforcement == "monitor",
        overlapped_intent=spec.audit.durability == "overlapped",
    )
