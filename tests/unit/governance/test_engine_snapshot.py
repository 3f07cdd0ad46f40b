"""The audit record's snapshot re-derives every Reserve decision exactly (hypothesis).

For each ``Reserve`` of a random program (concurrent calls, periods, rolling windows,
distinct tools and hosts, retries, halts, resets), the snapshot the sidecar records
(``capture``), after a JSON round trip, is rebuilt and stepped: the decision must be the
one the live engine made, field by field (the audit's ``decision_doc``)."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from haltgate.governance.engine import Reserve
from haltgate.governance.engine.snapshot import (
    SnapshotError,
    capture,
    decision_doc,
    rebuild,
    reserve_doc,
)
from tests.unit.governance.conftest import make_engine
from tests.unit.governance.test_engine_properties import (
    ALL_DIMENSIONS,
    ANY_OPS,
    RUN_ONLY,
    SETTINGS,
    interpret,
)


@pytest.mark.parametrize(
    ("message", "kept"), [("allowed", "allowed"), ("", "allowed"), ("over budget", "over budget")]
)
def test_decision_doc_keeps_the_digest_of_the_message(message: str, kept: str) -> None:
    # A plain allow's digest is precomputed: it must be the digest of "allowed".
    engine = make_engine({"calls": {"limit": 10}})
    event = Reserve("c1", 1_800_000_000.0, "llm", "h", None, "gpt-4o", 10, 200, "fp")
    _, decision = engine.step(engine.initial_state(), event)
    doc = decision_doc(decision._replace(message=message))
    assert doc["message_sha256"] == hashlib.sha256(kept.encode()).hexdigest()


def test_snapshot_of_a_state_with_equal_meter_names_is_not_adapted() -> None:
    engine = make_engine({"calls": {"limit": 10}, "tokens": {"limit": 100}})
    event = Reserve("c1", 1_800_000_000.0, "llm", "h", None, "gpt-4o", 10, 200, "fp")
    state = engine.initial_state()
    copied = state._replace(meter_names=tuple(list(state.meter_names)))
    assert copied.meter_names is not state.meter_names
    assert capture(engine, copied, event) == capture(engine, state, event)
    assert engine.meter_keys == tuple(m.key for m in engine.meter_specs)


@SETTINGS
@given(st.lists(ANY_OPS, max_size=40))
def test_rebuilt_snapshot_steps_to_the_same_decision(ops: list[tuple[Any, ...]]) -> None:
    for budgets in (ALL_DIMENSIONS, RUN_ONLY):
        engine = make_engine(budgets)
        for event, before, _, decision in interpret(engine, ops):
            if not isinstance(event, Reserve):
                continue
            assert reserve_doc(event) == event.to_dict()
            snap = orjson.loads(orjson.dumps(capture(engine, before, event)))
            _, again = engine.step(rebuild(snap, event), event)
            assert decision_doc(again) == decision_doc(decision)
            assert again.message == decision.message


def test_snapshot_taken_under_another_policy_is_adapted_first() -> None:
    old = make_engine({"calls": {"limit": 10}})
    new = make_engine({"calls": {"limit": 10}, "tokens": {"limit": 100}})
    event = Reserve("c1", 1_800_000_000.0, "llm", "h", None, "gpt-4o", 10, 200, "fp")
    state = old.initial_state()
    snap = capture(new, state, event)
    assert list(snap["meters"]) == ["calls/run", "tokens/run"]
    _, direct = new.step(state, event)
    _, again = new.step(rebuild(snap, event), event)
    assert decision_doc(again) == decision_doc(direct)
    assert direct.code == "tokens_exhausted"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"used": "x"}, "snapshot.used"),
        ({"used": [1, 2, 3]}, "snapshot.used"),
        ({"f": 9}, "snapshot.f"),
        ({"in_flight": 1}, "snapshot.in_flight"),
        ({"tools": -1}, "snapshot.tools"),
        ({"halt": {"failure_type": "NOPE"}}, "snapshot.halt"),
    ],
)
def test_malformed_snapshot_names_the_field(change: dict[str, Any], field: str) -> None:
    engine = make_engine({"calls": {"limit": 10}})
    event = Reserve("c1", 1_800_000_000.0, "mcp", "h", "t", None, 0, 0, "fp")
    snap = {**capture(engine, engine.initial_state(), event), **change}
    with pytest.raises(SnapshotError, match=field.replace(".", r"\.")):
        rebuild(snap, event)
