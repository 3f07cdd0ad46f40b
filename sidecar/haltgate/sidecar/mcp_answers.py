"""What MCP answers may carry to the agent: server requests the policy denies
(``sampling/createMessage``, ``elicitation/create``) taken out of event streams and refused
in JSON answers (and answered to the server with a JSON-RPC error, so it does not wait for
them), listings (resources, prompts, resource templates) without the entries the policy
hides, and compressed answers that cannot be filtered refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from haltgate.governance.errors import DeniedError, HaltgateError, UpstreamError
from haltgate.governance.guardrails.answer_json import (
    NOT_PARSED,
    dump_answer_json,
    parse_answer_json,
)
from haltgate.governance.mcp import McpAuthorizer, canonical_uri, template_prefix
from haltgate.governance.policy_base import FailureType
from haltgate.sidecar.mcp_messages import McpMessage
from haltgate.sidecar.response_guard import content_coding
from haltgate.sidecar.responses import jsonrpc_error_body
from haltgate.sidecar.upstream_response import UpstreamTimeout

if TYPE_CHECKING:
    from haltgate.sidecar.call import Call
    from haltgate.sidecar.sse import SSEEvent
    from haltgate.sidecar.upstream_pool import UpstreamClient

__all__ = [
    "CODE_SERVER_REQUEST_DENIED",
    "ServerRequestFilter",
    "answer_server",
    "encoding_refusal",
    "filter_answer",
    "filter_listings",
    "listing_ids",
    "server_request_denied",
    "stream_filter",
]

log = logging.getLogger("haltgate.sidecar")


class ServerRequestFilter:
    """Takes server requests the policy denies out of an MCP event stream.

    :meth:`raw` filters complete events as bytes (everything else, ``id:`` lines included,
    is relayed unchanged); :meth:`wrap` puts the filter in front of the response guardrails'
    event scan when those are on. The agent never sees a dropped request; the server gets
    the refusal as the request's JSON-RPC error (:func:`answer_server`, as the client would
    answer it: a POST to the MCP endpoint), so it does not wait for it until it times out."""

    __slots__ = ("_rules", "dropped", "unanswered")

    def __init__(self, rules: McpAuthorizer) -> None:
        self._rules = rules
        self.dropped: list[str] = []
        """Methods of the server requests dropped so far."""
        self.unanswered: list[tuple[Any, str]] = []
        """(id, method) of the dropped requests whose refusal is not sent to the server yet
        (the relay takes them, on the event loop)."""

    def denied(self, data: str) -> str | None:
        """The denied server request method in an event's data, if any."""
        obj = parse_answer_json(data)  # as the MCP SDKs parse it (NaN, a BOM...)
        if obj is NOT_PARSED:
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
            msg_id = msg.get("id")
            if isinstance(msg_id, str | int) and not isinstance(msg_id, bool):
                self.unanswered.append((msg_id, method))
            return method
        return None

    def take_unanswered(self) -> list[tuple[Any, str]]:
        """The (id, method) pairs to answer now (each is returned once)."""
        ids, self.unanswered = self.unanswered, []
        return ids

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

    def end(self) -> bytes:
        return bytes(self._scan.end())


def _may_hold_requests(data: bytes) -> bool:
    """Whether ``data`` could carry a JSON-RPC request: a ``"method"`` key, escapes that
    could spell one, or UTF-16/32 (NULs) that hides it (then it is parsed to be sure)."""
    return b'"method"' in data or b"\\" in data or b"\x00" in data[:4]


def filter_answer(
    call: Call,
    body: bytes,
    content_type: str,
    dropped: Callable[[list[tuple[Any, str]]], None],
) -> bytes:
    """A whole MCP answer without the server requests the policy denies.

    An event stream read whole loses those events; a JSON batch those messages. A single
    JSON message that is such a request is refused (``mcp_server_request_denied``): there
    is nothing else to send. ``dropped`` is given the (id, method) of the requests taken out
    (to answer them to the server), before any refusal."""
    server_filter = stream_filter(call)
    if server_filter is None or not _may_hold_requests(body):
        return body
    try:
        return _filter_whole(server_filter, body, content_type)
    finally:
        if server_filter.unanswered:
            dropped(server_filter.take_unanswered())


