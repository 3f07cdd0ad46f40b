"""record_fields: the replay inputs cut out before parsing, and the column values exact.

Compared with the full parse on records built to trip the cut: keys named ``replay`` and
``run_id`` nested at every depth in the fields before and after the top-level ones, in
lists too, texts that contain the very patterns, with and without top-level replay inputs.
"""

from __future__ import annotations

import random
from typing import Any

import orjson

from haltgate.governance.audit.binary_copy import copy_row
from haltgate.governance.audit.record_fields import (
    CUT_IS_EXACT,
    REQUIRED_FIELDS,
    cut_is_exact,
    record_fields,
)
from haltgate.governance.audit.spool import Frame

COLUMNS = sorted(
    REQUIRED_FIELDS
    | {"kind", "target", "model", "tool", "decision", "failure_type", "code"}
    | {"cost_usd", "latency_ms", "status"}
)
TRICKS = [',"replay":{', ',"run_id":"', '"}', "{", "}", "[", "]", '\\"', "\\", ","]


def nested(rng: random.Random, depth: int) -> Any:
    """A value that may hold ``replay`` / ``run_id`` keys and the patterns in its texts."""
    if depth <= 0 or rng.random() < 0.3:
        return rng.choice([1, 2.5, None, True, "x" + rng.choice(TRICKS) + "y"])
    if rng.random() < 0.3:
        return [nested(rng, depth - 1) for _ in range(rng.randint(0, 3))]
    keys = rng.sample(["a", "replay", "run_id", "seq", "zz", "phase", "tool"], rng.randint(1, 4))
    return {k: nested(rng, depth - 1) for k in keys}


def record(rng: random.Random, i: int) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "record_id": f"{i:08x}-0000-4000-8000-000000000000",
        "seq": i + 1,
        "chain_id": "ns/pod/run",
        "prev_hash": "a" * 64,
        "hash": "b" * 64,
        "decision_id": f"d{i}",
        "phase": rng.choice(["intent", "outcome"]),
        "namespace": "ns",
        "workload": "w",
        "pod": "pod",
        "run_id": "run" + rng.choice(TRICKS),
        "target": "POST https://x.test/" + rng.choice(TRICKS),
        "decision": "allow",
        "time": 1_790_000_000.0 + i,
        "v": 1,
    }
    for name, value in (
        ("kind", "llm"),
        ("model", "m" + rng.choice(TRICKS)),
        ("tool", "t" + rng.choice(TRICKS)),
        ("failure_type", "EXHAUSTION"),
        ("code", "c"),
        ("cost_usd", 0.5),
        ("latency_ms", 1.5),
        ("status", 200),
        ("message", "m" + rng.choice(TRICKS)),
    ):
        if rng.random() < 0.6:
            doc[name] = value
    for name in ("budget_before", "budget_after", "usage", "payload", "would_refuse", "replay"):
        if rng.random() < 0.7:
            doc[name] = nested(rng, 4) if name != "replay" else {"v": nested(rng, 4)}
    if rng.random() < 0.5:
        doc["findings"] = [nested(rng, 3) for _ in range(rng.randint(0, 2))]
    return doc


def test_the_record_layout_allows_the_cut() -> None:
    assert CUT_IS_EXACT  # else the shipper always parses the whole record


def test_a_layout_that_would_hide_a_column_is_refused() -> None:
    names = ["replay", "run_id", "seq", "target", "tool", "usage", "workload"]
    assert cut_is_exact(names, ["replay", "usage"])
    # An object field between target and tool: a cut from it into usage would drop tool.
    assert not cut_is_exact([*names, "tags"], ["replay", "usage", "tags"])
    # A field between replay and run_id is cut with the replay inputs: fine if no column.
    assert cut_is_exact([*names, "result"], ["replay", "usage"])
    assert not cut_is_exact(["run_id"], [])


def test_column_values_equal_the_full_parse_on_adversarial_records() -> None:
    rng = random.Random(20261208)
    cut = 0
    for i in range(3000):
        line = orjson.dumps(record(rng, i), option=orjson.OPT_SORT_KEYS)
        full = orjson.loads(line)
        fast = record_fields(line)
        assert {c: fast.get(c) for c in COLUMNS} == {c: full.get(c) for c in COLUMNS}, line
        cut += "replay" not in fast and "replay" in full
        frame = Frame(1, 0, len(line), full["time"], line)
        assert copy_row(frame).endswith(line)
    assert cut > 1000  # the cut was taken (not only the fallback)


def test_a_record_without_replay_inputs_is_parsed_whole() -> None:
    line = orjson.dumps(
        {"a": {"replay": {"run_id": 1}}, "run_id": "r"}, option=orjson.OPT_SORT_KEYS
    )
    assert record_fields(line) == orjson.loads(line)
