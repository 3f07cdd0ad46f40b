"""The Governor: state persisted on every change, reloaded on start, fail closed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from haltgate.governance.engine import Usage
from haltgate.governance.governor import Governor, StateFile, make_engine
from haltgate.governance.policy_base import FailureType
from tests.unit.governance.conftest import T0, make_spec

BUDGETS = {"calls": {"limit": 3}, "tokens": {"limit": 10_000}, "costUSD": {"limit": 1}}


def governor(path: Path | None, budgets: dict | None = None, **kw: object) -> Governor:
    return Governor.for_policy(make_spec(budgets or BUDGETS), path, **kw)  # type: ignore[arg-type]


def llm_reserve(g: Governor, call_id: str, ts: float = T0) -> bool:
    return g.reserve(
        call_id, ts, kind="llm", host="api.openai.com", model="gpt-4o",
        max_input_tokens=1000, max_output_tokens=500, fingerprint=call_id,
    ).allowed  # fmt: skip


def test_state_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state"
    g = governor(path)
    assert llm_reserve(g, "a")
    g.settle("a", T0 + 1, Usage(100, 50), True)
    before = g.state
    g.close()
    g2 = governor(path)
    assert g2.state == before
    assert g2.snapshot()["budget"]["tokens"]["used"] == 150.0


def test_calls_in_flight_at_a_crash_are_charged_their_worst_case(tmp_path: Path) -> None:
    path = tmp_path / "state"
    g = governor(path)
    assert llm_reserve(g, "a")
    # the process dies here: no settle
    g2 = governor(path, now=T0 + 30)
    snap = g2.snapshot()
    assert snap["in_flight"] == []
    assert snap["budget"]["tokens"]["used"] == 1500.0
    assert snap["budget"]["cost_usd"]["used"] == 0.0075  # 1000 x $2.50 + 500 x $10 per 1M


def test_halt_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state"
    g = governor(path)
    g.halt(T0, FailureType.EXTERNAL, "admin_halt", "stopped by alice")
    g2 = governor(path)
    d = g2.reserve("x", T0, kind="mcp", host="h")
    assert d.halted and d.code == "admin_halt"
    assert g2.reset(T0 + 1, "alice").allowed
    assert governor(path).reserve("y", T0 + 2, kind="mcp", host="h").allowed


def test_corrupt_state_starts_halted_until_reset(tmp_path: Path) -> None:
    path = tmp_path / "state"
    g = governor(path)
    llm_reserve(g, "a")
    g.release("a", T0)
    g.close()
    for slot in ("state.0", "state.1"):
        (tmp_path / slot).write_bytes(b"HGS1 garbage garbage garbage")
    g2 = governor(path, now=T0 + 5)
    d = g2.reserve("b", T0 + 5, kind="mcp", host="h")
    assert (d.allowed, d.failure_type, d.code) == (False, FailureType.EXTERNAL, "state_unreadable")
    g2.reset(T0 + 6, "operator")
    assert g2.reserve("c", T0 + 7, kind="mcp", host="h").allowed


def test_a_torn_write_falls_back_to_the_previous_slot(tmp_path: Path) -> None:
    path = tmp_path / "state"
    g = governor(path)
    assert llm_reserve(g, "a")
    g.settle("a", T0, Usage(10, 0), True)
    g.close()
    newest = max((tmp_path / "state.0", tmp_path / "state.1"),
                 key=lambda p: p.stat().st_mtime_ns)  # fmt: skip
    # simulate power loss in the middle of the last write
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])
    g2 = governor(path)
    # the previous state: the reservation of "a" was on disk, its settle was not
    assert g2.snapshot()["budget"]["tokens"]["used"] == 1500.0  # abandoned: worst case


def test_state_file_keeps_the_newest_record(tmp_path: Path) -> None:
    f = StateFile(tmp_path / "s")
    assert f.read() is None
    for i in range(5):
        f.write(f"record {i}".encode() * (5 - i))
    f.close()
    assert StateFile(tmp_path / "s").read() == b"record 4"


def test_persist_failure_refuses_the_call_but_keeps_spend(tmp_path: Path) -> None:
    # A full disk: the slot files are /dev/full, where every write fails with ENOSPC.
    for slot in ("state.0", "state.1"):
        (tmp_path / slot).symlink_to("/dev/full")
    g = Governor(make_engine(make_spec(BUDGETS)), tmp_path / "state")
    g._file._seq = 0  # type: ignore[union-attr]  # (nothing readable was loaded)
    d = g.reserve("b", T0, kind="mcp", host="h")
    assert (d.allowed, d.failure_type, d.code) == (
        False,
        FailureType.EXTERNAL,
        "state_persist_failed",
    )
    assert "b" not in g.state.reservations
    # spend that happened is kept in memory whatever the disk says
    g.settle("ghost", T0, Usage(100, 0, model="gpt-4o"), True)
    assert g.snapshot()["budget"]["tokens"]["used"] == 100.0
    assert g.write_errors == 2


def test_memory_only_governor_and_snapshot() -> None:
    g = governor(None)
    assert llm_reserve(g, "a")
    snap = g.snapshot()
    assert snap["state_file"] is None and snap["halted"] is False
    assert snap["in_flight"][0]["call_id"] == "a"
    assert snap["price_table"]["version"] == "2026-11"
    assert snap["budget"]["calls"] == {"used": 0.0, "reserved": 1.0, "limit": 3.0}


def test_no_write_when_nothing_changed(tmp_path: Path) -> None:
    g = governor(tmp_path / "state")
    writes = g.writes
    g.release("unknown", T0)
    assert g.writes == writes
    llm_reserve(g, "a")
    assert g.writes == writes + 1


def test_policy_reload_keeps_the_spend(tmp_path: Path) -> None:
    g = governor(tmp_path / "state")
    assert llm_reserve(g, "a")
    g.settle("a", T0, Usage(100, 0), True)
    g.update_engine(make_engine(make_spec({"tokens": {"limit": 120}})))
    snap = g.snapshot()
    assert set(snap["budget"]) == {"tokens"}
    assert snap["budget"]["tokens"]["used"] == 100.0
    assert not llm_reserve(g, "b")  # 1500 worst case no longer fits in 120


def test_fsync_mode_writes_durably(tmp_path: Path) -> None:
    g = governor(tmp_path / "state", fsync=True)
    assert llm_reserve(g, "a")
    assert os.path.getsize(tmp_path / "state.1") > 0


@pytest.mark.parametrize("engine_type", ["builtin"])
def test_make_engine_honours_the_policy(engine_type: str) -> None:
    engine = make_engine(make_spec({}, engine={"type": engine_type}))
    assert type(engine).__name__ == "_BuiltinEngine"


@settings(max_examples=80, deadline=None)
@given(
    payloads=st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=8),
    cut=st.floats(0, 1, exclude_max=True),
)
def test_a_torn_last_write_leaves_the_previous_record(
    tmp_path_factory: pytest.TempPathFactory, payloads: list[bytes], cut: float
) -> None:
    folder = tmp_path_factory.mktemp("slots")
    f = StateFile(folder / "s")
    for p in payloads[:-1]:
        f.write(p)
    last = folder / f"s.{len(payloads) & 1}"
    old = last.read_bytes() if last.exists() else b""
    f.write(payloads[-1])
    f.close()
    # power loss in the middle of the last pwrite: only its first bytes reached the disk
    record = last.read_bytes()[: StateFile._HEADER.size + len(payloads[-1])]
    done = int(len(record) * cut)
    last.write_bytes(record[:done] + old[done:])
    if len(payloads) == 1:
        # no previous record: a torn first write reads as corrupt (the Governor then starts
        # halted), a write of which nothing landed as no state at all
        if done == 0:
            assert StateFile(folder / "s").read() is None
        else:
            with pytest.raises(ValueError, match="no valid state slot"):
                StateFile(folder / "s").read()
    else:
        assert StateFile(folder / "s").read() in (payloads[-2], payloads[-1])
