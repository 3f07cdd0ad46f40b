"""The parts of "one reading of every request" (issue 15) on their own: canonical paths,
strict JSON, LLM body bounds and model names. The sidecar end to end is in
tests/sidecar/test_one_reading.py."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from haltgate.governance import llm_body, strict_json
from haltgate.governance.canonical import canonical_path, check_meaning_overrides
from haltgate.governance.errors import BadRequestError

FAST = settings(max_examples=300, deadline=None)

# ---------------------------------------------------------------------- canonical paths

SEGMENT_CHARS = st.sampled_from(
    [
        *"abcAZ09-._~!$&'()*+,=:@",
        "%41",
        "%61",
        "%7e",
        "%7E",
        "%20",
        "%2f",
        "%2F",
        "%5c",
        "%00",
        "%25",
        "%2e",
        "%3B",
        ";",
        "\\",
        "é",
        "%zz",
        "%4",
    ]
)
PATHS = st.lists(st.lists(SEGMENT_CHARS, max_size=6).map("".join), min_size=1, max_size=5).map(
    lambda segs: "/" + "/".join(segs)
)


@FAST
@given(PATHS, st.booleans())
def test_canonical_path_has_one_reading(raw: str, parameters: bool) -> None:
    try:
        cp = canonical_path(raw, parameters=parameters)
    except BadRequestError as e:
        assert e.code in ("ambiguous_path", "invalid_path")
        return
    # Canonical is a fixed point, and means what the raw path meant once decoded.
    assert canonical_path(cp.forward, parameters=parameters) == cp
    assert unquote(cp.forward) == unquote(raw)
    for bad in ("%2F", "%5C", "%00", "\\", "//"):
        assert bad not in cp.forward.upper()
    segments = unquote(cp.match).split("/")
    assert "." not in segments and ".." not in segments
    assert ";" not in cp.match or "%3B" in cp.forward.upper()
    if not parameters:
        assert cp.match == cp.forward


@pytest.mark.parametrize(
    ("raw", "forward"),
    [
        ("/v1/chat/completions", "/v1/chat/completions"),
        ("/v1/chat/%63ompletions", "/v1/chat/completions"),
        ("/a/%7euser/%41", "/a/~user/A"),
        ("/a%20b/%c3%a9", "/a%20b/%C3%A9"),
        ("/caf\u00e9", "/caf%C3%A9"),
        ("/x/", "/x/"),
    ],
)
def test_canonical_path_examples(raw: str, forward: str) -> None:
    assert canonical_path(raw).forward == forward


@pytest.mark.parametrize(
    "raw",
    [
        "/a//b",
        "/a%2Fb",
        "/a%5cb",
        "/a%00",
        "/a%0d%0a",
        "/a\\b",
        "/a%252F",
        "/%25a%41",
        "/a;b",
        "/a%zz",
        "x/y",
        "/a%7F",
        "/api/admin#x",
        "/a#/b",
    ],
)
def test_ambiguous_paths_refused(raw: str) -> None:
    with pytest.raises(BadRequestError) as e:
        canonical_path(raw)
    assert e.value.code == "ambiguous_path"


def test_meaning_overrides() -> None:
    from multidict import CIMultiDict

    check_meaning_overrides(CIMultiDict({"Accept": "x"}), "a=1&method=x", "", b"")
    for headers in ({"X-HTTP-Method-Override": "GET"}, {"x-original-url": "/admin"}):
        with pytest.raises(BadRequestError) as e:
            check_meaning_overrides(CIMultiDict(headers), "", "", b"")
        assert e.value.code == "meaning_override"
    with pytest.raises(BadRequestError):
        check_meaning_overrides(CIMultiDict(), "a=1&_METHOD=DELETE", "", b"")
    with pytest.raises(BadRequestError):
        check_meaning_overrides(
            CIMultiDict(), "", "application/x-www-form-urlencoded", b"a=1&_method=DELETE"
        )


# ---------------------------------------------------------------------- strict JSON

KEYS = st.text(alphabet=st.sampled_from(list('aAbBkKsS_:"\\\u212a\u017f\u00e9')), max_size=4)
SCALARS = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=8)


def _distinct(d: dict[str, Any]) -> bool:
    return len({k.casefold() for k in d}) == len(d)


VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4).filter(_distinct)
    ),
    max_leaves=20,
)
DUMPS = [
    lambda v: json.dumps(v).encode(),
    lambda v: json.dumps(v, ensure_ascii=False, separators=(",", ":")).encode(),
    lambda v: json.dumps(v, indent=2).encode(),
]


@FAST
@given(st.dictionaries(KEYS, VALUES, max_size=5).filter(_distinct), st.sampled_from(DUMPS))
def test_unambiguous_json_is_read_as_orjson_reads_it(value: dict[str, Any], dump: Any) -> None:
    assert strict_json.loads(dump(value)) == value


def _raw(pairs: list[tuple[str, Any]]) -> bytes:
    return ("{" + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in pairs) + "}").encode()


@FAST
@given(
    st.dictionaries(KEYS, SCALARS, min_size=1, max_size=4).filter(_distinct),
    st.integers(0, 3),
    SCALARS,
    st.booleans(),
)
def test_duplicate_key_refused_at_any_depth(
    value: dict[str, Any], pick: int, other: Any, nest: bool
) -> None:
    pairs = list(value.items())
    key = pairs[pick % len(pairs)][0]
    raw = _raw([*pairs, (key, other)])
    if nest:
        raw = b'{"outer":[1,' + raw + b"]}"
    with pytest.raises(BadRequestError) as e:
        strict_json.loads(raw, nested=False)
    assert e.value.code == "ambiguous_json"


@pytest.mark.parametrize(
    ("a", "b"), [("model", "Model"), ("kind", "\u212aind"), ("stream", "\u017ftream"), ("x", "X")]
)
def test_case_collisions_refused(a: str, b: str) -> None:
    raw = _raw([(a, 1), (b, 2)])
    for wrapped in (raw, b'{"p":{"q":' + raw + b"}}"):
        with pytest.raises(BadRequestError) as e:
            strict_json.loads(wrapped)
        assert e.value.code == "ambiguous_json"
    # LLM bodies (nested=False): the top level only; nested values stay visible to
    # guardrails under both keys.
    with pytest.raises(BadRequestError):
        strict_json.loads(raw, nested=False)
    assert strict_json.loads(b'{"p":{"q":' + raw + b"}}", nested=False)


def test_escaped_colons_do_not_hide_a_duplicate() -> None:
    raw = b'{"a":"\\u003a","a":1}'
    with pytest.raises(BadRequestError):
        strict_json.loads(raw)
    assert strict_json.loads(b'{"a":"\\u003a","b":"x"}') == {"a": ":", "b": "x"}


@FAST
@given(
    st.dictionaries(KEYS, SCALARS, min_size=1, max_size=4).filter(_distinct),
    st.integers(0, 3),
    SCALARS,
    st.booleans(),
    st.sampled_from(DUMPS),
)
def test_repeats_a_key_sees_what_the_refusal_sees(
    value: dict[str, Any], pick: int, other: Any, nest: bool, dump: Any
) -> None:
    """The answer side's test (no refusal, a bool) agrees with the request side's."""
    plain = dump(value)
    assert not strict_json.repeats_a_key(plain, json.loads(plain))
    assert not strict_json.repeats_a_key(plain.decode(), json.loads(plain))
    pairs = list(value.items())
    raw = _raw([*pairs, (pairs[pick % len(pairs)][0], other)])
    if nest:
        raw = b'{"outer":[1,' + raw + b"]}"
    assert strict_json.repeats_a_key(raw, json.loads(raw))
    assert strict_json.repeats_a_key(raw.decode(), json.loads(raw))


def test_repeats_a_key_through_escaped_colons_and_unreadable_text() -> None:
    raw = b'{"a":"\\u003a","a":1}'
    assert strict_json.repeats_a_key(raw, json.loads(raw))
    clean = b'{"a":"\\u003a","b":"x"}'
    assert not strict_json.repeats_a_key(clean, json.loads(clean))
    # A lone surrogate: orjson cannot write the parse back, so the exact pass decides.
    lone = '{"s": "\ud800", "a": 1}'
    assert not strict_json.repeats_a_key(lone, json.loads(lone))
    lone_repeated = '{"s": "\ud800", "a": 1, "a": 2}'
    assert strict_json.repeats_a_key(lone_repeated, json.loads(lone_repeated))


def test_require_exact_fields() -> None:
    strict_json.require_exact_fields({"model": 1, "Other": 2}, {"model"}, "LLM request")
    with pytest.raises(BadRequestError) as e:
        strict_json.require_exact_fields({"MODEL": 1}, {"model"}, "LLM request")
    assert "'MODEL'" in e.value.message


# ---------------------------------------------------------------------- LLM bodies


def test_output_cap_is_the_largest_times_choices() -> None:
    assert llm_body.output_cap({"max_completion_tokens": 1, "max_tokens": 999}) == 999
    assert llm_body.output_cap({"max_output_tokens": 7, "n": 3}) == 21
    assert llm_body.output_cap({"n": 3}) is None and llm_body.choices({"n": 3}) == 3
    for bad in (
        {"max_tokens": "5"},
        {"max_tokens": 1.5},
        {"max_tokens": True},
        {"max_tokens": -1},
        {"max_tokens": 1, "n": "2"},
    ):
        with pytest.raises(BadRequestError):
            llm_body.output_cap(bad)


@pytest.mark.parametrize(
    ("body", "ref"),
    [
        ({"previous_response_id": "r"}, "previous_response_id"),
        ({"conversation": {"id": "c"}}, "conversation"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"tools": [{"type": "function"}, {"type": "web_search_preview"}]}, "tools[1].type"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
                    }
                ]
            },
            "image_url",
        ),
        ({"input": [{"content": [{"type": "input_file", "File_Id": "f"}]}]}, "File_Id"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "id"),
        (
            {
                "messages": [
                    {
                        "content": [
                            {
                                "type": "document",
                                "source": {
                                    "type": "base64",
                                    "media_type": "application/pdf",
                                    "data": "AA",
                                },
                            }
                        ]
                    }
                ]
            },
            "source",
        ),
        (
            {
                "messages": [
                    {"content": [{"type": "image", "source": {"type": "url", "url": "https://x"}}]}
                ]
            },
            "source",
        ),
    ],
)
def test_context_references(body: dict[str, Any], ref: str) -> None:
    found, _ = llm_body.context_reference({"model": "m", **body})
    assert found is not None and found.startswith(ref)


def test_inline_images_counted_not_referenced() -> None:
    body = {
        "model": "m",
        "messages": [
            {
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "AA"},
                    },
                    {"type": "text", "text": "file_id image_url"},
                ]
            }
        ],
    }
    assert llm_body.context_reference(body) == (None, 2)
    assert llm_body.context_reference({"model": "m", "input": "hi"}) == (None, 0)


@pytest.mark.parametrize(
    ("model", "form"),
    [
        ("GPT-5", "gpt-5"),
        (" gpt-5 ", "gpt-5"),
        ("openai/gpt-5", "gpt-5"),
        ("OpenAI/GPT-4o-2024-08-06", "gpt-4o"),
    ],
)
def test_model_forms(model: str, form: str) -> None:
    assert form in llm_body.model_forms(model)


@pytest.mark.parametrize(
    ("arguments", "steps"),
    [
        ({"Path": "/etc/shadow"}, ("path",)),
        ({"opts": {"MODE": "rw"}}, ("opts", "mode")),
    ],
)
def test_argument_key_in_another_case_is_ambiguous(
    arguments: dict[str, Any], steps: tuple[str, ...]
) -> None:
    # A Go tool decoding into a struct reads `Path` as `path`; the constraint would miss it.
    from haltgate.governance.tool_arguments import lookup_json_path

    with pytest.raises(BadRequestError) as e:
        lookup_json_path(arguments, steps)
    assert e.value.code == "ambiguous_json"
    assert lookup_json_path({"path": "/tmp/x"}, ("path",)) == "/tmp/x"


@pytest.mark.parametrize(
    ("path", "deployment"),
    [
        ("/openai/deployments/gpt-5/chat/completions", "gpt-5"),
        ("/Deployments/my%20dep/chat/completions", "my dep"),
        ("/v1/chat/completions", None),
        ("/deployments/", None),
    ],
)
def test_deployment_named_by_the_path(path: str, deployment: str | None) -> None:
    assert llm_body.path_deployment(path) == deployment


@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}',
        b'{"method":"tools\\/call"}',  # no jsonrpc (lenient servers do not check), escaped '/'
        b'{"m\\u0065thod":"Tools/Call"}',  # escaped key, other case
        b'[{"METHOD":"resources/read"}]',
    ],
)
def test_mcp_work_to_a_non_mcp_upstream_is_refused(body: bytes) -> None:
    from haltgate.sidecar.classify import _refuse_mcp_in_disguise

    with pytest.raises(BadRequestError) as e:
        _refuse_mcp_in_disguise(body)
    assert e.value.code == "mcp_in_disguise"


@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc":"2.0","id":1,"method":"eth_call"}',
        b'{"method":"GET"}',
        b'{"a":"b"}',
        b"not json",
    ],
)
def test_other_json_to_a_non_mcp_upstream_passes(body: bytes) -> None:
    from haltgate.sidecar.classify import _refuse_mcp_in_disguise

    _refuse_mcp_in_disguise(body)  # raises on a refusal
