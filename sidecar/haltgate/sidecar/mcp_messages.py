"""MCP request bodies read message by message: every JSON-RPC message of a body checked
for one reading (exact field names, known methods) and turned into an :class:`McpElement`
(tool call, resource URI in canonical form, prompt name, ...), plus the per-call state the
MCP stages keep (:class:`McpCallState`).

:func:`read_message` is the classifier's entry point; the decisions on the elements are in
:mod:`haltgate.sidecar.mcp`, the filters on the answers in :mod:`haltgate.sidecar.mcp_answers`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from haltgate.governance import strict_json
from haltgate.governance.errors import BadRequestError
from haltgate.governance.mcp import CLIENT_METHODS, CLIENT_NOTIFICATIONS, MethodClass, canonical_uri
from haltgate.governance.request import ToolCall

__all__ = ["McpCallState", "McpElement", "McpMessage", "read_message"]


CODE_AMBIGUOUS_URI: Final = "ambiguous_uri"
CODE_UNKNOWN_METHOD: Final = "mcp_method_unknown"
CODE_INVALID: Final = "invalid_jsonrpc"

_BUDGETED: Final = frozenset(
    {MethodClass.TOOL, MethodClass.RESOURCE, MethodClass.PROMPT, MethodClass.COMPLETION}
)


# --------------------------------------------------------------------------- one reading

_RPC_FIELDS: Final = frozenset({"jsonrpc", "method", "params", "id", "result", "error"})
_PARAM_FIELDS: Final[dict[MethodClass, frozenset[str]]] = {
    MethodClass.TOOL: frozenset({"name", "arguments", "_meta"}),
    MethodClass.RESOURCE: frozenset({"uri", "_meta"}),
    MethodClass.PROMPT: frozenset({"name", "arguments", "_meta"}),
    MethodClass.COMPLETION: frozenset({"ref", "argument", "context", "_meta"}),
}
_REF_FIELDS: Final = frozenset({"type", "name", "uri"})
_INITIALIZE_FIELDS: Final = frozenset({"protocolVersion", "capabilities", "clientInfo", "_meta"})
_CAPABILITY_FIELDS: Final = frozenset({"sampling", "elicitation", "roots", "experimental"})


_FOLDED: Final[dict[frozenset[str], dict[str, str]]] = {
    fields: {f.casefold(): f for f in fields}
    for fields in (
        _RPC_FIELDS,
        *_PARAM_FIELDS.values(),
        _REF_FIELDS,
        _INITIALIZE_FIELDS,
        _CAPABILITY_FIELDS,
    )
}


# --------------------------------------------------------------------------- messages


@dataclass(slots=True)
class McpElement:
    """One JSON-RPC message of an MCP request (read-only once built; not frozen only
    because a frozen dataclass costs more to build, once per message on the hot path)."""

    index: int
    """Position in the batch (0 for a single message)."""
    method: str | None
    """``None`` for the agent's answer to a server request."""
    cls: MethodClass
    msg_id: Any
    is_request: bool
    tool: ToolCall | None = None
    resource: str | None = None
    """Canonical URI (resources/*, resource completions)."""
    prompt: str | None = None
    """Prompt name (prompts/get, prompt completions)."""
    params: Any = None

    @property
    def budgeted(self) -> bool:
        """Does work upstream: uses one call of the budget."""
        return self.cls in _BUDGETED

    def fingerprint(self) -> str:
        """Same element, same value (the JSON-RPC id is left out: retries change it)."""
        what: Any
        if self.tool is not None:
            what = [self.tool.name, self.tool.arguments]
        else:
            what = [self.method, self.params]
        return hashlib.sha256(orjson.dumps(what, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True, slots=True)
class McpMessage:
    """An MCP request read whole: its elements, or what a body-less request is.

    The derived views are computed once (:func:`read_message`), not per read."""

    elements: tuple[McpElement, ...] = ()
    batch: bool = False
    teardown: bool = False
    """DELETE: ends the session. Never refused (a refused teardown leaves the upstream
    session open), never budgeted."""
    stream: bool = False
    """GET: the server's event stream. Never budgeted (it holds no reservation)."""
    tool_calls: tuple[ToolCall, ...] = ()
    budgeted: tuple[McpElement, ...] = ()
    """The elements that do work upstream (one call of the budget each)."""
    request_ids: tuple[Any, ...] = ()
    main_method: str | None = None
    """The most consequential method (for the view and rules): tools/call wins."""


def _message(elements: tuple[McpElement, ...], batch: bool) -> McpMessage:
    tool_calls = tuple(e.tool for e in elements if e.tool is not None)
    main = (
        "tools/call"
        if tool_calls
        else next((e.method for e in elements if e.method is not None), None)
    )
    return McpMessage(
        elements,
        batch,
        tool_calls=tool_calls,
        budgeted=tuple(e for e in elements if e.cls in _BUDGETED),
        request_ids=tuple(e.msg_id for e in elements if e.is_request),
        main_method=main,
    )


def _bad(message: str, code: str = CODE_INVALID) -> BadRequestError:
    return BadRequestError(message, code=code)


def _params(msg: dict[str, Any], where: str) -> dict[str, Any]:
    params = msg.get("params")
    if not isinstance(params, dict):
        raise _bad(f"{where}params must be an object")
    return params


def _uri(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _bad(f"{where} must be a string")
    try:
        return canonical_uri(value)
    except ValueError as e:
        raise BadRequestError(f"{where}: {e}", code=CODE_AMBIGUOUS_URI) from e


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise _bad(f"{where} must be a non-empty string")
    return value


def _at(index: int, batch: bool, method: str = "") -> str:
    """Where an error is, for its message (built only when there is one)."""
    at = f"message [{index}]: " if batch else ""
    return f"{at}{method} " if method else at


def _exact(obj: Any, fields: frozenset[str], index: int, batch: bool, what: str) -> None:
    """Refuse a key of ``obj`` that is one of the fields MCP defines to a case-insensitive
    parser (Go's ``encoding/json``, Unicode simple folding) but spelt otherwise: a lone
    ``"Method"``, ``"Arguments"`` or ``"protocolversion"``, which the server would read
    and the rules did not (``ambiguous_json``)."""
    if isinstance(obj, dict):
        folded = _FOLDED[fields]
        for key in obj:
            if key in fields:
                continue
            name = folded.get(key.casefold())
            if name is not None:
                raise BadRequestError(
                    f"{_at(index, batch)}{what}: key {key[:64]!r} is {name!r} to "
                    f"case-insensitive parsers; spell it {name!r}",
                    code=strict_json.CODE_AMBIGUOUS_JSON,
                )


def _element(index: int, msg: Any, server: str | None, batch: bool) -> McpElement:
    if not isinstance(msg, dict) or msg.get("jsonrpc") != "2.0":
        raise _bad(f"{_at(index, batch)}not a JSON-RPC 2.0 message")
    # A lone "Method" collides with nothing, yet a case-insensitive server reads it.
    _exact(msg, _RPC_FIELDS, index, batch, "JSON-RPC message")
    has_id = "id" in msg
    msg_id = msg.get("id")
    if has_id and (
        isinstance(msg_id, bool) or not (msg_id is None or isinstance(msg_id, str | int))
    ):
        raise _bad(f"{_at(index, batch)}id must be a string or an integer")
    method = msg.get("method")
    if method is None:
        if "method" in msg or not has_id or ("result" not in msg and "error" not in msg):
            raise _bad(f"{_at(index, batch)}a JSON-RPC message without method must be a response")
        return McpElement(index, None, MethodClass.RESPONSE, msg_id, False)
    if not isinstance(method, str):
        raise _bad(f"{_at(index, batch)}method must be a string")
    cls = CLIENT_METHODS.get(method)
    if cls is None:
        if method in CLIENT_NOTIFICATIONS:
            if has_id:
                raise _bad(f"{_at(index, batch, method)}is a notification: it carries no id")
            return McpElement(index, method, MethodClass.SESSION, None, False)
        raise BadRequestError(
            f"{_at(index, batch)}method {method[:128]!r} is not an MCP client method (names "
            "are exact: e.g. tools/call, resources/read)",
            code=CODE_UNKNOWN_METHOD,
        )
    if cls in _BUDGETED and (not has_id or msg_id is None):
        # Sent as a notification it gets no answer: haltgate could neither settle its
        # budget nor report a denial. Refuse it.
        raise BadRequestError(
            f"{_at(index, batch, method)}needs a JSON-RPC id", code="jsonrpc_missing_id"
        )
    params = msg.get("params")
    if cls is MethodClass.TOOL:
        if not isinstance(params, dict):
            raise _bad(f"{_at(index, batch, method)}params must be an object")
        _exact(params, _PARAM_FIELDS[cls], index, batch, f"{method} params")
        name = params.get("name")
        if not isinstance(name, str) or not name:
            raise _bad(f"{_at(index, batch, method)}needs params.name")
        arguments = params.get("arguments", {})
        if not isinstance(arguments, dict):
            raise _bad(f"{_at(index, batch, method)}params.arguments must be an object")
        return McpElement(
            index,
            method,
            cls,
            msg_id,
            has_id,
            ToolCall(name=name, arguments=arguments, server=server),
            params=params,
        )
    return _other_element(index, msg, method, cls, msg_id, has_id, params, batch)


def _other_element(
    index: int,
    msg: dict[str, Any],
    method: str,
    cls: MethodClass,
    msg_id: Any,
    is_request: bool,
    params: Any,
    batch: bool,
) -> McpElement:
    where = _at(index, batch, method)
    fields = _PARAM_FIELDS.get(cls)
    if fields is not None:
        _exact(params, fields, index, batch, f"{method} params")
    if method == "initialize" and isinstance(params, dict):
        # The capabilities haltgate removes must be the ones the server reads.
        _exact(params, _INITIALIZE_FIELDS, index, batch, f"{method} params")
        _exact(
            params.get("capabilities"),
            _CAPABILITY_FIELDS,
            index,
            batch,
            f"{method} params.capabilities",
        )
    if cls is MethodClass.RESOURCE:
        uri = _uri(_params(msg, where).get("uri"), f"{where}params.uri")
        return McpElement(index, method, cls, msg_id, is_request, resource=uri, params=params)
    if cls is MethodClass.PROMPT:
        name = _name(_params(msg, where).get("name"), f"{where}params.name")
        return McpElement(index, method, cls, msg_id, is_request, prompt=name, params=params)
    if cls is MethodClass.COMPLETION:
        ref = _params(msg, where).get("ref")
        _exact(ref, _REF_FIELDS, index, batch, f"{method} params.ref")
        if isinstance(ref, dict) and ref.get("type") == "ref/prompt":
            name = _name(ref.get("name"), f"{where}params.ref.name")
            return McpElement(index, method, cls, msg_id, is_request, prompt=name, params=params)
        if isinstance(ref, dict) and ref.get("type") == "ref/resource":
            uri = _uri(ref.get("uri"), f"{where}params.ref.uri")
            return McpElement(index, method, cls, msg_id, is_request, resource=uri, params=params)
        raise _bad(f"{where}params.ref must be a ref/prompt or a ref/resource")
    return McpElement(index, method, cls, msg_id, is_request, params=params)


def read_message(http_method: str, body: bytes, obj: Any, server: str | None) -> McpMessage:
    """Read an MCP request: ``obj`` is the parsed body of a POST (ignored otherwise)."""
    if http_method in ("GET", "DELETE"):
        if body:
            # Nothing reads it here, so nothing may carry it upstream.
            raise _bad(f"an MCP {http_method} carries no body", code="invalid_request")
        return McpMessage(teardown=http_method == "DELETE", stream=http_method == "GET")
    if http_method != "POST":
        raise _bad(
            f"MCP over HTTP uses POST, GET and DELETE, not {http_method[:16]}",
            code="mcp_http_method",
        )
    batch = isinstance(obj, list)
    messages = obj if batch else [obj]
    if batch and not messages:
        raise _bad("empty JSON-RPC batch")
    if not batch:
        return _message((_element(0, obj, server, False),), False)
    elements = tuple(_element(i, m, server, True) for i, m in enumerate(messages))
    ids = [e.msg_id for e in elements if e.is_request]
    if len(set(map(repr, ids))) != len(ids):
        raise _bad("duplicate JSON-RPC id in the batch: each request needs its own")
    return _message(elements, True)


@dataclass(slots=True)
class McpCallState:
    """What the MCP stages keep about one call (on the pipeline's ``Call``)."""

    message: McpMessage
    risks: list[float] = field(default_factory=list)
    """Risk of each budgeted element (rules' weights), in order."""
    sub_ids: tuple[str, ...] = ()
    """Reservation ids of the budgeted elements (``<decision id>.<n>``)."""
    outcomes: dict[str, tuple[bool, str | None, str | None]] = field(default_factory=dict)
    """Per JSON-RPC id (``repr``): ok, error digest, result digest, read from the answer."""
