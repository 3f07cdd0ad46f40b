"""The scan path's shortcuts give what the plain code gives: each fast path is compared with
a reference (the code it replaced, kept here, or the detector with its prefilters off) on
generated inputs, and each memo is checked to answer as a fresh scan would."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from haltgate.governance.guardrails import answer_json
from haltgate.governance.guardrails.answer_json import NOT_PARSED, scan_answer_json
from haltgate.governance.guardrails.base import ScanResult
from haltgate.governance.guardrails.json_strings import (
    _AGENT_FIELDS,
    _AGENT_ROLES,
    _MAX_JSON_DEPTH,
    _TOOL_KEYS,
    JsonString,
    _escape_pointer,
    _is_label,
    _is_tool_result,
    collect_strings,
    is_label,
    iter_strings,
)
from tests.guardrails.conftest import make_guardrails

# ---------------------------------------------------------------- references (old code)


def _reference_strings(
    obj: Any, pointer: str, depth: int = 0, *, trusted: bool, tool_result: bool = False
) -> Iterator[JsonString]:
    """`iter_strings` as it was written before the list walk (nested generators)."""
    if depth > _MAX_JSON_DEPTH:
        raise ValueError("JSON document nested too deeply")
    if isinstance(obj, str):
        yield JsonString(pointer, obj, trusted, tool_result)
    elif isinstance(obj, dict):
        role = obj.get("role")
        inner = trusted or (isinstance(role, str) and role in _AGENT_ROLES)
        inner_tool = tool_result or _is_tool_result(obj)
        for k, v in obj.items():
            key_trusted = inner or (depth == 0 and k in _AGENT_FIELDS)
            if isinstance(v, str) and isinstance(k, str) and _is_label(k, v):
                yield JsonString(
                    f"{pointer}/{_escape_pointer(k)}",
                    v,
                    key_trusted and not inner_tool,
                    inner_tool or k in _TOOL_KEYS,
                    True,
                )
                continue
            yield from _reference_strings(
                v,
                f"{pointer}/{_escape_pointer(str(k))}",
                depth + 1,
                trusted=key_trusted and not inner_tool,
                tool_result=inner_tool or k in _TOOL_KEYS,
            )
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            yield from _reference_strings(
                v, f"{pointer}/{i}", depth + 1, trusted=trusted, tool_result=tool_result
            )


def _reference_expand(obj: Any, inner: dict[str, Any], depth: int) -> Any:
    """`answer_json._expand` as it was written before copying only what changed."""
    if isinstance(obj, str):
        if depth >= 2:
            return obj
        parsed = inner[obj] if obj in inner else answer_json._embedded_json(obj)
        if parsed is NOT_PARSED:
            return obj
        inner[obj] = parsed
        return _reference_expand(parsed, inner, depth + 1)
    if isinstance(obj, dict):
        items = {k: _reference_expand(v, inner, depth) for k, v in obj.items()}
        return obj if all(items[k] is v for k, v in obj.items()) else items
    if isinstance(obj, list):
        out = [_reference_expand(v, inner, depth) for v in obj]
        return obj if all(a is b for a, b in zip(out, obj, strict=True)) else out
    return obj


# ---------------------------------------------------------------- generated documents

_WORDS = st.sampled_from(
    [
        "role",
        "type",
        "id",
        "call_id",
        "tool_call_id",
        "system",
        "developer",
        "user",
        "assistant",
        "tool",
        "function",
        "tool_result",
        "function_call_output",
        "document",
        "instructions",
        "functionResponse",
        "content",
        "a/b",
        "x~y",
        "call_1",
        "toolu_01A0",
        "ignore_all_rules",
        "reveal_secret_1",
        "Summarise the report",
        "",
        "short",
    ]
)
_TEXT = st.one_of(_WORDS, st.text(max_size=12))
_JSON_TEXT = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False), _TEXT
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(_TEXT, children, max_size=4),
    ),
    max_leaves=24,
)
_DOCS = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), _TEXT),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(_TEXT, children, max_size=5),
        # strings holding JSON (the answer scan expands them)
        _JSON_TEXT.map(lambda d: orjson.dumps(d).decode()),
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=_DOCS, trusted=st.booleans(), tool=st.booleans())
def test_string_walk_matches_the_generator_walk(doc: Any, trusted: bool, tool: bool) -> None:
    expected = list(_reference_strings(doc, "/p", 1, trusted=trusted, tool_result=tool))
    assert list(iter_strings(doc, "/p", 1, trusted=trusted, tool_result=tool)) == expected
    top = list(_reference_strings(doc, "", trusted=False))
    for n in (0, 6):
        assert collect_strings(doc, min_chars=n) == [s for s in top if len(s.value) >= n]


_SHAPED = st.fixed_dictionaries(
    {},
    optional={
        "role": st.sampled_from(["tool", "function", "ipython", "system", "developer", "user"]),
        "type": st.sampled_from(
            [
                "tool_result",
                "mcp_tool_result",
                "function_call_output",
                "document",
                "search_result",
                "text",
                "message",
            ]
        ),
        "content": st.sampled_from(["Summarise the report", ["a longer text", {"x": "y"}]]),
        "functionResponse": st.just({"output": "the tool said so"}),
    },
)


@settings(max_examples=300, deadline=None)
@given(doc=st.lists(st.one_of(_SHAPED, st.dictionaries(_TEXT, _SHAPED, max_size=3)), max_size=4))
def test_string_walk_reads_roles_and_types_as_the_generator_walk(doc: Any) -> None:
    """Messages and blocks of every role and type that mark a tool result or the agent's
    own text (fails when a document type or a tool role is left out of the walk)."""
    top = list(_reference_strings(doc, "", trusted=False))
    assert collect_strings(doc) == top


def test_string_walk_depth_bound_is_the_same() -> None:
    for depth, leaf in ((_MAX_JSON_DEPTH, 1), (_MAX_JSON_DEPTH + 1, None), (_MAX_JSON_DEPTH, [])):
        doc: Any = leaf
        for _ in range(depth):
            doc = [doc]
        outcomes = []
        for walk in (
            lambda d: list(_reference_strings(d, "", trusted=False)),
            lambda d: collect_strings(d),
        ):
            try:
                walk(doc)
                outcomes.append("ok")
            except ValueError:
                outcomes.append("too deep")
        assert outcomes[0] == outcomes[1], (depth, leaf, outcomes)


@settings(max_examples=300, deadline=None)
@given(key=_WORDS, value=_TEXT)
def test_label_memo_answers_as_the_rule(key: str, value: str) -> None:
    assert is_label(key, value) == _is_label(key, value)
    assert is_label(key, value) == _is_label(key, value)  # the second time from the memo


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=_DOCS)
def test_expand_matches_the_copying_expand(doc: Any) -> None:
    got_inner: dict[str, Any] = {}
    ref_inner: dict[str, Any] = {}
    got = answer_json._expand(doc, got_inner, 0)
    ref = _reference_expand(doc, ref_inner, 0)
    assert got == ref
    assert (got is doc) == (ref is doc)
    assert got_inner == ref_inner


def _reference_keys_and_blobs(obj: Any) -> tuple[list[str], dict[str, str]]:
    """`answer_json._keys_and_blobs` as it was written before the exact-type checks."""
    keys: dict[str, None] = {}
    blobs: dict[str, str] = {}
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for k, v in item.items():
                if isinstance(k, str) and len(k) >= 6:
                    keys.setdefault(k, None)
                if isinstance(v, dict | list):
                    stack.append(v)
                elif k == "blob" and isinstance(v, str) and v not in blobs:
                    text = answer_json._blob_text(v)
                    if text is not None:
                        blobs[v] = text
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, dict | list))
    return list(keys), blobs


_BLOBS = st.sampled_from(["aGVsbG8gd29ybGQ=", "bm90IGEgYmxvYg==", "////", "plain"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    doc=st.recursive(
        st.one_of(st.none(), st.integers(), _TEXT, _BLOBS),
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.one_of(_TEXT, st.just("blob")), children, max_size=5),
        ),
        max_leaves=30,
    )
)
def test_keys_and_blobs_match_the_reference(doc: Any) -> None:
    assert answer_json._keys_and_blobs(doc) == _reference_keys_and_blobs(doc)


# ---------------------------------------------------------------- the answer's key memo

_ANSWER_KEYS = {
    "object": "chat.completion",
    "choices": [{"message": {"role": "assistant", "content": "All done here."}}],
    "usage": {"prompt_tokens": 3, "completion_tokens_details": {"reasoning_tokens": 0}},
}


def test_key_memo_answers_as_a_fresh_scan() -> None:
    g = make_guardrails({"pii": {"action": "redact"}, "secrets": {"action": "block"}})
    first = scan_answer_json(g, _ANSWER_KEYS, "request")
    assert g.clean_memo(answer_json.CLEAN_KEYS_MEMO)  # the clean key list was remembered
    again = scan_answer_json(g, _ANSWER_KEYS, "request")
    assert again == first and not again.findings
    # a key list with a finding is scanned (and found) every time
    leaky = {**_ANSWER_KEYS, "mail alice@example.com now": 1}
    for _ in range(3):
        found = scan_answer_json(g, leaky, "request")
        assert [f.type for f in found.findings] == ["email"]
        assert found.redacted_obj is not None
    # a blocking finding leaves no redaction behind: still scanned (and found) every time
    secret = {**_ANSWER_KEYS, "ghp_" + "a1B2c3D4e5" * 3 + "f6G7h8": 1}
    for _ in range(3):
        blocked = scan_answer_json(g, secret, "request")
        assert blocked.blocked and [f.type for f in blocked.findings] == ["github_token"]
    # another channel is its own entry
    doc = scan_answer_json(g, _ANSWER_KEYS, "document")
    assert doc == first


def test_key_memo_is_off_with_a_model_stage() -> None:
    calls: list[str] = []

    def model(text: str) -> float:
        calls.append(text)
        return 0.0

    from haltgate.governance.guardrails import Guardrails
    from haltgate.governance.policy_checks import Guardrails as Spec

    g = Guardrails.from_spec(
        Spec.model_validate({"promptInjection": {"direction": "both"}}), injection_model=model
    )
    assert not g.deterministic("response")
    for _ in range(2):
        scan_answer_json(g, _ANSWER_KEYS, "request")
    keys_scans = [c for c in calls if "completion_tokens_details" in c]
    assert len(keys_scans) == 2
    assert not g.clean_memo(answer_json.CLEAN_KEYS_MEMO)
    assert make_guardrails({"promptInjection": {}, "pii": {}}).deterministic("request")


# ---------------------------------------------------------------- secrets prefilters

_SECRET_PIECES = (
    "AKIAZ3MJQ4X7B2C5D6E7",
    "ASIAQWERTYUIOPASDFGH",
    'aws_key = "abcdEFGH1234abcdEFGH1234abcdEFGH1234abcd"',
    "AWS pass: 'Zyxw9876Zyxw9876Zyxw9876Zyxw9876Zyxw9876'",
    # a long s (U+017F) is an "s" to a case-insensitive pattern, not to str.lower()
    'aw\u017f_key = "abcdEFGH1234abcdEFGH1234abcdEFGH1234abcd"',
    "ghp_" + "a1B2c3D4e5" * 3 + "f6G7h8",
    "gho_" + "Z" * 36,
    "glpat-" + "x1y2z3" * 4,
    "GR1348941" + "ab12CD34ef" * 3,
    "glcbt-a1_" + "q" * 24,
    "glimt-" + "m" * 25,
    "glptt-" + "n" * 40,
    "glagent-" + "k" * 60,
    "gloas-" + "p" * 64,
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY-----",
    "PuTTY-User-Key-File-2: ssh-rsa",
    "xoxb-123456-7890-abcdef",
    "XOXP-1-2-zz",
    "https://hooks.slack.com/services/T0001/B0002/abcXYZ",
    "api_token = s3cr3tV4lu3XyZ9q",
    "client_secret: Qm9vbGVhbiBsb2dpYyBpcw",
    "password=Hunter2!Hunter2",
    "the token s3cr3tV4lu3XyZ9q has no operator",
    "prompt_tokens completion_tokens_details",
    "sk-proj-" + "A1b2C3d4E5" * 3,
    "AIza" + "B" * 35,
    "MTk4NjIyNDgzNDcxOTI1MjQ4.Cl2FMQ.ZnCjm1XVW7vRze4b7Cq4se7kKWs",
    "AC" + "a1b2c3d4" * 4,
    "SK" + "0123456789abcdef" * 2,
    "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ",
)
_PROSE = ("Summarise", "the", "report", "in", "three", "sentences", "gl", "ac", "SK", "aws")
_ODD = ("\u017f", "\u212a", "\u0130", "\u00e9", "\u200b", "\uff21")  # long s, Kelvin, ...


def _mutate(rng: Any, piece: str) -> str:
    chars = list(piece)
    for _ in range(rng.randrange(3)):
        if not chars:
            break
        i = rng.randrange(len(chars))
        roll = rng.random()
        if roll < 0.4:
            chars[i] = chars[i].swapcase()
        elif roll < 0.7:
            chars[i] = rng.choice(_ODD)
        elif roll < 0.85:
            chars.insert(i, rng.choice(" :=\n\"'"))
        else:
            del chars[i]
    return "".join(chars)


def _secret_texts(seed: int, count: int) -> list[str]:
    import random

    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(1, 5)):
            roll = rng.random()
            if roll < 0.5:
                piece = rng.choice(_SECRET_PIECES)
                parts.append(_mutate(rng, piece) if rng.random() < 0.5 else piece)
            else:
                parts.append(rng.choice(_PROSE))
        texts.append(rng.choice((" ", "\n\n", ", ")).join(parts))
    return texts


def test_secret_prefilters_find_what_the_hints_alone_find() -> None:
    from haltgate.governance.guardrails.secrets import SecretsDetector

    fast, full = SecretsDetector(), SecretsDetector(prefilter=False)
    seen: set[str] = set()
    for text in _secret_texts(18, 3000):
        expected = full.detect(text)
        assert fast.detect(text) == expected, text
        seen.update(c.entity for c in expected)
    # the generated texts reach the prefiltered patterns (so a wrong literal would show)
    assert {
        "aws_key",
        "github_token",
        "gitlab_token",
        "private_key",
        "slack_token",
        "generic_secret",
        "discord_token",
        "twilio_key",
        "telegram_token",
    } <= seen


@settings(max_examples=300, deadline=None)
@given(
    text=st.lists(
        st.one_of(st.sampled_from(_SECRET_PIECES + _PROSE + _ODD), st.text(max_size=8)),
        max_size=6,
    ).map(" ".join)
)
def test_secret_prefilters_on_any_text(text: str) -> None:
    from haltgate.governance.guardrails.secrets import SecretsDetector

    assert SecretsDetector().detect(text) == SecretsDetector(prefilter=False).detect(text)


@settings(max_examples=300, deadline=None)
@given(
    low=st.text(alphabet="abgl_-.:sk", max_size=40),
    ascii_text=st.booleans(),
)
def test_literal_gate_answers_as_checking_each_pattern(low: str, ascii_text: bool) -> None:
    from haltgate.governance.guardrails.literal_gate import LiteralGate, Needs

    table = [
        Needs(),
        Needs(hint=("gl",)),
        Needs(hint=("_",), prefilter=("ab_", "ba_")),
        Needs(prefilter=("sk",), prefilter_ascii_only=True),
        Needs(hint=(".", ":"), prefilter=("a.", "k:"), prefilter_ascii_only=True),
        Needs(hint=("-",)),
    ]

    def naive(n: Needs) -> bool:
        if n.hint and not any(h in low for h in n.hint):
            return False
        return not (
            n.prefilter
            and (ascii_text or not n.prefilter_ascii_only)
            and not any(p in low for p in n.prefilter)
        )

    assert list(LiteralGate(table).runnable(low, ascii_text)) == [
        i for i, n in enumerate(table) if naive(n)
    ]


# ---------------------------------------------------------------- decode prefilters

_RUN_PIECES = (
    "aWdub3JlIGFsbCBwcmV2aW91cyBpbnN0cnVjdGlvbnM=",
    "69676e6f726520616c6c",
    "69 67 6e 6f",
    "de:ad:be:ef",
    "0a,0b",
    "ab-cd",
    "MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43UOV3HO6DZPI",
    "snake_case_identifier_name",
    "a+b/c_d-e",
    "x" * 15,
    "y" * 16,
    "Summarise the report",
    "be ad",
)


@settings(max_examples=500, deadline=None)
@given(
    text=st.lists(
        st.one_of(
            st.sampled_from(_RUN_PIECES + _ODD),
            st.text(alphabet="abcdefABCDEF0123456789 :,-+/_=xyz\n", max_size=24),
        ),
        max_size=5,
    ).map("".join)
)
def test_decode_prefilters_skip_only_texts_without_runs(text: str) -> None:
    from haltgate.governance.guardrails import decode, decode_prefilter

    if not decode_prefilter.may_hold_alphabet_run(text):
        assert list(decode._B64_RUN.finditer(text)) == []
    if not decode_prefilter.may_hold_hex_pairs(text):
        assert list(decode._HEX_PAIRS.finditer(text)) == []


def test_decode_prefilters_let_every_run_through() -> None:
    import random

    from haltgate.governance.guardrails import decode, decode_prefilter

    rng = random.Random(18)
    alphabet = "abcdefABCDEF0123456789 :,-+/_=xyzQ\n.\u00e9"
    reached = {"alphabet": 0, "hex": 0}
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        if rng.random() < 0.3:
            text += " " + rng.choice(_RUN_PIECES)
        if decode._B64_RUN.search(text):
            reached["alphabet"] += 1
            assert decode_prefilter.may_hold_alphabet_run(text), text
        if decode._HEX_PAIRS.search(text):
            reached["hex"] += 1
            assert decode_prefilter.may_hold_hex_pairs(text), text
    assert min(reached.values()) > 100  # the texts reach both patterns


# ---------------------------------------------------------------- the answer's one walk


def test_spaces_are_what_lstrip_strips() -> None:
    assert answer_json._SPACES == {chr(c) for c in range(0x3001) if chr(c).isspace()}
    assert all(not chr(c).isspace() for c in range(0x3001, 0x110000, 7))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=_DOCS)
def test_one_walk_tells_what_expand_and_the_keys_walk_tell(doc: Any) -> None:
    """`_keys_blobs_and_documents`: the keys and blobs of the document, and `True`
    whenever `_expand` changes it (fails when a string position, a list item or the
    white space before a document is left out)."""
    keys, blobs, embedded = answer_json._keys_blobs_and_documents(doc)
    assert (keys, blobs) == answer_json._keys_and_blobs(doc)
    if answer_json._expand(doc, {}, 0) is not doc:
        assert embedded


def _reference_scan_answer(g: Any, obj: Any, channel: Any) -> ScanResult:
    """`scan_answer_json` as it was before the one walk: expand, scan, then walk keys."""
    inner: dict[str, Any] = {}
    expanded = answer_json._expand(obj, inner, 0)
    result = g.scan_json(expanded, "response", channel=channel)
    if result.blocked:
        return result
    keys, blobs = answer_json._keys_and_blobs(expanded)
    extra = answer_json._scan_keys_and_blobs(g, keys, blobs, channel) if keys or blobs else None
    renamed: dict[str, str] = {}
    values: dict[str, str] = {}
    if extra is not None and extra.redacted_obj is not None:
        new_keys, new_texts = extra.redacted_obj[: len(keys)], extra.redacted_obj[len(keys) :]
        renamed = {old: new for old, new in zip(keys, new_keys, strict=True) if new != old}
        for (blob, old), new in zip(blobs.items(), new_texts, strict=True):
            if new != old:
                values[blob] = base64.b64encode(new.encode("utf-8", "surrogateescape")).decode()
    redacted = result.redacted_obj
    if renamed or values:
        redacted = answer_json._rewrite(
            expanded, expanded if redacted is None else redacted, renamed, values
        )
    if redacted is not None and inner:
        redacted = answer_json._collapse(obj, redacted, inner)
    if extra is None or not (extra.findings or extra.errors):
        if redacted is result.redacted_obj:
            return result
        extra = ScanResult()
    return ScanResult(
        findings=result.findings + extra.findings,
        blocked=extra.blocked,
        redacted_text=None,
        risk=max(result.risk, extra.risk),
        redacted_obj=redacted,
        errors=result.errors + extra.errors,
    )


_SECRETISH = st.sampled_from(
    [
        "mail bob@example.com now",
        '{"token": "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"}',
        ' ["call +1 415 555 0132"]',
        "password=Sup3rS3cret!x",
        "aGVsbG8gYm9iQGV4YW1wbGUuY29t",
    ]
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    doc=st.recursive(
        st.one_of(st.none(), st.integers(), _TEXT, _SECRETISH, _BLOBS),
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.one_of(_TEXT, _SECRETISH, st.just("blob")), children, max_size=4),
            _JSON_TEXT.map(lambda d: orjson.dumps(d).decode()),
        ),
        max_leaves=20,
    )
)
@example(doc={"note": ' ["call +1 415 555 0132"]'})
@example(doc=['\n {"mail": "bob@example.com"}'])
def test_answer_scan_reads_what_it_read_before(doc: Any) -> None:
    """The whole answer scan against the one before the walk (a fresh policy each, so no
    key memo differs); fails when the walk misses a document, a key or a blob."""
    spec = {"pii": {"action": "redact"}, "secrets": {"action": "redact"}}
    for channel in ("document", "request"):
        want = _reference_scan_answer(make_guardrails(spec), doc, channel)
        assert scan_answer_json(make_guardrails(spec), doc, channel) == want
