"""The generated injection families development set (`haltgate.testbed.injection_families_dev`)
and its use by the model trainer (`injection_model_data.family_windows`)."""

from __future__ import annotations

import json
import random

import pytest

from haltgate.testbed import injection_families_dev as fam
from haltgate.testbed import injection_families_text as tx
from haltgate.testbed import injection_model_data as data


def _lists() -> dict[str, tuple[str, ...]]:
    return {
        "actions": tx.ACTIONS,
        "benign actions": tx.BENIGN_ACTIONS,
        "tool calls": tx.TOOL_CALLS,
        "tool framings": tx.TOOL_FRAMINGS,
        "exfil": tx.EXFIL,
        "non-English": tx.NON_ENGLISH,
        "transforms": tuple(fam.TRANSFORMS),
        **{f"framing {k}": v for k, v in tx.FRAMINGS.items()},
    }


@pytest.mark.parametrize("name", list(_lists()))
def test_every_list_is_split_into_three_disjoint_nonempty_parts(name: str) -> None:
    items = _lists()[name]
    parts = {p: set(fam.of_part(items, p)) for p in fam.PARTS}
    assert set().union(*parts.values()) == set(items)
    assert sum(len(v) for v in parts.values()) == len(set(items))
    assert all(parts.values())


def test_same_seed_same_rows_and_parts_differ() -> None:
    a = fam.generate("dev", 200, random.Random(5))
    b = fam.generate("dev", 200, random.Random(5))
    assert a == b
    train = {r.text for r in fam.generate("train", 200, random.Random(5))}
    assert not train & {r.text for r in a}


def test_train_never_holds_a_held_out_family_and_dev_holds_all() -> None:
    train = fam.generate("train", 900, random.Random(1))
    dev = fam.generate("dev", 900, random.Random(1))
    assert fam.HELD_OUT and not {r.family for r in train if r.label} & set(fam.HELD_OUT)
    assert {r.family for r in dev if r.label} == set(fam.FAMILIES)
    assert {r.family for r in dev if not r.label} == set(fam.BENIGN_KINDS)


def test_dev_attacks_use_only_dev_actions() -> None:
    train_only = [a.split("{")[0] for a in fam.of_part(tx.ACTIONS, "train")]
    train_only = [a for a in train_only if len(a) > 12]
    rows = fam.generate("dev", 400, random.Random(2))
    for r in rows:
        if r.label and r.family not in ("obfuscated", "md_exfil", "non_english", "tool_hijack"):
            assert not any(a in r.text for a in train_only), r.text


def test_span_points_at_the_payload_in_every_shape() -> None:
    for r in fam.generate("calibration", 300, random.Random(3)):
        piece = r.text[r.span[0] : r.span[1]]
        assert piece.strip()
        if r.shape in ("issue", "search", "api_error", "chat"):
            json.loads(r.text[r.text.index("{") :])  # the tool result stays valid JSON


def test_unknown_part_and_family_are_named() -> None:
    with pytest.raises(ValueError, match="part"):
        fam.generate("test", 1, random.Random(0))
    with pytest.raises(ValueError, match="family"):
        fam.payload("phishing", "dev", random.Random(0))


def test_family_windows_keep_the_payload_and_the_label() -> None:
    tok = data.tokenizer()
    rows = fam.generate("train", 120, random.Random(4))
    out = data.family_windows(random.Random(4), tok, rows)
    by_family = {t.family for t in out if t.label}
    assert by_family and not by_family & set(fam.HELD_OUT)
    windows = [t for t in out if t.source == f"family-{t.family}"]
    assert len(windows) >= 100
    for t in windows:
        row = next(r for r in rows if t.text in r.text and r.family == t.family)
        assert t.label == row.label
