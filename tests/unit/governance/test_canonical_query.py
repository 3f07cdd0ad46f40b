"""The query's one reading (``haltgate.governance.canonical_query``): what rules read is
what the canonical form, the bytes forwarded, reads as to a standard parser."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from haltgate.governance.canonical_query import canonical_query
from haltgate.governance.errors import BadRequestError


@pytest.mark.parametrize(
    ("raw", "forward", "pairs"),
    [
        ("api-version=2024-02-01", "api-version=2024-02-01", [("api-version", "2024-02-01")]),
        ("q=a+b%2Bc", "q=a%20b%2Bc", [("q", "a b+c")]),
        ("a=1&&b=2&", "a=1&b=2", [("a", "1"), ("b", "2")]),
        ("%61ction=%7e", "action=~", [("action", "~")]),
        ("flag&x=", "flag&x=", [("flag", ""), ("x", "")]),
        ("u=%2Fx%3Fy%26z%3D", "u=/x?y%26z%3D", [("u", "/x?y&z=")]),
        ("e=%E2%82%AC", "e=%E2%82%AC", [("e", "\u20ac")]),
        ("e=\u20ac", "e=%E2%82%AC", [("e", "\u20ac")]),
    ],
)
def test_canonical_form(raw: str, forward: str, pairs: list[tuple[str, str]]) -> None:
    got = canonical_query(raw)
    assert (got.forward, list(got.pairs)) == (forward, pairs)
    assert parse_qsl(got.forward, keep_blank_values=True) == pairs


@pytest.mark.parametrize(
    ("raw", "read"),
    [
        ("a=1;b=2", ()),
        ("a=1#x", ()),
        ("a=%zz", ()),
        ("a=%4", ()),
        ("a=x%00", ()),
        ("%0A=1", ()),
        ("%FF=1", ()),
        ("action=1&action=2", ("action",)),
        ("Action=1", ("action",)),
        ("action%5B%5D=1", ("action",)),
        ("action.x=1", ("action_x",)),
        ("+action=1", ("action",)),
        ("action=%2561", ("action",)),
        ("action=%FF", ("action",)),
    ],
)
def test_ambiguous_queries_are_refused(raw: str, read: tuple[str, ...]) -> None:
    with pytest.raises(BadRequestError) as info:
        canonical_query(raw, read)
    assert info.value.code == "ambiguous_query"


def test_names_no_rule_reads_may_repeat() -> None:
    got = canonical_query("tag=a&tag=b&Tag=c&action=list", ("action",))
    assert got.params() == {"tag": ["a", "b"], "Tag": ["c"], "action": ["list"]}
    assert got.arguments() == {"query": {"tag": "b", "Tag": "c", "action": "list"}}


_PIECES = st.text(alphabet="aA_-.~ +%=&;#/?:@!$'()*,2F0\u20ac", max_size=24)


@given(raw=_PIECES)
def test_the_canonical_form_reads_as_its_pairs_and_is_a_fixed_point(raw: str) -> None:
    try:
        got = canonical_query(raw)
    except BadRequestError:
        return
    assert parse_qsl(got.forward, keep_blank_values=True) == list(got.pairs)
    again = canonical_query(got.forward)
    assert (again.forward, again.pairs) == (got.forward, got.pairs)
