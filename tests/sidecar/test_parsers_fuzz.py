"""Property and fuzz tests of the sidecar's parsers: no input makes them fail untyped."""

from __future__ import annotations

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from haltgate.governance.errors import BadRequestError
from haltgate.governance.policy import Upstream
from haltgate.governance.policy_base import Provider, RequestKind
from haltgate.governance.request import AgentIdentity
from haltgate.sidecar.classify import Classified, Target, classify
from haltgate.sidecar.connect import parse_connect_head
from haltgate.sidecar.sse import SSEEvent, SSEParser
from haltgate.sidecar.upstreams import ResolvedUpstream
from haltgate.sidecar.usage import Dialect, UsageReader

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

INT64 = st.integers(-(2**63), 2**63 - 1)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def _upstream(kind: RequestKind, provider: Provider | None = None) -> ResolvedUpstream:
    return ResolvedUpstream.from_spec(
        Upstream(name="u", url="http://h:1/base", kind=kind, provider=provider)
    )


def _target(kind: RequestKind, path: str) -> Target:
    up = _upstream(kind, Provider.OPENAI if kind is RequestKind.LLM else None)
    return Target("http", "h", 1, path, "", up)


@FAST
@given(
    events=st.lists(
        st.tuples(
            st.sampled_from(["message", "delta", "x y"]),
            st.text(
                alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
                max_size=30,
            ),
        ),
        max_size=8,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=10),
    crlf=st.booleans(),
)
def test_sse_chunking_does_not_matter(
    events: list[tuple[str, str]], cuts: list[int], crlf: bool
) -> None:
    nl = "\r\n" if crlf else "\n"
    stream = "".join(f"event: {e}{nl}data: {d}{nl}{nl}" for e, d in events).encode()
    points = sorted({min(c, len(stream)) for c in cuts})
    parser = SSEParser()
    got: list[SSEEvent] = []
    start = 0
    for p in [*points, len(stream)]:
        got.extend(parser.feed(stream[start:p]))
        start = p
    assert [(e.event, e.data) for e in got] == [(e, d) for e, d in events]


@FAST
@given(st.lists(st.binary(max_size=200), max_size=10))
def test_sse_parser_never_raises_and_stays_bounded(chunks: list[bytes]) -> None:
    parser = SSEParser(max_event_bytes=256)
    for chunk in chunks:
        for event in parser.feed(chunk):
            assert isinstance(event.data, str)
    assert len(parser._buf) <= 256


@FAST
@given(dialect=st.sampled_from(list(Dialect)), value=json_values, raw=st.binary(max_size=64))
def test_usage_reader_never_raises(dialect: Dialect, value: object, raw: bytes) -> None:
    reader = UsageReader(dialect, "m")
    reader.read_body(orjson.dumps(value))
    reader.read_body(raw)
    reader.read_event(SSEEvent("message", orjson.dumps(value).decode()))
    reader.read_event(SSEEvent("message", raw.decode("utf-8", "replace")))
    counts = reader.result(complete=False, input_estimate=3)
    assert counts.input_tokens >= 0 and counts.output_tokens >= 0 and counts.estimated


@FAST
@given(
    usage=st.fixed_dictionaries(
        {"prompt_tokens": st.integers(0, 10**6), "completion_tokens": st.integers(0, 10**6)}
    )
)
def test_openai_usage_read_exactly(usage: dict[str, int]) -> None:
    reader = UsageReader(Dialect.OPENAI_CHAT, None)
    reader.read_body(orjson.dumps({"model": "x", "usage": usage}))
    counts = reader.result(complete=True, input_estimate=0)
    assert (counts.input_tokens, counts.output_tokens) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    assert not counts.estimated and counts.model == "x"


@FAST
@given(
    kind=st.sampled_from([RequestKind.LLM, RequestKind.MCP, RequestKind.HTTP]),
    path=st.sampled_from(
        [
            "/base/v1/chat/completions",
            "/base/v1/messages",
            "/base/mcp",
            "/base/v1/responses",
            "/base/v1/embeddings",
            "/base/x",
        ]
    ),
    method=st.sampled_from(["POST", "GET", "DELETE"]),
    body=st.one_of(st.binary(max_size=120), json_values.map(orjson.dumps)),
)
def test_classify_is_total(kind: RequestKind, path: str, method: str, body: bytes) -> None:
    try:
        result = classify(method, _target(kind, path), body, AgentIdentity())
    except BadRequestError as e:
        assert e.code in {
            "invalid_json",
            "invalid_request",
            "invalid_jsonrpc",
            "jsonrpc_missing_id",
            "ambiguous_json",
            "mcp_method_unknown",
            "ambiguous_uri",
            "mcp_http_method",
        }
        return
    assert isinstance(result, Classified)
    # A body shaped like an LLM call is metered as one whatever the path (issue 15).
    assert result.view.kind in (kind, None) or (
        kind is RequestKind.HTTP and result.view.kind is RequestKind.LLM
    )


@FAST
@given(
    msgs=st.lists(
        st.fixed_dictionaries(
            {
                "jsonrpc": st.just("2.0"),
                "id": st.integers(0, 100) | st.text(max_size=5),
                "method": st.sampled_from(["tools/call", "tools/list", "ping"]),
                "params": st.fixed_dictionaries(
                    {
                        "name": st.text(min_size=1, max_size=8),
                        # lower-case keys: case-colliding ones are refused
                        "arguments": st.dictionaries(
                            st.text(alphabet="abcxyz_0", max_size=5), INT64
                        ),
                    }
                ),
            }
        ),
        min_size=1,
        max_size=5,
        unique_by=lambda m: repr(m["id"]),
    )
)
def test_mcp_batch_tools_and_ids(msgs: list[dict[str, object]]) -> None:
    result = classify(
        "POST", _target(RequestKind.MCP, "/base/mcp"), orjson.dumps(msgs), AgentIdentity()
    )
    calls = [m for m in msgs if m["method"] == "tools/call"]
    assert [t.name for t in result.view.tool_calls] == [
        m["params"]["name"]  # type: ignore[index]
        for m in calls
    ]
    assert list(result.rpc_ids) == [m["id"] for m in msgs]
    assert result.rpc_batch


@FAST
@given(st.binary(max_size=300))
def test_connect_head_parser_is_total(raw: bytes) -> None:
    try:
        req = parse_connect_head(raw)
    except BadRequestError as e:
        assert e.code == "malformed_request"
        return
    assert 0 < req.port < 65536 and req.host


def test_connect_head_examples() -> None:
    req = parse_connect_head(b"CONNECT API.Example.com.:443 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (req.host, req.port) == ("api.example.com", 443)
    req = parse_connect_head(b"CONNECT [::1]:8443 HTTP/1.1\r\n\r\n")
    assert (req.host, req.port) == ("::1", 8443)


def test_content_digest_ignores_ids_and_usage() -> None:
    def answer(ident: str, prompt_tokens: int) -> bytes:
        return orjson.dumps(
            {
                "id": ident,
                "created": 1,
                "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "same"}}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 1},
            }
        )

    digests = set()
    for ident, tokens in (("a", 1), ("b", 2)):
        reader = UsageReader(Dialect.OPENAI_CHAT, None)
        reader.read_body(answer(ident, tokens))
        digests.add(reader.content_digest)
    assert len(digests) == 1
    other = UsageReader(Dialect.OPENAI_CHAT, None)
    other.read_body(answer("c", 1).replace(b"same", b"different"))
    assert other.content_digest not in digests
