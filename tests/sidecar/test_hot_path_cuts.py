"""The governed path's shortcuts (docs/sidecar.md, "Where it stands (end of session 7)"):
each gives what the longer way gives, and each fails here when it does not.

- a reservation's two model bounds from one price lookup (``Budget.model_bounds``);
- what an LLM endpoint's path says (dialect, deployment) kept by path and provider;
- a body's output cap and choices read once (``llm_body.output_bounds``);
- the call's fingerprint in one digest;
- the upstream client's route (origin, request target) kept by URL;
- the pool stage entered only with work: a chain header is still checked without a pool.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest
from multidict import CIMultiDict

from haltgate.governance import llm_body
from haltgate.governance.errors import BadRequestError
from haltgate.governance.governor import Governor, make_engine
from haltgate.governance.policy_base import Provider
from haltgate.sidecar import classify as classify_module
from haltgate.sidecar.budget import Budget
from haltgate.sidecar.classify import llm_dialect
from haltgate.sidecar.upstream_pool import _ROUTE_URL_MAX, UpstreamClient
from haltgate.sidecar.upstream_response import UpstreamTimeout
from haltgate.sidecar.upstream_target import split_url
from tests.sidecar.conftest import SidecarFactory, Standins
from tests.sidecar.raw_upstream import raw_upstream, send
from tests.sidecar.test_one_reading import CHAT, code_of, policy, raw_http
from tests.unit.governance.conftest import make_spec

# ------------------------------------------------------------------- model bounds


@pytest.mark.parametrize(
    "model", ["gpt-4o-mini", "gpt-4o-2024-08-06", "claude-3-5-sonnet-latest", "in-house", None]
)
def test_model_bounds_are_the_two_lookups(model: str | None) -> None:
    spec = make_spec(
        {"tokens": {"limit": 10**9}},
        pricing={
            "unknownModel": "default",
            "default": {"input": 1.0, "output": 2.0, "contextWindow": 50_000},
        },
    )
    budget = Budget(Governor(make_engine(spec)))
    assert budget.model_bounds(model) == (
        budget.max_output_tokens(model),
        budget.context_window(model),
    )
    if model == "gpt-4o-mini":  # a known model: both bounds from the shipped table
        assert budget.model_bounds(model) == (16_384, 128_000)


def test_model_bounds_without_an_engine() -> None:
    assert Budget(None).model_bounds("gpt-4o-mini") == (None, None)


# --------------------------------------------------------------- endpoint facts


@pytest.mark.parametrize(
    ("path", "provider"),
    [
        ("/v1/chat/completions", Provider.OPENAI),
        ("/v1/messages", Provider.ANTHROPIC),
        ("/v1/messages", Provider.OPENAI),  # not Anthropic's: no dialect by path
        ("/openai/deployments/my%2Dgpt/chat/completions", None),
        ("/v1/Embeddings/", None),
        ("/v1/models", None),
    ],
)
def test_endpoint_facts_are_those_of_the_path(path: str, provider: Provider | None) -> None:
    classify_module._endpoints.clear()
    want = (llm_dialect(path, provider), llm_body.path_deployment(path))
    assert classify_module._endpoint(path, provider) == want
    assert classify_module._endpoint(path, provider) == want  # kept: the same again
    assert classify_module._endpoints[(path, provider)] == want


def test_endpoint_facts_are_bounded() -> None:
    classify_module._endpoints.clear()
    long = "/v1/" + "a" * classify_module._ENDPOINT_PATH_MAX + "/chat/completions"
    assert classify_module._endpoint(long, None)[0] is not None
    assert not classify_module._endpoints  # long paths are not kept
    for i in range(classify_module._ENDPOINT_CACHE_MAX + 5):
        classify_module._endpoint(f"/v{i}/chat/completions", None)
    assert len(classify_module._endpoints) <= classify_module._ENDPOINT_CACHE_MAX


# ---------------------------------------------------------------- output bounds


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"max_tokens": 5},
        {"max_tokens": 5, "max_completion_tokens": 9, "n": 3},
        {"n": 4},
        {"best_of": 2, "n": 3, "max_output_tokens": 7},
    ],
)
def test_output_bounds_are_the_cap_and_the_choices(body: dict[str, Any]) -> None:
    assert llm_body.output_bounds(body) == (llm_body.output_cap(body), llm_body.choices(body))


def test_output_bounds_check_the_caps_first() -> None:
    with pytest.raises(BadRequestError, match="max_tokens"):
        llm_body.output_bounds({"max_tokens": "x", "n": -1})
    with pytest.raises(BadRequestError, match="n must not be negative"):
        llm_body.output_bounds({"n": -1})  # validated without a cap too


# ------------------------------------------------------------------ fingerprint


async def test_fingerprint_is_the_digest_of_method_url_and_body(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory(policy())
    body = orjson.dumps(CHAT)
    status, _ = await raw_http(sc.explicit, "POST", "/llm/v1/chat/completions", body)
    assert status == 200
    intent = next(r for r in sc.audit.records if r.phase == "intent")
    url = f"{standins.llm}/v1/chat/completions"
    h = hashlib.sha256(f"POST {url}\n".encode())
    h.update(body)  # the value as it has always been computed (stagnation, replay)
    assert intent.args_digest == h.hexdigest()


# -------------------------------------------------------------- upstream routes


def test_routes_are_the_split_urls_and_bounded() -> None:
    client = UpstreamClient(limit=1)
    urls = [
        "http://127.0.0.1:9000/v1/chat/completions?x=1",
        "https://api.example.com",
        "http://[::1]:8080?q",
    ]
    for url in urls:
        origin, target = client._route(url)
        prefix, want = split_url(url)
        assert target == want
        assert client._routes[url] == (origin, target)
        assert client._origins[prefix] is origin
    long = "http://127.0.0.1:9000/" + "a" * _ROUTE_URL_MAX
    assert client._route(long)[1] == split_url(long)[1]
    assert long not in client._routes
    with pytest.raises(ValueError, match="absolute"):
        client._route("/relative")


async def test_answer_headers_are_those_added_one_by_one() -> None:
    head = (
        b"HTTP/1.1 200 Fine\r\nSet-Cookie: a=1\r\nX-Latin: caf\xe9\r\nset-cookie: b=2\r\n"
        b"Content-Length: 2\r\nLink: <x>\r\n\r\nhi"
    )
    client = UpstreamClient(limit=1)
    try:
        async with raw_upstream(send(head)) as up:
            resp = await client.request(
                "GET", f"http://127.0.0.1:{up.port}/", [], b"", UpstreamTimeout(5, 5)
            )
            try:
                assert await resp.read() == b"hi"
            finally:
                resp.release()
    finally:
        await client.close()
    want: CIMultiDict[str] = CIMultiDict()
    for line in head.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b": ")
        want.add(name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
    assert list(resp.headers.items()) == list(want.items())
    assert resp.headers.getall("Set-Cookie") == ["a=1", "b=2"]
    assert resp.headers["X-Latin"] == "caf\udce9"  # the byte as it came, not re-read
    assert resp.reason == "Fine"


# ------------------------------------------------------------------------- pool


async def test_a_chain_header_is_checked_without_a_pool(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory(policy())
    body = orjson.dumps(CHAT)
    status, payload = await raw_http(
        sc.explicit,
        "POST",
        "/llm/v1/chat/completions",
        body,
        headers={"x-haltgate-chain": "not a chain"},
    )
    assert (status, code_of(payload)) == (400, "invalid_chain_header"), payload
    assert not standins.received("llm").requests
    status, _ = await raw_http(sc.explicit, "POST", "/llm/v1/chat/completions", body)
    assert status == 200  # without the header: the stage has nothing to do


# ------------------------------------------------------------ enum values read once


def test_kind_labels_and_payload_modes_are_the_plain_values() -> None:
    from haltgate.governance.policy_base import PayloadCapture, RequestKind
    from haltgate.sidecar.call import KIND_LABELS
    from haltgate.sidecar.decision_audit import _PAYLOAD_MODES

    assert KIND_LABELS[None] == "unknown"
    for kind in RequestKind:
        assert KIND_LABELS[kind] == kind.value and type(KIND_LABELS[kind]) is str
    for mode in PayloadCapture:
        assert _PAYLOAD_MODES[mode] == mode.value and type(_PAYLOAD_MODES[mode]) is str


async def test_records_name_the_kind_and_payload_mode_as_before(
    sidecar_factory: SidecarFactory,
) -> None:
    sc = await sidecar_factory(policy())
    status, _ = await raw_http(sc.explicit, "POST", "/llm/v1/chat/completions", orjson.dumps(CHAT))
    assert status == 200
    records = [r for r in sc.audit.records if r.decision_id == sc.audit.records[-1].decision_id]
    assert {r.phase for r in records} == {"intent", "outcome"}
    for r in records:
        assert (r.kind, r.payload_mode) == ("llm", "none")
        assert type(r.kind) is str and type(r.payload_mode) is str
        replay = r.replay or {}
        if r.phase == "intent":  # the Reserve event names the kind the same way
            assert replay["budget"]["event"]["kind"] == "llm"


# ------------------------------------------------------------- content digest


def _ids_dropped_everywhere(value: Any) -> Any:
    """The reading of the content digest: every ``id`` key dropped, at any depth."""
    if isinstance(value, list):
        return [_ids_dropped_everywhere(v) for v in value]
    if isinstance(value, dict):
        return {k: _ids_dropped_everywhere(v) for k, v in value.items() if k != "id"}
    return value


@pytest.mark.parametrize(
    "value",
    [
        [{"index": 0, "id": "x", "message": {"role": "assistant", "content": "hi"}}],
        [
            {
                "message": {
                    "tool_calls": [{"id": "call_1", "function": {"name": "f", "arguments": "{}"}}],
                    "content": None,
                },
                "logprobs": {"content": [{"token": "a", "top": [1, 2, [3, {"id": 4}]]}]},
            }
        ],
        ["a", 1, None, 2.5, True, [], {}],
        {"id": "top", "nested": {"id": "inner", "keep": [{"id": 1, "v": 2}]}},
        "scalar",
    ],
)
def test_content_without_ids_drops_every_id(value: Any) -> None:
    from haltgate.sidecar.usage import _without_ids

    assert _without_ids(value) == _ids_dropped_everywhere(value)
    assert orjson.dumps(_without_ids(value)) == orjson.dumps(_ids_dropped_everywhere(value))
