"""MCP in the sidecar: every JSON-RPC message of a request read, decided and budgeted alone.

The pipeline calls in here at four points, and nowhere else knows MCP's details:

1. :func:`read_message` (classification): the body has one reading (no duplicate or
   case-colliding keys: the classifier parses it with :mod:`haltgate.governance.strict_json`;
   the fields MCP defines spelled exactly), every message a known MCP method by its exact
   name; each becomes an :class:`McpElement` (tool call, resource URI in canonical
   form, prompt name, ...).
2. :func:`authorize` (after the tool rules): ``spec.mcp`` rules for resources, prompts and
   completions, element by element; the risk of each element; ``initialize`` loses the
   capabilities the policy denies (sampling, elicitation).
3. :func:`reserve` / :func:`settle` / :func:`release` (budget): one reservation per element
   that does work upstream (tools/call, resources/read, prompts/get, ...), so a batch of 50
   tool calls is 50 calls, 50 tools for ``distinctTools`` and 50 risks. The elements are
   reserved all or nothing in one synchronous engine step sequence with one state write
   (``Governor.apply_all``): concurrent batches cannot overspend, and if one element is
   refused none stays reserved and the batch is refused whole.
   Protocol and session messages (initialize, notifications, ping, listings, the GET stream,
   DELETE) reserve nothing.
4. :class:`ServerRequestFilter` (answers): server requests the policy denies
   (``sampling/createMessage``, ``elicitation/create``) are taken out of event streams.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

import orjson

from haltgate.governance import strict_json
from haltgate.governance.audit.redact import state_key
from haltgate.governance.errors import (
    BadRequestError,
    DeniedError,
    HaltgateError,
    UpstreamError,
)
from haltgate.governance.mcp import (
    CLIENT_METHODS,
    CLIENT_NOTIFICATIONS,
    McpAuthorizer,
    MethodClass,
    canonical_uri,
    strip_client_capabilities,
)
from haltgate.governance.policy_base import FailureType
from haltgate.governance.request import ToolCall
from haltgate.governance.tools import ToolAuthorizer

if TYPE_CHECKING:
    from haltgate.sidecar.budget import Budget, BudgetVerdict
    from haltgate.sidecar.pipeline import Call
    from haltgate.sidecar.sse import SSEEvent

__all__ = [
    "McpCallState",
    "McpElement",
    "McpMessage",
    "ServerRequestFilter",
    "authorize",
    "read_message",
    "release",
    "reserve",
    "settle",
]

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


# --------------------------------------------------------------------------- decisions


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


def authorize(call: Call, tools: ToolAuthorizer, rules: McpAuthorizer) -> McpCallState:
    """``spec.mcp`` for each element; the risk of each budgeted element. Raises
    :class:`DeniedError` for the first element refused (the batch fails whole)."""
    classified = call.classified
    assert classified is not None and classified.mcp is not None
    message: McpMessage = classified.mcp
    view = classified.view
    servers = (view.upstream, view.host)
    state = McpCallState(message)
    extra_risk = 0.0
    tool_risk = call.authz.risk if call.authz is not None else 0.0
    single_tool = len(view.tool_calls) == 1
    for e in message.elements:
        risk = 0.0
        if e.tool is not None:
            # The batch as a whole already passed the tool rules (and their risks add up to
            # ``tool_risk``); per element only to split that risk.
            if single_tool or not tool_risk:
                risk = tool_risk
            else:
                risk = tools.authorize(replace(view, tool_calls=(e.tool,))).risk
        elif e.resource is not None:
            risk = _check(rules.resources.decide(servers, e.resource))
            extra_risk += risk
        elif e.prompt is not None:
            risk = _check(rules.prompts.decide(servers, e.prompt))
            extra_risk += risk
        elif e.method in ("resources/list", "resources/templates/list"):
            _check(rules.resources.lists(servers, e.method))
        elif e.method == "prompts/list":
            _check(rules.prompts.lists(servers, e.method))
        if e.budgeted:
            state.risks.append(risk)
    call.risk += extra_risk
    _strip_capabilities(call, rules)
    return state


def _check(result: Any) -> float:
    if not result.allowed:
        raise DeniedError(
            result.message, code=result.code or "mcp_denied", failure_type=FailureType.SAFETY
        )
    return float(result.risk)


def _strip_capabilities(call: Call, rules: McpAuthorizer) -> None:
    """Remove denied client capabilities from ``initialize`` (the forwarded body changes)."""
    classified = call.classified
    assert classified is not None and classified.mcp is not None
    if rules.sampling and rules.elicitation:
        return
    body = classified.body
    changed = False
    for e in classified.mcp.elements:
        if e.method != "initialize":
            continue
        params = strip_client_capabilities(
            e.params, sampling=rules.sampling, elicitation=rules.elicitation
        )
        if params is None:
            continue
        if classified.mcp.batch:
            body = [*body] if not changed else body
            body[e.index] = {**body[e.index], "params": params}
        else:
            body = {**body, "params": params}
        changed = True
    if changed:
        classified.body = body
        call.forward_body = orjson.dumps(body)


# --------------------------------------------------------------------------- budget


def reserve(budget: Budget, call: Call, state: McpCallState) -> BudgetVerdict | None:
    """One reservation per budgeted element; ``None`` when nothing is budgeted.

    Returns the last verdict; a refused one after releasing the elements reserved before
    it (the caller refuses the whole request)."""
    elements = state.message.budgeted
    if not elements:
        return None
    view = call.classified.view if call.classified is not None else None
    assert view is not None
    # Guardrail and OPA risk concern the request as a whole: charged with its first element.
    residual = max(call.risk - sum(state.risks), 0.0)
    # Names the budget state keeps on disk: never a secret an agent put in a tool name.
    host = state_key(view.host) or ""
    if len(elements) == 1:
        # One message: the plain path (what a single call always cost).
        e = elements[0]
        verdict = budget.reserve(
            call_id=call.decision_id,
            ts=call.ts,
            kind="mcp",
            host=host,
            tool=state_key(e.tool.name) if e.tool is not None else None,
            model=None,
            max_input_tokens=0,
            max_output_tokens=0,
            fingerprint=e.fingerprint(),
            risk=state.risks[0] + residual,
        )
        if verdict.allowed:
            state.sub_ids = (call.decision_id,)
        return verdict
    sub_ids = tuple(f"{call.decision_id}.{n}" for n in range(len(elements)))
    verdict = budget.reserve_all(
        [
            {
                "call_id": sub_id,
                "ts": call.ts,
                "kind": "mcp",
                "host": host,
                "tool": state_key(e.tool.name) if e.tool is not None else None,
                "model": None,
                "max_input_tokens": 0,
                "max_output_tokens": 0,
                "fingerprint": e.fingerprint(),
                "risk": risk + (residual if n == 0 else 0.0),
            }
            for n, (sub_id, e, risk) in enumerate(zip(sub_ids, elements, state.risks, strict=True))
        ]
    )
    if verdict.allowed:
        state.sub_ids = sub_ids
    return verdict


def read_outcomes(state: McpCallState, body: bytes) -> None:
    """Each element's outcome from a JSON answer (by JSON-RPC id), when there are several
    (one element's outcome is the request's)."""
    if len(state.sub_ids) < 2:
        return
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return
    for msg in obj if isinstance(obj, list) else [obj]:
        if not isinstance(msg, dict) or "id" not in msg:
            continue
        result = msg.get("result")
        failed = "error" in msg or (isinstance(result, dict) and result.get("isError") is True)
        digest = hashlib.blake2b(
            orjson.dumps(msg.get("error") or result, option=orjson.OPT_SORT_KEYS), digest_size=16
        ).hexdigest()
        state.outcomes[repr(msg["id"])] = (
            not failed,
            digest if failed else None,
            None if failed else digest,
        )


def settle(
    budget: Budget,
    state: McpCallState,
    ts: float,
    ok: bool,
    error_fp: str | None,
    result_fp: str | None,
) -> BudgetVerdict | None:
    """Settle every element's reservation (its own outcome when the answer told it)."""
    if len(state.sub_ids) == 1:
        sub_id, state.sub_ids = state.sub_ids[0], ()
        return budget.settle(
            call_id=sub_id,
            ts=ts,
            usage=None,
            ok=ok,
            error_fingerprint=error_fp,
            result_fingerprint=result_fp,
        )
    settlements = []
    for sub_id, e in zip(state.sub_ids, state.message.budgeted, strict=True):
        own = state.outcomes.get(repr(e.msg_id))
        e_ok, e_err, e_res = own if own is not None and ok else (ok, error_fp, result_fp)
        settlements.append(
            {
                "call_id": sub_id,
                "ts": ts,
                "usage": None,
                "ok": e_ok,
                "error_fingerprint": e_err,
                "result_fingerprint": e_res,
            }
        )
    state.sub_ids = ()
    return budget.settle_all(settlements) if settlements else None


