"""Error mapping (HTTP body, JSON-RPC, SSE, client exceptions), the admin client, signals."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest

from haltgate.governance.traffic_signals import (
    SignalTracker,
    request_fingerprint,
    result_fingerprint,
)
from haltgate.sdk.client import (
    AsyncSidecarClient,
    SidecarClient,
    base_url,
    budget_warnings,
    raise_for_response,
)
from haltgate.sdk.errors import (
    DeniedError,
    ExhaustionError,
    ExternalHaltError,
    HaltError,
    OverriskError,
    SafetyError,
    SidecarError,
    StagnationError,
    error_from_body,
    error_from_jsonrpc,
    error_from_sse_data,
    find_haltgate_error,
)
from haltgate.sdk.http_hooks import SSEReframer
from tests.sdk.conftest import ADMIN_TOKEN, SidecarFactory, Standins, budgets_policy


def body(type_: str, code: str, **extra: object) -> dict[str, object]:
    return {
        "error": {
            "type": type_,
            "code": code,
            "message": "m",
            "decision_id": "d-1",
            "budget": None,
            **extra,
        }
    }


@pytest.mark.parametrize(
    ("type_", "code", "cls", "terminal"),
    [
        ("EXHAUSTION", "tokens_exhausted", ExhaustionError, True),
        ("STAGNATION", "identical_retries", StagnationError, True),
        ("OVERRISK", "risk_exceeded", OverriskError, True),
        ("SAFETY", "unknown_model_price", DeniedError, False),
        ("SAFETY", "tool_denied", DeniedError, False),
        ("SAFETY", "emocore_exploration_exceeded", SafetyError, True),
        ("EXTERNAL", "external_halt", ExternalHaltError, True),
        ("unavailable", "audit_unavailable", SidecarError, False),
    ],
)
def test_error_types(type_: str, code: str, cls: type, terminal: bool) -> None:
    err = error_from_body(orjson.dumps(body(type_, code)), status=429)
    assert type(err) is cls
    assert err is not None and err.code == code and err.decision_id == "d-1"
    assert err.terminal is terminal
    assert isinstance(err, HaltError) is (type_.isupper())


def test_upstream_errors_are_not_haltgate_errors() -> None:
    openai_error = {"error": {"type": "invalid_request_error", "code": "bad", "message": "x"}}
    assert error_from_body(openai_error) is None
    assert error_from_body(b"not json") is None
    assert error_from_body(b"[1]") is None
    # An answer without haltgate's decision header is the upstream's, whatever its shape.
    assert error_from_body(body("EXHAUSTION", "x"), headers={"content-type": "json"}) is None


def test_budget_and_retry_after_parsed() -> None:
    b = body(
        "EXHAUSTION", "calls_exhausted", budget={"calls": {"used": 3, "reserved": 0, "limit": 3}}
    )
    err = error_from_body(
        b, status=429, headers={"X-Haltgate-Decision-Id": "d-1", "Retry-After": "30"}
    )
    assert err is not None and err.budget == {"calls": {"used": 3.0, "reserved": 0.0, "limit": 3.0}}
    assert err.retry_after == 30.0


def test_jsonrpc_and_sse() -> None:
    rpc = {
        "jsonrpc": "2.0",
        "id": 7,
        "error": {"code": -32003, "message": "m", "data": body("SAFETY", "tool_denied")["error"]},
    }
    assert isinstance(
        error_from_jsonrpc([{"jsonrpc": "2.0", "id": 6, "result": {}}, rpc]), DeniedError
    )
    assert (
        error_from_jsonrpc(
            {"jsonrpc": "2.0", "id": 1, "error": {"code": -1, "message": "tool's own"}}
        )
        is None
    )
    sse = orjson.dumps(body("EXHAUSTION", "tokens_exhausted"))
    assert isinstance(error_from_sse_data(sse), ExhaustionError)


def test_find_in_exception_chain() -> None:
    class FakeAPIError(Exception):  # the shape of openai.APIError, not the thing under test
        def __init__(self) -> None:
            super().__init__("429")
            self.body = body("EXHAUSTION", "cost_exhausted")["error"]

    try:
        try:
            raise FakeAPIError()
        except FakeAPIError as e:
            raise RuntimeError("framework wrapper") from e
    except RuntimeError as outer:
        found = find_haltgate_error(outer)
    assert isinstance(found, ExhaustionError) and found.code == "cost_exhausted"
    assert find_haltgate_error(ValueError("x")) is None


def test_raise_for_response() -> None:
    with pytest.raises(ExhaustionError):
        raise_for_response(
            429,
            {"x-haltgate-decision-id": "d"},
            orjson.dumps(body("EXHAUSTION", "calls_exhausted")),
        )
    raise_for_response(200, {"x-haltgate-decision-id": "d"}, b'{"jsonrpc": "2.0", "id": 1}')
    raise_for_response(500, {}, b'{"error": {"type": "server_error"}}')


def test_helpers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HALTGATE_URL", raising=False)
    assert base_url("openai", "v1") == "http://127.0.0.1:17000/openai/v1"
    assert base_url("mcp", url="http://h:1/") == "http://h:1/mcp"
    assert budget_warnings({"X-Haltgate-Budget-Warning": "calls, cost_usd"}) == (
        "calls",
        "cost_usd",
    )
    assert budget_warnings({}) == ()


def test_sse_reframer_drops_only_the_cut_fragment() -> None:
    stream = (
        b'data: {"a": 1}\n\ndata: {"b": 2'
        + b"\n\n"
        + b'event: error\ndata: {"error": {"type": "EXHAUSTION"}}\n\n'
    )
    framer = SSEReframer()
    # Fed in awkward pieces: events are only emitted whole.
    out = b"".join(framer.feed(stream[i : i + 7]) for i in range(0, len(stream), 7))
    out += framer.close()
    assert out == b'data: {"a": 1}\n\nevent: error\ndata: {"error": {"type": "EXHAUSTION"}}\n\n'
    assert SSEReframer().feed(b"data: [DONE]\n\n") == b"data: [DONE]\n\n"


def test_signal_tracker() -> None:
    t = SignalTracker(window=4)
    fp = request_fingerprint("llm", "m", {"q": 1})
    first = t.observe(fp, target="m", ok=True, result=result_fingerprint("a"))
    assert (first.reward, first.novelty, first.difficulty) == (1.0, 1.0, 0.0)
    again = t.observe(fp, target="m", ok=True, result=result_fingerprint("a"))
    assert (again.reward, again.novelty, again.repeat_rate) == (0.0, 0.0, 0.5)
    failed = t.observe(fp, target="m", ok=False)
    assert failed.difficulty == 1.0 and failed.no_progress_streak == 2
    assert failed.error_rate == pytest.approx(1 / 3)
    assert (
        request_fingerprint("llm", "m", {"q": 1}) == fp != request_fingerprint("llm", "m", {"q": 2})
    )
    with pytest.raises(ValueError):
        SignalTracker(window=0)


async def test_self_view_clients(sidecar_factory: SidecarFactory, standins: Standins) -> None:
    # The agent's own view on the explicit port: no token.
    sc = await sidecar_factory(budgets_policy({"calls": {"limit": 2}}))
    client = AsyncSidecarClient(sc.explicit)
    assert not await client.halted()
    assert (await client.remaining())["calls"] == 2
    status = await client.status()
    assert status["halted"] is None and status["run_id"]
    assert "token" not in orjson.dumps(status).decode().lower()
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            sc.explicit + "/llm/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1},
        ) as r,
    ):
        assert r.status == 200
    budgets = await client.budgets()
    assert (budgets["calls"].used, budgets["calls"].remaining) == (1, 1)
    # The synchronous client (in a thread: the sidecar serves from this loop).
    sync = SidecarClient(sc.explicit)
    assert (await asyncio.to_thread(sync.remaining))["calls"] == 1
    # Halted from outside (admin API, with its token): the view says so.
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            sc.admin + "/halt",
            json={"message": "stop"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as r,
    ):
        assert r.status == 200
    assert await client.halted()
    assert (await client.status())["halted"]["failure_type"] == "EXTERNAL"


async def test_self_view_is_read_only(sidecar_factory: SidecarFactory, standins: Standins) -> None:
    sc = await sidecar_factory(budgets_policy({"calls": {"limit": 2}}))
    async with aiohttp.ClientSession() as s:
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            async with s.request(
                method, sc.explicit + "/haltgate/v1/self", json={"halted": None}
            ) as r:
                assert r.status == 405
                assert (await r.json())["error"]["code"] == "read_only"
    assert not await AsyncSidecarClient(sc.explicit).halted()
    assert standins.received("llm").requests == []  # never forwarded anywhere


async def test_unreachable_sidecar_is_a_retryable_error() -> None:
    with pytest.raises(SidecarError) as info:
        await AsyncSidecarClient("http://127.0.0.1:1").status()
    assert info.value.code == "sidecar_unreachable" and info.value.retryable
