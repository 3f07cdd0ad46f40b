"""Classification: what kind of call a request is, and what the governance stages need.

The result is a :class:`~haltgate.governance.request.CallView` (shared by every stage)
plus the parsed details the sidecar itself needs later (the LLM dialect for usage, the
JSON-RPC ids for error replies, the parsed body for guardrails). Parsing is minimal: the
body is parsed once with orjson, and only for LLM and MCP calls (and HTTP bodies that look
like an LLM call); it is forwarded as the raw bytes it came in unless a stage must change it.

Everything here reads the request one way (issue 15): the path is the canonical one
(:mod:`haltgate.governance.canonical`), JSON with duplicate or case-colliding keys is
refused (:mod:`haltgate.governance.strict_json`), a body shaped like an LLM call is metered
as one whatever its path (:mod:`haltgate.governance.llm_body`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from haltgate.governance import llm_body, strict_json
from haltgate.governance.canonical import encode_non_ascii
from haltgate.governance.engine.pricing import normalise_model
from haltgate.governance.errors import BadRequestError
from haltgate.governance.jsonlimits import MAX_JSON_DEPTH, deeper_than
from haltgate.governance.mcp import CLIENT_METHODS, MethodClass
from haltgate.governance.policy_base import Provider, RequestKind
from haltgate.governance.request import AgentIdentity, CallView
from haltgate.sidecar import mcp_messages
from haltgate.sidecar.mcp_messages import McpMessage
from haltgate.sidecar.upstreams import ResolvedUpstream
from haltgate.sidecar.usage import Dialect

__all__ = ["Classified", "Target", "classify", "llm_dialect"]


@dataclass(frozen=True, slots=True)
class Target:
    """Where a request goes: resolved from the alias, the proxy URL or the original dst."""

    scheme: str
    host: str
    port: int
    path: str
    """Upstream path (already prefixed with the upstream's base path)."""
    query: str
    """Query string without ``?`` ('' for none): as sent until the pipeline brings it to
    its canonical form (:mod:`haltgate.governance.canonical_query`), then that form."""
    upstream: ResolvedUpstream | None
    destination_checked: bool = False
    """The listener already verified the destination is not this pod (transparent mode)."""
    rule_path: str = ""
    """The path rules and classification read: ``path`` without ``;`` parameters when the
    policy allows them ('' : the same as ``path``)."""
    query_pairs: tuple[tuple[str, str], ...] = ()
    """The canonical query's decoded parameters (what rules read), set with it."""
    url: str = field(init=False, compare=False)
    """The upstream URL the call is forwarded to (computed once)."""

    def __post_init__(self) -> None:
        if not self.rule_path:
            object.__setattr__(self, "rule_path", self.path)
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        netloc = host if self.port == default else f"{host}:{self.port}"
        # Sent as exactly these bytes (upstream_pool.py): a raw non-ASCII query is encoded.
        query = encode_non_ascii(self.query)
        url = f"{self.scheme}://{netloc}{self.path}" + (f"?{query}" if query else "")
        object.__setattr__(self, "url", url)


@dataclass(slots=True)
class Classified:
    """A classified request: the shared view and the sidecar's own parse results."""

    view: CallView
    dialect: Dialect | None = None
    """LLM API dialect (LLM calls only)."""
    dialect_guessed: bool = False
    """The dialect comes from the body's fields, not from a known endpoint path: usage the
    reader cannot find is unknown (the reservation is spent), not estimated."""
    body: Any = None
    """Parsed JSON body (LLM and MCP calls), else ``None``."""
    rpc_ids: tuple[Any, ...] = ()
    """Ids of the JSON-RPC requests (not notifications) in an MCP message or batch."""
    rpc_batch: bool = False
    wants_usage_injection: bool = False
    """A streamed OpenAI chat/completions call that did not ask for usage."""
    input_estimate: int = 0
    """Upper estimate of input tokens (for the worst-case reservation)."""
    context_ref: str | None = None
    """Field of an LLM body that brings in tokens the body does not hold (stored response,
    file, image URL...): the input is then bounded by the model's context window only."""
    inline_images: int = 0
    """Images sent inline in an LLM body (each reserves ``llm_body.INLINE_IMAGE_TOKENS``)."""
    choices: int = 1
    """Completions an LLM body asks for (``n``, ``best_of``): without an output cap, each
    may reach the model's largest completion."""
    extra: dict[str, Any] = field(default_factory=dict)
    mcp: McpMessage | None = None
    """The MCP request read message by message (MCP upstreams only)."""


def llm_dialect(path: str, provider: Provider | None) -> Dialect | None:
    """The LLM endpoint a path names (OpenAI-compatible or Anthropic), if any.

    Compared without case and trailing ``/``: classifying more calls as LLM calls only
    meters more."""
    path = path.lower().rstrip("/")
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


_ENDPOINT_CACHE_MAX = 256
_ENDPOINT_PATH_MAX = 512
_endpoints: dict[tuple[str, Provider | None], tuple[Dialect | None, str | None]] = {}
"""What an LLM endpoint's path alone says, by (rule path, provider): its dialect for a
POST and the deployment it names. An agent calls the same few endpoints again and again;
bounded (emptied when full, long paths not kept)."""


def _endpoint(path: str, provider: Provider | None) -> tuple[Dialect | None, str | None]:
    """``(llm_dialect(path, provider), llm_body.path_deployment(path))``, kept."""
    key = (path, provider)
    known = _endpoints.get(key)
    if known is not None:
        return known
    found = (llm_dialect(path, provider), llm_body.path_deployment(path))
    if len(path) <= _ENDPOINT_PATH_MAX:
        if len(_endpoints) >= _ENDPOINT_CACHE_MAX:
            _endpoints.clear()
        _endpoints[key] = found
    return found


def _parse_json(body: bytes, *, nested: bool = True) -> Any:
    if not body:
        raise BadRequestError("request body is empty, JSON expected", code="invalid_json")
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BadRequestError(f"request body is not valid JSON: {e}", code="invalid_json") from e
    _check_depth(obj, body)
    if isinstance(obj, dict | list):
        strict_json.check_one_reading(body, obj, nested=nested)
    return obj


def _check_depth(obj: Any, body: bytes) -> None:
    if deeper_than(obj, MAX_JSON_DEPTH, body):
        raise BadRequestError(
            f"request body nests deeper than {MAX_JSON_DEPTH} levels", code="json_too_deep"
        )


_JSON_START = frozenset(b"{ \t\r\n")
_JSON_ARRAY_START = _JSON_START | frozenset(b"[")
_MAY_NAME_A_METHOD = re.compile(rb"method|\\u|\\/", re.IGNORECASE)
"""Bodies worth parsing for an MCP method: a ``method`` key in any case, or a JSON escape
that could spell one (``\\u0065``, ``tools\\/call``). One scan, no lower-cased copy."""


def _llm_shaped(body: bytes) -> Any:
    """The parsed body if it is a JSON object shaped like an LLM call, else ``None``."""
    if not body or body[0] not in _JSON_START or not llm_body.may_be_llm_call(body):
        return None
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not llm_body.looks_like_llm_call(obj):
        return None  # not governed as JSON: its reading is the upstream's business
    _check_depth(obj, body)
    strict_json.check_one_reading(body, obj, nested=False)
    return obj


_MCP_WORK_METHODS: Final = frozenset(
    name.casefold() for name, cls in CLIENT_METHODS.items() if cls is not MethodClass.SESSION
)


def _refuse_mcp_in_disguise(body: bytes) -> None:
    """Refuse a JSON message whose ``method`` names MCP work (``tools/call``,
    ``resources/read``, listings: any case, with or without ``jsonrpc``, which lenient servers
    do not check) sent to an upstream not declared ``mcp``: tool, resource and prompt rules
    only see MCP upstreams, and gateways serve MCP at ``/mcp`` beside their REST or LLM
    routes. Other JSON-RPC (e.g. a blockchain node's) passes as before."""
    if not body or body[0] not in _JSON_ARRAY_START or _MAY_NAME_A_METHOD.search(body) is None:
        return
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return
    for message in obj if isinstance(obj, list) else (obj,):
        if not isinstance(message, dict):
            continue
        for key, value in message.items():
            if (
                isinstance(key, str)
                and key.casefold() == "method"
                and isinstance(value, str)
                and value.casefold() in _MCP_WORK_METHODS
            ):
                raise BadRequestError(
                    f"an MCP message ({value[:64]!r}) to an upstream not declared "
                    "as mcp: declare the MCP endpoint as an upstream of kind mcp so its "
                    "tools are governed",
                    code="mcp_in_disguise",
                )


def _guess_dialect(obj: dict[str, Any], provider: Provider | None) -> Dialect:
    if "messages" in obj:
        return Dialect.ANTHROPIC_MESSAGES if provider is Provider.ANTHROPIC else Dialect.OPENAI_CHAT
    return Dialect.OPENAI_RESPONSES if "input" in obj else Dialect.OPENAI_COMPLETIONS


def _classify_llm(method: str, target: Target, body: bytes, agent: AgentIdentity) -> Classified:
    provider = target.upstream.provider if target.upstream else None
    path_dialect, deployment = _endpoint(target.rule_path, provider)
    dialect = path_dialect if method == "POST" else None
    if dialect is None:
        # No endpoint haltgate meters by its path (e.g. GET /v1/models): unknown kind, the
        # policy's default decides; unless the body is an LLM call, whatever the path.
        shaped = _llm_shaped(body)
        if shaped is None:
            _refuse_mcp_in_disguise(body)
            return Classified(_view(None, method, target, agent))
        return _llm_call(
            method,
            target,
            body,
            agent,
            shaped,
            _guess_dialect(shaped, provider),
            guessed=True,
            deployment=deployment,
        )
    return _llm_call(
        method,
        target,
        body,
        agent,
        _parse_json(body, nested=False),
        dialect,
        deployment=deployment,
    )


def _llm_call(
    method: str,
    target: Target,
    body: bytes,
    agent: AgentIdentity,
    obj: Any,
    dialect: Dialect,
    *,
    guessed: bool = False,
    deployment: str | None = None,
) -> Classified:
    """``deployment``: what the target's path names (``llm_body.path_deployment``)."""
    if not isinstance(obj, dict):
        raise BadRequestError("LLM request body must be a JSON object", code="invalid_request")
    strict_json.require_exact_fields(obj, llm_body.LLM_FIELDS, "LLM request")
    model = obj.get("model")
    if model is not None and not isinstance(model, str):
        raise BadRequestError("model must be a string", code="invalid_request")
    if deployment is not None:
        # Azure-style routes serve the deployment the path names: that is the model run.
        if model is not None and normalise_model(model) != normalise_model(deployment):
            raise BadRequestError(
                f"the path names deployment {deployment[:64]!r} and the body model "
                f"{model[:64]!r}: an upstream serves the path's, so they must agree",
                code="ambiguous_model",
            )
        model = deployment
    stream = obj.get("stream") is True
    inject = False
    if stream and dialect in (Dialect.OPENAI_CHAT, Dialect.OPENAI_COMPLETIONS):
        options = obj.get("stream_options")
        inject = not (isinstance(options, dict) and options.get("include_usage") is True)
    max_output, choices = llm_body.output_bounds(obj)
    view = CallView(
        kind=RequestKind.LLM,
        method=method,
        scheme=target.scheme,
        host=target.host,
        port=target.port,
        path=target.rule_path,
        upstream=target.upstream.name if target.upstream else None,
        model=model,
        max_output_tokens=max_output,
        stream=stream,
        agent=agent,
        query=target.query_pairs,
    )
    ref, images = llm_body.context_reference(obj)
    return Classified(
        view,
        dialect=dialect,
        body=obj,
        wants_usage_injection=inject,
        input_estimate=len(body),
        context_ref=ref,
        inline_images=images,
        dialect_guessed=guessed,
        choices=choices,
    )


def _classify_mcp(method: str, target: Target, body: bytes, agent: AgentIdentity) -> Classified:
    upstream_name = target.upstream.name if target.upstream else None
    obj = _parse_json(body) if method == "POST" else None
    # Every message read and checked on its own (haltgate.sidecar.mcp_messages): exact method
    # names, one reading of the JSON, canonical resource URIs.
    message = mcp_messages.read_message(method, body, obj, upstream_name or target.host)
    view = CallView(
        kind=RequestKind.MCP,
        method=method,
        scheme=target.scheme,
        host=target.host,
        port=target.port,
        path=target.rule_path,
        upstream=upstream_name,
        tool_calls=message.tool_calls,
        mcp_method=message.main_method,
        agent=agent,
        mcp_messages=tuple((e.method, e.resource, e.prompt) for e in message.elements),
        query=target.query_pairs,
    )
    return Classified(
        view, body=obj, rpc_ids=message.request_ids, rpc_batch=message.batch, mcp=message
    )


def _view(kind: RequestKind | None, method: str, target: Target, agent: AgentIdentity) -> CallView:
    return CallView(
        kind=kind,
        method=method,
        scheme=target.scheme,
        host=target.host,
        port=target.port,
        path=target.rule_path,
        upstream=target.upstream.name if target.upstream else None,
        agent=agent,
        query=target.query_pairs,
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
    # transparent mode. Tool rules decide by host, method and path; unless the body is an
    # LLM call (an LLM API reached as an HTTP tool is still an LLM call: metered).
    shaped = _llm_shaped(body)
    if shaped is not None:
        provider = target.upstream.provider if target.upstream else None
        path_dialect, deployment = _endpoint(target.rule_path, provider)
        dialect = path_dialect if method == "POST" else None
        return _llm_call(
            method,
            target,
            body,
            agent,
            shaped,
            dialect or _guess_dialect(shaped, provider),
            guessed=dialect is None,
            deployment=deployment,
        )
    _refuse_mcp_in_disguise(body)
    return Classified(_view(RequestKind.HTTP, method, target, agent))