def release(budget: Budget, state: McpCallState, ts: float) -> None:
    """Give every element's reservation back (the request never left)."""
    if len(state.sub_ids) == 1:
        budget.release(state.sub_ids[0], ts)
    else:
        budget.release_all(list(state.sub_ids), ts)
    state.sub_ids = ()


# --------------------------------------------------------------------------- answers


class ServerRequestFilter:
    """Takes server requests the policy denies out of an MCP event stream.

    :meth:`raw` filters complete events as bytes (everything else, ``id:`` lines included,
    is relayed unchanged); :meth:`wrap` puts the filter in front of the response guardrails'
    event scan when those are on. A dropped request gets no answer from the agent: the
    server times it out, and the agent never acts on it."""

    __slots__ = ("_rules", "dropped")

    def __init__(self, rules: McpAuthorizer) -> None:
        self._rules = rules
        self.dropped: list[str] = []
        """Methods of the server requests dropped so far."""

    def denied(self, data: str) -> str | None:
        """The denied server request method in an event's data, if any."""
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        for msg in obj if isinstance(obj, list) else [obj]:
            method = self.denied_message(msg)
            if method is not None:
                return method
        return None

    def denied_message(self, msg: Any) -> str | None:
        """The method of ``msg`` if it is a server request the policy denies."""
        method = msg.get("method") if isinstance(msg, dict) else None
        if isinstance(method, str) and not self._rules.server_request_allowed(method):
            self.dropped.append(method)
            return method
        return None

    def raw(self, complete: bytes) -> bytes:
        """``complete`` (whole events) without the events carrying a denied request."""
        if not _may_hold_requests(complete):
            return complete
        out: list[bytes] = []
        event: list[bytes] = []
        data: list[bytes] = []
        for line in complete.splitlines(keepends=True):
            event.append(line)
            bare = line.rstrip(b"\r\n")
            if bare:
                if bare.startswith(b"data:"):
                    value = bare[5:]
                    data.append(value[1:] if value.startswith(b" ") else value)
                continue
            if not data or self.denied(b"\n".join(data).decode("utf-8", "replace")) is None:
                out.extend(event)
            event, data = [], []
        if event and (not data or self.denied(b"\n".join(data).decode("utf-8", "replace")) is None):
            out.extend(event)  # the stream's last event, without its blank line
        return b"".join(out)

    def wrap(self, scan: Any) -> Any:
        """A response scan that never sees (nor relays) denied server requests."""
        return _FilteredScan(self, scan)


