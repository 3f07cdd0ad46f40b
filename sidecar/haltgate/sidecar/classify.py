"""Classification: what kind of call a request is, and what the governance stages need.

The result is a :class:`~haltgate.governance.request.CallView` (shared by every stage)
plus the parsed details the sidecar itself needs later (the LLM dialect for usage, the
JSON-RPC ids for error replies, the parsed body for guardrails). Parsing is minimal: the
body is parsed once with orjson, and only for LLM and MCP calls; it is forwarded as the
raw bytes it came in unless a stage must change it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from haltgate.governance.errors import BadRequestError
from haltgate.governance.jsonlimits import MAX_JSON_DEPTH, deeper_than
from haltgate.governance.policy import Provider, RequestKind
from haltgate.governance.request import AgentIdentity, CallView, ToolCall
from haltgate.sidecar.upstreams import ResolvedUpstream
from haltgate.sidecar.usage import Dialect

__all__ = ["Classified", "Target", "classify", "llm_dialect"]

MCP_TOOLS_CALL = "tools/call"


@dataclass(frozen=True, slots=True)
class Target:
    """Where a request goes: resolved from the alias, the proxy URL or the original dst."""

    scheme: str
    host: str
    port: int
    path: str
    """Upstream path (already prefixed with the upstream's base path)."""
    query: str
    """Raw query string without ``?`` ('' for none)."""
    upstream: ResolvedUpstream | None
    destination_checked: bool = False
    """The listener already verified the destination is not this pod (transparent mode)."""
    url: str = field(init=False, compare=False)
    """The upstream URL the call is forwarded to (computed once)."""

    def __post_init__(self) -> None:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        netloc = host if self.port == default else f"{host}:{self.port}"
        url = f"{self.scheme}://{netloc}{self.path}" + (f"?{self.query}" if self.query else "")
        object.__setattr__(self, "url", url)


@dataclass(slots=True)
class Classified:
    """A classified request: the shared view and the sidecar's own parse results."""

    view: CallView
    dialect: Dialect | None = None
    """LLM API dialect (LLM calls only)."""
    body: Any = None
    """Parsed JSON body (LLM and MCP calls), else ``None``."""
    rpc_ids: tuple[Any, ...] = ()
    """Ids of the JSON-RPC requests (not notifications) in an MCP message or batch."""
    rpc_batch: bool = False
    wants_usage_injection: bool = False
    """A streamed OpenAI chat/completions call that did not ask for usage."""
    input_estimate: int = 0
    """Upper estimate of input tokens (for the worst-case reservation)."""
    extra: dict[str, Any] = field(default_factory=dict)


def llm_dialect(path: str, provider: Provider | None) -> Dialect | None:
    """The LLM endpoint a path names (OpenAI-compatible or Anthropic), if any."""
    if path.endswith("/chat/completions"):
        return Dialect.OPENAI_CHAT
    if path.endswith("/completions"):
        return Dialect.OPENAI_COMPLETIONS
    if path.endswith("/embeddings"):
        return Dialect.OPENAI_EMBEDDINGS
    if path.endswith("/responses"):
        return Dialect.OPENAI_RESPONSES
    if path.endswith("/messages") and provider in (Provider.ANTHROPIC, None):
        return Dialect.ANTHROPIC_MESSAGES
    return None


def _parse_json(body: bytes) -> Any:
    if not body:
        raise BadRequestError("request body is empty, JSON expected", code="invalid_json")
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BadRequestError(f"request body is not valid JSON: {e}", code="invalid_json") from e
    if deeper_than(obj, MAX_JSON_DEPTH, body):
        raise BadRequestError(f"request body nests deeper than {MAX_JSON_DEPTH} levels",
                              code="json_too_deep")
    return obj


def _max_output(body: dict[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 0:
                raise BadRequestError(f"{key} must not be negative", code="invalid_request")
            return value
    return None


def _classify_llm(
    method: str, target: Target, body: bytes, agent: AgentIdentity
) -> Classified:
    provider = target.upstream.provider if target.upstream else None
    dialect = llm_dialect(target.path, provider) if method == "POST" else None
    if dialect is None:
        # An LLM upstream, but no endpoint haltgate meters (e.g. GET /v1/models): unknown
        # kind, the policy's default decides.
        return Classified(_view(None, method, target, agent))
    obj = _parse_json(body)
    if not isinstance(obj, dict):
        raise BadRequestError("LLM request body must be a JSON object", code="invalid_request")
    model = obj.get("model")
    if model is not None and not isinstance(model, str):
        raise BadRequestError("model must be a string", code="invalid_request")
    stream = obj.get("stream") is True
    inject = False
    if stream and dialect in (Dialect.OPENAI_CHAT, Dialect.OPENAI_COMPLETIONS):
        options = obj.get("stream_options")
        inject = not (isinstance(options, dict) and options.get("include_usage") is True)
    view = CallView(
        kind=RequestKind.LLM, method=method, scheme=target.scheme, host=target.host,
        port=target.port, path=target.path,
        upstream=target.upstream.name if target.upstream else None,
        model=model, max_output_tokens=_max_output(obj), stream=stream, agent=agent,
    )
    return Classified(view, dialect=dialect, body=obj, wants_usage_injection=inject,
                      input_estimate=len(body))


def _rpc_message(msg: Any, server: str | None) -> tuple[str | None, ToolCall | None, bool, Any]:
    """Validate one JSON-RPC message: (method, tool call, is request, id)."""
    if not isinstance(msg, dict) or msg.get("jsonrpc") != "2.0":
        raise BadRequestError("not a JSON-RPC 2.0 message", code="invalid_jsonrpc")
    method = msg.get("method")
    if method is None:
        if "id" not in msg or ("result" not in msg and "error" not in msg):
            raise BadRequestError("JSON-RPC message without method must be a response",
                                  code="invalid_jsonrpc")
        return None, None, False, None
    if not isinstance(method, str):
        raise BadRequestError("JSON-RPC method must be a string", code="invalid_jsonrpc")
    has_id = "id" in msg
    msg_id = msg.get("id")
    if (has_id and not (msg_id is None or isinstance(msg_id, str | int))) or (
        isinstance(msg_id, bool)
    ):
        raise BadRequestError("JSON-RPC id must be a string or an integer",
                              code="invalid_jsonrpc")
    tool = None
    if method == MCP_TOOLS_CALL:
        if not has_id or msg_id is None:
            # A tools/call sent as a notification gets no answer: haltgate could neither
            # settle its budget nor report a denial. Refuse it.
            raise BadRequestError("tools/call needs a JSON-RPC id", code="jsonrpc_missing_id")
        params = msg.get("params")
        name = params.get("name") if isinstance(params, dict) else None
        if not isinstance(name, str) or not name:
            raise BadRequestError("tools/call needs params.name", code="invalid_jsonrpc")
        arguments = params.get("arguments", {}) if isinstance(params, dict) else {}
        tool = ToolCall(name=name, arguments=arguments, server=server)
    return method, tool, has_id, msg_id


def _classify_mcp(
    method: str, target: Target, body: bytes, agent: AgentIdentity
) -> Classified:
    upstream_name = target.upstream.name if target.upstream else None
    if method != "POST":
        # GET opens the server's event stream, DELETE ends a session: MCP, no tool.
        return Classified(_view(RequestKind.MCP, method, target, agent))
    obj = _parse_json(body)
    batch = isinstance(obj, list)
    messages = obj if batch else [obj]
    if batch and not messages:
        raise BadRequestError("empty JSON-RPC batch", code="invalid_jsonrpc")
    server = upstream_name or target.host
    methods: list[str] = []
    tools: list[ToolCall] = []
    ids: list[Any] = []
    for msg in messages:
        rpc_method, tool, is_request, msg_id = _rpc_message(msg, server)
        if rpc_method is not None:
            methods.append(rpc_method)
        if tool is not None:
            tools.append(tool)
        if is_request:
            ids.append(msg_id)
    mcp_method = MCP_TOOLS_CALL if tools else (methods[0] if methods else None)
    view = CallView(
        kind=RequestKind.MCP, method=method, scheme=target.scheme, host=target.host,
        port=target.port, path=target.path, upstream=upstream_name,
        tool_calls=tuple(tools), mcp_method=mcp_method, agent=agent,
    )
    return Classified(view, body=obj, rpc_ids=tuple(ids), rpc_batch=batch)


def _view(kind: RequestKind | None, method: str, target: Target,
          agent: AgentIdentity) -> CallView:
    return CallView(
        kind=kind, method=method, scheme=target.scheme, host=target.host, port=target.port,
        path=target.path, upstream=target.upstream.name if target.upstream else None,
        agent=agent,
    )


def classify(method: str, target: Target, body: bytes, agent: AgentIdentity) -> Classified:
    """Classify one request. Raises :class:`BadRequestError` for bodies that cannot be
    governed (invalid JSON to an LLM or MCP endpoint, JSON-RPC without id for tools/call)."""
    kind = target.upstream.kind if target.upstream else RequestKind.HTTP
    if kind is RequestKind.LLM:
        return _classify_llm(method, target, body, agent)
    if kind is RequestKind.MCP:
        return _classify_mcp(method, target, body, agent)
    # A generic HTTP tool: a declared http upstream, or any host reached in proxy or
    # transparent mode. Tool rules decide by host, method and path.
    return Classified(_view(RequestKind.HTTP, method, target, agent))