def _filter_whole(server_filter: ServerRequestFilter, body: bytes, content_type: str) -> bytes:
    if content_type == "text/event-stream":
        return server_filter.raw(body)
    obj = parse_answer_json(body)
    if obj is NOT_PARSED:
        return body
    if isinstance(obj, list):
        kept = [m for m in obj if server_filter.denied_message(m) is None]
        return body if len(kept) == len(obj) else dump_answer_json(kept)
    method = server_filter.denied_message(obj)
    if method is not None:
        raise server_request_denied(method)
    return body


def server_request_denied(method: str) -> DeniedError:
    """The refusal of a server request the policy denies (to the agent and the server)."""
    return DeniedError(
        f"the MCP server sent a {method} request, which the policy denies",
        code=CODE_SERVER_REQUEST_DENIED,
        failure_type=FailureType.SAFETY,
    )


CODE_SERVER_REQUEST_DENIED: Final = "mcp_server_request_denied"
_ANSWER_SECONDS: Final = 10.0
_NOT_ANSWERED_WITH: Final = frozenset({"content-type", "accept", "last-event-id", "content-length"})


async def answer_server(
    client: UpstreamClient,
    url: str,
    headers: Mapping[str, str],
    requests: Sequence[tuple[Any, str]],
    decision_id: str,
) -> None:
    """Answer dropped server requests as the MCP client would: one JSON-RPC error per
    request id, each POSTed to the MCP endpoint (``url``, the call's canonical target) with
    the agent's headers for it (its session id and credentials). The refusal is the
    sidecar's own (``mcp_server_request_denied``, SAFETY, -32003) with the decision id of
    the call whose answer carried the request. A server that cannot be reached is logged:
    it times the request out, as it did before."""
    sent = {k: v for k, v in headers.items() if k.lower() not in _NOT_ANSWERED_WITH}
    sent["Content-Type"] = "application/json"
    sent["Accept"] = "application/json, text/event-stream"
    for msg_id, method in requests:
        body = jsonrpc_error_body(server_request_denied(method), decision_id, (msg_id,), False)
        try:
            async with asyncio.timeout(_ANSWER_SECONDS):
                resp = await client.request(
                    "POST",
                    url,
                    sent.items(),
                    body,
                    UpstreamTimeout(connect=_ANSWER_SECONDS, read=_ANSWER_SECONDS),
                )
                try:
                    await resp.read()
                finally:
                    resp.release()
        except (OSError, TimeoutError) as e:
            log.warning(
                "could not answer a denied MCP server request (%s): %s",
                decision_id,
                type(e).__name__,
            )


_LISTINGS: Final[dict[str, str]] = {
    "resources/list": "resources",
    "resources/templates/list": "resourceTemplates",
    "prompts/list": "prompts",
}


def listing_ids(message: McpMessage) -> dict[str, str]:
    """``repr(id)`` -> method of the resource, template and prompt listing requests."""
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
    if method == "resources/templates/list":
        # Listed only when every URI it expands to would be allowed (its fixed start
        # decides, conservatively); reads from it are still decided one by one.
        template = entry.get("uriTemplate")
        if not isinstance(template, str):
            return False
        try:
            return rules.resources.allows_every(servers, template_prefix(template))
        except ValueError:
            return False
    name = entry.get("name")
    return isinstance(name, str) and rules.prompts.decide(servers, name).allowed


def filter_listings(
    call: Call, body: bytes, content_type: str, rewrite_sse: Callable[[bytes, Any], bytes]
) -> bytes:
    """resources/list, resources/templates/list and prompts/list answers without what
    ``spec.mcp`` would refuse,
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
    obj = parse_answer_json(body)
    if obj is NOT_PARSED:
        return body
    return dump_answer_json([rewrite(m) for m in obj] if isinstance(obj, list) else rewrite(obj))


def encoding_refusal(call: Call, headers: Mapping[str, str]) -> UpstreamError | None:
    """A compressed MCP answer, when the policy denies server requests: refused.

    The sidecar asks MCP servers for ``identity`` answers; one compressed anyway could carry
    a sampling or elicitation request past the filter, which reads plain bytes (fail
    closed)."""
    coding = content_coding(headers).strip().lower()
    if {c.strip() for c in coding.split(",")} <= {"", "identity"} or stream_filter(call) is None:
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