class _FilteredScan:
    __slots__ = ("_filter", "_scan")

    def __init__(self, server_filter: ServerRequestFilter, scan: Any) -> None:
        self._filter = server_filter
        self._scan = scan

    def events(self, events: Sequence[SSEEvent]) -> bytes:
        kept = [e for e in events if self._filter.denied(e.data) is None]
        return bytes(self._scan.events(kept))

    def verdict(self) -> HaltgateError | None:
        return self._scan.verdict()


def _may_hold_requests(data: bytes) -> bool:
    """Whether ``data`` could carry a JSON-RPC request: a ``"method"`` key, or escapes that
    could spell one (then it is parsed to be sure)."""
    return b'"method"' in data or b"\\" in data


def filter_answer(call: Call, body: bytes, content_type: str) -> bytes:
    """A whole MCP answer without the server requests the policy denies.

    An event stream read whole loses those events; a JSON batch those messages. A single
    JSON message that is such a request is refused (``mcp_server_request_denied``): there
    is nothing else to send."""
    server_filter = stream_filter(call)
    if server_filter is None or not _may_hold_requests(body):
        return body
    if content_type == "text/event-stream":
        return server_filter.raw(body)
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if isinstance(obj, list):
        kept = [m for m in obj if server_filter.denied_message(m) is None]
        return body if len(kept) == len(obj) else orjson.dumps(kept)
    method = server_filter.denied_message(obj)
    if method is not None:
        raise DeniedError(
            f"the MCP server sent a {method} request, which the policy denies",
            code="mcp_server_request_denied",
            failure_type=FailureType.SAFETY,
        )
    return body


