"""The generated look-alike development set (`haltgate.testbed.lookalike_texts`)."""

from __future__ import annotations

import base64
import random
import re

from haltgate.testbed import lookalike_texts as lk

PARTS = ("train", "calibration", "dev")


def test_templates_and_quotes_have_exactly_one_part_and_every_kind_has_all_three() -> None:
    by_part = {p: {t for _, t in lk.templates(p)} for p in PARTS}
    for a, b in (("train", "dev"), ("train", "calibration"), ("calibration", "dev")):
        assert not by_part[a] & by_part[b]
        assert not set(lk.quotes(a)) & set(lk.quotes(b))
    for kind, parts in lk.counts().items():
        assert set(parts) == set(PARTS), kind
    assert set(lk.KINDS) == {k for k in lk.counts() if k != "quotes"}


def test_generation_is_deterministic_covers_every_kind_and_stays_in_its_part() -> None:
    a = list(lk.generate("dev", 300, random.Random(3)))
    assert a == list(lk.generate("dev", 300, random.Random(3)))
    assert {t.part for t in a} == {"dev"}
    assert {t.kind for t in a} == set(lk.KINDS)
    assert {t.channel for t in a} == {"request", "document"}
    dev_quotes = lk.quotes("dev")
    other = [q for p in ("train", "calibration") for q in lk.quotes(p)]
    for t in a:
        assert not any(q in t.text for q in other), t.text
    assert any(q in t.text for t in a for q in dev_quotes)


def test_every_slot_is_filled_and_blobs_are_valid_base64() -> None:
    for part in PARTS:
        for t in lk.generate(part, 300, random.Random(9)):
            assert not set(re.findall(r"\{(\w+)\}", t.text)) & lk.SLOTS, t.text
            if t.kind == "base64_data":
                runs = re.findall(r"[A-Za-z0-9+/]{40,}={0,2}", t.text)
                assert runs, t.text
                for r in runs:
                    base64.b64decode(r + "=" * (-len(r) % 4))
