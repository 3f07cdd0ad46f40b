"""Attacker-shaped JSON: any JSON value may stand where a provider puts a string or an index
(``{"role": []}``, ``"index": {}``). The guardrail walk and the stream guard must never
raise on it: under ``failMode: closed`` a raise refuses the call as ``guardrails_error``
(a denial of service an upstream can trigger at will), under ``open`` it skips the scan."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from haltgate.governance.guardrails import ChatStreamGuard
from tests.guardrails.conftest import make_guardrails

# Keys the walk and the stream guard look at, so generated documents hit them often.
MEANINGFUL_KEYS = [
    "role",
    "index",
    "choices",
    "delta",
    "content",
    "type",
    "text",
    "system",
    "instructions",
    "item_id",
    "output_index",
    "content_index",
    "finish_reason",
    "messages",
]
EMAIL = "ann.lee@example.org"

leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.just(f"mail {EMAIL} now"),
    st.sampled_from(
        [
            "system",
            "developer",
            "user",
            "content_block_delta",
            "response.output_text.delta",
            "text_delta",
        ]
    ),
)
docs = st.recursive(
    leaf,
    lambda kids: (
        st.lists(kids, max_size=4)
        | st.dictionaries(st.sampled_from(MEANINGFUL_KEYS) | st.text(max_size=6), kids, max_size=5)
    ),
    max_leaves=20,
)

GUARDRAILS = make_guardrails(
    {"promptInjection": {}, "pii": {"action": "redact"}, "secrets": {"action": "block"}}
)


def test_role_list_in_a_response_is_scanned_not_crashed() -> None:
    # The example hypothesis once found in `make test`: TypeError (unhashable list) in the
    # walk that decides whether a message is the agent's own instructions.
    for direction in ("request", "response"):
        r = GUARDRAILS.scan_json({"role": []}, direction)  # type: ignore[arg-type]
        assert not r.blocked and not r.errors
    r = GUARDRAILS.scan_json({"role": [], "content": f"write to {EMAIL}"}, "response")
    assert r.redacted_obj == {"role": [], "content": "write to <EMAIL_1>"}


def test_unhashable_stream_indexes_do_not_crash() -> None:
    guard = ChatStreamGuard(GUARDRAILS, "response")
    for event in (
        {"choices": [{"index": [], "delta": {"content": "hi"}}]},
        {
            "type": "content_block_delta",
            "index": {"a": 1},
            "delta": {"type": "text_delta", "text": "x"},
        },
        {"type": "content_block_stop", "index": [1]},
        {"type": "response.output_text.delta", "item_id": [], "delta": "y"},
        {"type": "response.output_text.done", "item_id": [], "text": "y"},
    ):
        guard.on_event(event)
    assert not guard.errors and not guard.blocked


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs)
@example({"role": []})
@example({"role": {}})
@example({"choices": [{"index": [], "delta": {"content": "x"}}]})
def test_scan_json_never_raises(doc: Any) -> None:
    for direction in ("request", "response"):
        r = GUARDRAILS.scan_json(doc, direction)  # type: ignore[arg-type]
        assert not r.errors


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(docs, max_size=6))
@example([{"type": "content_block_stop", "index": []}])
def test_stream_guard_never_raises(events: list[Any]) -> None:
    guard = ChatStreamGuard(GUARDRAILS, "response")
    for event in events:
        guard.on_event(event)
    assert not guard.errors
