"""The classified view of one governed call: the input of every pipeline stage.

The sidecar classifies each request it intercepts (an LLM API call, an MCP JSON-RPC
message, a plain HTTP tool call, or something unknown) into a :class:`CallView`. Tool
authorization, guardrails, the OPA decision, the budget engine and the audit record all
read this one immutable object, so no stage has to re-parse the request or reach into
another stage's state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from haltgate.governance.policy_base import RequestKind

__all__ = ["AgentIdentity", "CallView", "RequestKind", "ToolCall"]


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    """Who makes the call: the agent workload the sidecar sits next to.

    ``namespace``, ``workload`` and ``pod`` come from the sidecar's environment (the
    downward API); ``run_id`` identifies one agent run (a reset starts a new one).
    """

    namespace: str = ""
    workload: str = ""
    pod: str = ""
    run_id: str = ""

    def as_dict(self) -> dict[str, str]:
        """JSON-ready form (OPA input, audit records)."""
        return {
            "namespace": self.namespace,
            "workload": self.workload,
            "pod": self.pod,
            "run_id": self.run_id,
        }


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One MCP ``tools/call`` (a JSON-RPC batch carries several)."""

    name: str
    arguments: Any
    server: str | None
    """Upstream alias of the MCP server if known, else its host."""


@dataclass(frozen=True, slots=True)
class CallView:
    """One classified call. ``kind`` is ``None`` when the request matched no known kind."""

    kind: RequestKind | None
    method: str
    scheme: str
    host: str
    port: int
    path: str
    upstream: str | None = None
    """Alias of the matching ``spec.upstreams`` entry, if any."""
    model: str | None = None
    """LLM model named in the request body."""
    tool_calls: tuple[ToolCall, ...] = ()
    """MCP ``tools/call`` requests (a batch gives several)."""
    mcp_method: str | None = None
    """JSON-RPC method for MCP, e.g. ``tools/call``, ``tools/list``, ``initialize``.

    For a batch with several methods: the most consequential one (``tools/call`` wins)."""
    max_output_tokens: int | None = None
    """The client's output token cap (``max_tokens`` and its variants), if given."""
    mcp_messages: tuple[tuple[str | None, str | None, str | None], ...] = ()
    """MCP: every message of the request as ``(method, resource URI, prompt name)`` (the
    URI in canonical form; ``None`` where it has none; method ``None`` for an answer)."""
    stream: bool = False
    """The client asked for a streamed (SSE) response."""
    agent: AgentIdentity = field(default_factory=AgentIdentity)
    query: tuple[tuple[str, str], ...] = ()
    """The query string's parameters as decoded name and value, in order: its one reading
    (``haltgate.governance.canonical_query``); HTTP tool rules read them as arguments
    ``$.query.<name>``."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, e.g. the ``call`` part of the OPA input document."""
        return {
            "kind": self.kind.value if self.kind is not None else None,
            "method": self.method,
            "scheme": self.scheme,
            "host": self.host,
            "port": self.port,
            "path": self.path,
            "upstream": self.upstream,
            "model": self.model,
            "tool_calls": [
                {"name": t.name, "arguments": t.arguments, "server": t.server}
                for t in self.tool_calls
            ],
            "mcp_method": self.mcp_method,
            "mcp_messages": [{"method": m, "uri": u, "prompt": p} for m, u, p in self.mcp_messages],
            "max_output_tokens": self.max_output_tokens,
            "stream": self.stream,
            "agent": self.agent.as_dict(),
            "query": [list(pair) for pair in self.query],
        }
