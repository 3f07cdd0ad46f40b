"""The call-chain header: parsing (strict), extension and cascade detection."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from haltgate.governance.pool.cascade import Chain, ChainError, check, extend, parse


def test_a_new_chain_starts_with_the_caller() -> None:
    chain = extend(None, "ns/a")
    assert chain.depth == 1 and chain.path == ("ns/a",) and len(chain.trace_id) == 32
    assert parse(chain.header()) == chain


def test_extension_keeps_the_trace_and_appends_the_agent() -> None:
    first = extend(None, "ns/a")
    second = extend(first, "ns/b")
    assert second.trace_id == first.trace_id and second.path == ("ns/a", "ns/b")
    assert second.depth == 2


def test_loop_and_depth_are_detected() -> None:
    chain = Chain("ab" * 16, 2, ("ns/a", "ns/b"))
    loop = check(chain, "ns/a", max_depth=None, detect_loops=True)
    assert loop is not None and loop.code == "cascade_loop"
    assert "ns/a -> ns/b -> ns/a" in loop.message
    assert check(chain, "ns/a", max_depth=None, detect_loops=False) is None
    assert check(chain, "ns/c", max_depth=3, detect_loops=True) is None
    deep = check(chain, "ns/c", max_depth=2, detect_loops=True)
    assert deep is not None and deep.code == "cascade_depth"
    assert check(None, "ns/a", max_depth=1, detect_loops=True) is None


@pytest.mark.parametrize(
    "value",
    [
        "trace=xyz;depth=1;path=ns/a",  # trace not hex
        "trace=abcdef0123;depth=x;path=ns/a",  # depth not int
        "trace=abcdef0123;depth=0;path=ns/a",  # depth below path length
        "trace=abcdef0123;path=ns/a",  # missing field
        "trace=abcdef0123;depth=1;path=ns/a;x=1",  # extra field
        "trace=abcdef0123;depth=1;depth=1;path=a",  # duplicate
        "trace=abcdef0123;depth=1;path=ns a",  # whitespace in identity
        "x" * 9000,
    ],
)
def test_malformed_headers_are_refused(value: str) -> None:
    with pytest.raises(ChainError):
        parse(value)


@given(st.text(max_size=300))
def test_parse_never_fails_otherwise(value: str) -> None:
    try:
        chain = parse(value)
    except ChainError:
        return
    assert chain is None or parse(chain.header()) == chain
