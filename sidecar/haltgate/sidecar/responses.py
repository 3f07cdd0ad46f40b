"""How haltgate's own answers look: typed errors as JSON, JSON-RPC and SSE.

HTTP status of a refusal (documented in docs/sidecar.md):

==============  ======  ==========================================================
failure type    status  why
==============  ======  ==========================================================
EXHAUSTION      429     a budget is used up: the agent should stop or wait
SAFETY          403     a rule, a guardrail or OPA forbids the call
OVERRISK        403     accumulated risk passed its limit
STAGNATION      409     the agent repeats itself without progress
EXTERNAL        423     halted from outside (operator, pool, cascade)
==============  ======  ==========================================================

Other errors: 400 invalid input, 404 unknown upstream alias, 413 body too large,
502 upstream failure, 503 a fail-closed control (audit, OPA) is unavailable,
504 upstream timeout.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

import orjson
from aiohttp import web

from haltgate.governance.errors import (
    BadRequestError,
    HaltgateError,
    NotFoundError,
    UnavailableError,
    UpstreamError,
)
from haltgate.governance.policy_base import FailureType

__all__ = [
    "DECISION_HEADER",
    "OVERHEAD_HEADER",
    "error_body",
    "http_status",
    "jsonrpc_error_body",
    "sse_error_event",
]

DECISION_HEADER: Final = "x-haltgate-decision-id"
OVERHEAD_HEADER: Final = "x-haltgate-overhead-ms"
FAILURE_HEADER: Final = "x-haltgate-failure-type"
CODE_HEADER: Final = "x-haltgate-code"
WARNING_HEADER: Final = "x-haltgate-budget-warning"
SHOULD_RETRY_HEADER: Final = "x-should-retry"
"""Read by the OpenAI and Anthropic SDKs before their own retry rules: ``false`` stops
them retrying a 409/429 that retrying cannot change (a halt, a budget used up for the
run, a denied tool), even in agents that do not use haltgate's SDK."""

FAILURE_STATUS: Final[Mapping[FailureType, int]] = {
    FailureType.EXHAUSTION: 429,
    FailureType.SAFETY: 403,
    FailureType.OVERRISK: 403,
    FailureType.STAGNATION: 409,
    FailureType.EXTERNAL: 423,
}

# Specific statuses for codes whose category status would be less precise.
CODE_STATUS: Final[Mapping[str, int]] = {
    "body_too_large": 413,
    "client_timeout": 408,
    "upstream_timeout": 504,
}

CATEGORY_STATUS: Final[Mapping[type[HaltgateError], int]] = {
    BadRequestError: 400,
    NotFoundError: 404,
    UpstreamError: 502,
    UnavailableError: 503,
}

# JSON-RPC error codes (implementation-defined server error range -32000..-32099), chosen
# to echo the HTTP status of the same refusal.
FAILURE_RPC_CODE: Final[Mapping[FailureType, int]] = {
    FailureType.EXHAUSTION: -32029,
    FailureType.SAFETY: -32003,
    FailureType.OVERRISK: -32003,
    FailureType.STAGNATION: -32009,
    FailureType.EXTERNAL: -32023,
}
RPC_PARSE_ERROR: Final = -32700
RPC_INVALID_REQUEST: Final = -32600
RPC_UPSTREAM_ERROR: Final = -32002
RPC_UNAVAILABLE: Final = -32053


def http_status(err: HaltgateError) -> int:
    """The HTTP status of an error (see the module table)."""
    if err.failure_type is not None:
        return FAILURE_STATUS[err.failure_type]
    if err.code in CODE_STATUS:
        return CODE_STATUS[err.code]
    for cls, status in CATEGORY_STATUS.items():
        if isinstance(err, cls):
            return status
    return 500


def error_object(err: HaltgateError, decision_id: str) -> dict[str, Any]:
    """The ``error`` object: type, code, message, decision_id, budget."""
    return {
        "type": err.type,
        "code": err.code,
        "message": err.message,
        "decision_id": decision_id,
        "budget": dict(err.budget) if err.budget else None,
    }


def error_body(err: HaltgateError, decision_id: str) -> bytes:
    """``{"error": {...}}`` as JSON bytes."""
    return orjson.dumps({"error": error_object(err, decision_id)})


def _rpc_code(err: HaltgateError) -> int:
    if err.failure_type is not None:
        return FAILURE_RPC_CODE[err.failure_type]
    if err.code == "invalid_json":
        return RPC_PARSE_ERROR
    if isinstance(err, BadRequestError):
        return RPC_INVALID_REQUEST
    if isinstance(err, UnavailableError):
        return RPC_UNAVAILABLE
    return RPC_UPSTREAM_ERROR


def jsonrpc_error_body(
    err: HaltgateError, decision_id: str, ids: tuple[Any, ...], batch: bool
) -> bytes:
    """A JSON-RPC error answer carrying the haltgate error in ``data``.

    One error object per request id of the message (a batch is refused as a whole); a
    message without any request id (unparsable, or only notifications) gets one object
    with ``id: null``, as JSON-RPC prescribes for errors that cannot be attributed.
    """
    data = error_object(err, decision_id)
    code = _rpc_code(err)
    objects = [
        {
            "jsonrpc": "2.0",
            "id": msg_id,
            "error": {"code": code, "message": err.message, "data": data},
        }
        for msg_id in (ids or (None,))
    ]
    return orjson.dumps(objects if batch and ids else objects[0])


def sse_error_event(err: HaltgateError, decision_id: str) -> bytes:
    """The final event written into a stream that haltgate cuts."""
    payload = orjson.dumps({"error": error_object(err, decision_id)})
    return b"event: error\ndata: " + payload + b"\n\n"


def error_response(
    err: HaltgateError,
    decision_id: str,
    *,
    rpc: bool = False,
    rpc_ids: tuple[Any, ...] = (),
    rpc_batch: bool = False,
    retry_after: float | None = None,
) -> web.Response:
    """The complete HTTP answer for a refusal or a failure.

    MCP calls (``rpc``) get a JSON-RPC error with HTTP 200, so MCP clients hand the
    refusal to the agent as an error of the call instead of failing the session; the
    failure type and code are also in headers for anything that looks at HTTP only.

    ``retry_after`` (seconds): when a period budget frees room again; sent as
    ``Retry-After``. A governance refusal without it is final until something changes
    (an operator reset, a new policy), so it says ``x-should-retry: false``.
    """
    headers = {DECISION_HEADER: decision_id, CODE_HEADER: err.code}
    if err.failure_type is not None:
        headers[FAILURE_HEADER] = err.failure_type.value
        if retry_after is None:
            headers[SHOULD_RETRY_HEADER] = "false"
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    if rpc:
        status = 200 if err.failure_type is not None else http_status(err)
        body = jsonrpc_error_body(err, decision_id, rpc_ids, rpc_batch)
    else:
        status = http_status(err)
        body = error_body(err, decision_id)
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)
