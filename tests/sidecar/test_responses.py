"""The error mapping is an interface: statuses, JSON bodies and JSON-RPC codes."""

from __future__ import annotations

import orjson
import pytest

from haltgate.governance.errors import (
    BadRequestError,
    DeniedError,
    NotFoundError,
    UnavailableError,
    UpstreamError,
)
from haltgate.governance.policy_base import FailureType
from haltgate.sidecar import responses as r


@pytest.mark.parametrize(
    ("failure", "status", "rpc"),
    [
        (FailureType.EXHAUSTION, 429, -32029),
        (FailureType.SAFETY, 403, -32003),
        (FailureType.OVERRISK, 403, -32003),
        (FailureType.STAGNATION, 409, -32009),
        (FailureType.EXTERNAL, 423, -32023),
    ],
)
def test_failure_types(failure: FailureType, status: int, rpc: int) -> None:
    err = DeniedError(
        "no",
        code="some_code",
        failure_type=failure,
        budget={"calls": {"used": 3, "reserved": 0, "limit": 3}},
    )
    assert r.http_status(err) == status
    body = orjson.loads(r.error_body(err, "d-1"))
    assert body == {
        "error": {
            "type": failure.value,
            "code": "some_code",
            "message": "no",
            "decision_id": "d-1",
            "budget": {"calls": {"used": 3, "reserved": 0, "limit": 3}},
        }
    }
    rpc_body = orjson.loads(r.jsonrpc_error_body(err, "d-1", (7,), batch=False))
    assert rpc_body["id"] == 7 and rpc_body["error"]["code"] == rpc
    assert rpc_body["error"]["data"] == body["error"]
    resp = r.error_response(err, "d-1", rpc=True, rpc_ids=(7,))
    assert resp.status == 200  # MCP denials reach the agent as the call's error
    assert resp.headers[r.FAILURE_HEADER] == failure.value


@pytest.mark.parametrize(
    ("err", "status"),
    [
        (BadRequestError("x", code="invalid_json"), 400),
        (BadRequestError("x", code="body_too_large"), 413),
        (BadRequestError("x", code="client_timeout"), 408),
        (NotFoundError("x", code="unknown_upstream"), 404),
        (UpstreamError("x", code="upstream_unreachable"), 502),
        (UpstreamError("x", code="upstream_timeout"), 504),
        (UnavailableError("x", code="audit_unavailable"), 503),
    ],
)
def test_other_errors(err: Exception, status: int) -> None:
    assert r.http_status(err) == status  # type: ignore[arg-type]


def test_batch_and_unattributable_jsonrpc_errors() -> None:
    err = BadRequestError("bad", code="invalid_json")
    single = orjson.loads(r.jsonrpc_error_body(err, "d", (), batch=False))
    assert single["id"] is None and single["error"]["code"] == -32700
    batch = orjson.loads(
        r.jsonrpc_error_body(
            DeniedError("no", code="tool_denied", failure_type=FailureType.SAFETY),
            "d",
            (1, "two"),
            batch=True,
        )
    )
    assert [m["id"] for m in batch] == [1, "two"]


def test_sse_error_event() -> None:
    event = r.sse_error_event(UpstreamError("cut", code="upstream_truncated"), "d")
    assert event.startswith(b"event: error\ndata: ") and event.endswith(b"\n\n")
    assert orjson.loads(event.split(b"data: ", 1)[1])["error"]["code"] == "upstream_truncated"


def test_messages_are_bounded() -> None:
    err = BadRequestError("x" * 10_000)
    assert len(err.message) <= 512
