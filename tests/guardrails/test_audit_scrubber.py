"""The audit scrubber on any JSON: planted keys and addresses never survive, the result
always serialises (no NUL, bounded depth), and clean documents come back unchanged."""

from __future__ import annotations

import re
from typing import Any

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from haltgate.governance.audit.redact import MAX_PAYLOAD_DEPTH, AuditScrubber

PLANTED = [
    "AKIA2E3MBFQXKZ7VJ4NA",
    "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    "canary.person@example.org",
]

# Planted values stand as words (a detector cannot tell "x@y.org0" from another domain).
SEP = st.sampled_from([" ", "\n", ", ", "(", ") ", "\t", '"', "="])
text = st.one_of(
    st.text(max_size=12),
    st.builds(
        lambda a, s1, p, s2, b: a + s1 + p + s2 + b,
        st.text(max_size=6),
        SEP,
        st.sampled_from(PLANTED),
        SEP,
        st.text(max_size=6),
    ),
)
docs = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), text),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(text, kids, max_size=4),
    max_leaves=25,
)


def _deep(n: int) -> Any:
    doc: Any = "x"
    for _ in range(n):
        doc = [doc]
    return doc


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs)
@example({PLANTED[0]: PLANTED[2]})
@example({"a\x00b": ["\x00"]})
@example(_deep(MAX_PAYLOAD_DEPTH + 10))
def test_scrubbed_payload_is_clean_and_writable(doc: Any) -> None:
    out = AuditScrubber(redact=True).payload(doc)
    line = orjson.dumps(out).decode()  # raises past orjson's depth limit
    # A NUL is JSON \u0000; the scrubber's escape of one is \\u0000 (PostgreSQL-safe).
    assert not re.search(r"(?<!\\)\\u0000", line)
    for value in PLANTED:
        assert value not in line


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.sampled_from(["a", "role", "x y"])),
        lambda kids: (
            st.lists(kids, max_size=3)
            | st.dictionaries(st.sampled_from(["k", "role", "content"]), kids, max_size=3)
        ),
        max_leaves=10,
    )
)
def test_clean_documents_are_unchanged(doc: Any) -> None:
    assert AuditScrubber(redact=True).payload(doc) == doc
