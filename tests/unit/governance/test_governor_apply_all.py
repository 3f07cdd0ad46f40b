"""``Governor.apply_all``: the reservations of one MCP batch, all or nothing, one write."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from haltgate.governance.engine.events import Release, Reserve, Settle
from haltgate.governance.governor import Governor, make_engine
from haltgate.governance.policy_base import FailureType
from tests.unit.governance.conftest import T0, make_spec


def reserves(prefix: str, n: int, tool: str = "echo") -> list[Reserve]:
    return [
        Reserve(
            f"{prefix}.{i}",
            T0,
            "mcp",
            "h",
            f"{tool}{i}" if tool == "t" else tool,
            None,
            0,
            0,
            f"{prefix}.{i}",
        )
        for i in range(n)
    ]


def test_all_fit_all_reserved_with_one_write(tmp_path: Path) -> None:
    g = Governor.for_policy(make_spec({"calls": {"limit": 5}}), tmp_path / "state")
    writes = g.writes
    assert g.apply_all(reserves("a", 5), all_or_nothing=True).allowed
    assert len(g.state.reservations) == 5
    assert g.writes == writes + 1
    g.apply_all([Settle(f"a.{i}", T0 + 1, None, True) for i in range(5)])
    assert g.snapshot()["budget"]["calls"]["used"] == 5.0
    assert g.writes == writes + 2


def test_one_does_not_fit_none_kept() -> None:
    g = Governor.for_policy(make_spec({"calls": {"limit": 5}}))
    assert g.apply_all(reserves("a", 2), all_or_nothing=True).allowed
    d = g.apply_all(reserves("b", 4), all_or_nothing=True)
    assert (d.allowed, d.code) == (False, "calls_exhausted")
    assert sorted(g.state.reservations) == ["a.0", "a.1"]
    assert g.apply_all(reserves("c", 3), all_or_nothing=True).allowed


def test_distinct_tools_counted_per_element() -> None:
    g = Governor.for_policy(make_spec({"distinctTools": {"limit": 2}}))
    d = g.apply_all(reserves("a", 3, tool="t"), all_or_nothing=True)
    assert (d.allowed, d.code) == (False, "distinct_tools_exhausted")
    assert not g.state.reservations
    assert not g.state.tools  # nothing of a refused batch is remembered
    b = [
        Reserve(f"b.{i}", T0, "mcp", "h", name, None, 0, 0, f"b.{i}")
        for i, name in enumerate(("x", "y"))
    ]
    assert g.apply_all(b, all_or_nothing=True).allowed


def test_a_halt_of_the_refused_element_is_kept() -> None:
    g = Governor.for_policy(make_spec({"wallTime": {"limitSeconds": 10}}))
    assert g.apply_all(reserves("a", 1), all_or_nothing=True).allowed
    late = [Reserve(f"b.{i}", T0 + 60, "mcp", "h", "echo", None, 0, 0, f"b.{i}") for i in range(3)]
    d = g.apply_all(late, all_or_nothing=True)
    assert (d.allowed, d.code) == (False, "wall_time_exhausted")
    assert g.halted  # as for a single call: the run is over
    assert list(g.state.reservations) == ["a.0"]


def test_a_failed_write_refuses_the_batch_and_keeps_the_old_state(tmp_path: Path) -> None:
    for slot in ("state.0", "state.1"):
        (tmp_path / slot).symlink_to("/dev/full")
    g = Governor(make_engine(make_spec({"calls": {"limit": 5}})), tmp_path / "state")
    g._file._seq = 0  # type: ignore[union-attr]  # (nothing readable was loaded)
    d = g.apply_all(reserves("a", 3), all_or_nothing=True)
    assert (d.allowed, d.failure_type, d.code) == (
        False,
        FailureType.EXTERNAL,
        "state_persist_failed",
    )
    assert not g.state.reservations


def test_releases_in_one_step() -> None:
    g = Governor.for_policy(make_spec({"calls": {"limit": 3}}))
    assert g.apply_all(reserves("a", 3), all_or_nothing=True).allowed
    g.apply_all([Release(f"a.{i}", T0) for i in range(3)])
    assert not g.state.reservations
    assert g.snapshot()["budget"]["calls"] == {"used": 0.0, "reserved": 0.0, "limit": 3.0}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 6), st.booleans()), min_size=1, max_size=25),
    st.integers(1, 12),
)
def test_batches_never_overspend_and_are_all_or_nothing(
    plan: list[tuple[int, bool]], limit: int
) -> None:
    """Any interleaving of batches (reserved now, settled later or at once): used plus in
    flight never passes the limit, and each batch is reserved whole or not at all."""
    g = Governor.for_policy(make_spec({"calls": {"limit": limit, "period": "hour"}}))
    in_flight: list[list[str]] = []
    for n, (size, settle_now) in enumerate(plan):
        ids = [f"b{n}.{i}" for i in range(size)]
        d = g.apply_all(
            [Reserve(x, T0 + n, "mcp", "h", "echo", None, 0, 0, x) for x in ids],
            all_or_nothing=True,
        )
        held = [x for x in ids if x in g.state.reservations]
        assert held == (ids if d.allowed else [])
        if d.allowed:
            in_flight.append(ids)
        if settle_now and in_flight:
            done = in_flight.pop(0)
            g.apply_all([Settle(x, T0 + n, None, True) for x in done])
        calls = g.snapshot(T0 + n)["budget"]["calls"]
        assert calls["used"] + calls["reserved"] <= limit