_LISTINGS: Final[dict[str, str]] = {"resources/list": "resources", "prompts/list": "prompts"}


def listing_ids(message: McpMessage) -> dict[str, str]:
    """``repr(id)`` -> method of the resources/list and prompts/list requests."""
    return {
        repr(e.msg_id): e.method for e in message.elements if e.is_request and e.method in _LISTINGS
    }


def _listed(rules: McpAuthorizer, servers: tuple[str | None, ...], method: str, entry: Any) -> bool:
    if not isinstance(entry, dict):
        return False
    if method == "resources/list":
        uri = entry.get("uri")
        if not isinstance(uri, str):
            return False
        try:
            return rules.resources.decide(servers, canonical_uri(uri)).allowed
        except ValueError:
            return False  # the agent could not read it anyway
    name = entry.get("name")
    return isinstance(name, str) and rules.prompts.decide(servers, name).allowed


def filter_listings(
    call: Call, body: bytes, content_type: str, rewrite_sse: Callable[[bytes, Any], bytes]
) -> bytes:
    """resources/list and prompts/list answers without what ``spec.mcp`` would refuse,
    as ``tools/list`` answers are filtered by the tool rules: the agent does not plan with
    what it may not use."""
    classified = call.classified
    assert classified is not None and classified.mcp is not None
    ids = listing_ids(classified.mcp)
    if not ids:
        return body
    rules: McpAuthorizer = call.controls.mcp
    servers = (classified.view.upstream, classified.view.host)

    def rewrite(msg: Any) -> Any:
        if not isinstance(msg, dict) or not isinstance(msg.get("result"), dict):
            return msg
        method = ids.get(repr(msg.get("id")))
        if method is None:
            return msg
        key = _LISTINGS[method]
        entries = msg["result"].get(key)
        if isinstance(entries, list):
            msg["result"][key] = [e for e in entries if _listed(rules, servers, method, e)]
        return msg

    if content_type == "text/event-stream":
        return rewrite_sse(body, rewrite)
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    return orjson.dumps([rewrite(m) for m in obj] if isinstance(obj, list) else rewrite(obj))


def encoding_refusal(call: Call, headers: Mapping[str, str]) -> UpstreamError | None:
    """A compressed MCP answer, when the policy denies server requests: refused.

    The sidecar asks MCP servers for ``identity`` answers; one compressed anyway could carry
    a sampling or elicitation request past the filter, which reads plain bytes (fail
    closed)."""
    coding = headers.get("Content-Encoding", "").strip().lower()
    if coding in ("", "identity") or stream_filter(call) is None:
        return None
    return UpstreamError(
        f"the MCP server answered with Content-Encoding {coding[:32]!r} "
        "although asked for identity: server requests in it could not be "
        "filtered",
        code="mcp_answer_encoded",
    )


def stream_filter(call: Call) -> ServerRequestFilter | None:
    """The server request filter of an MCP stream (``None``: the policy allows them all)."""
    rules: McpAuthorizer = call.controls.mcp
    if rules.sampling and rules.elicitation:
        return None
    return ServerRequestFilter(rules)
