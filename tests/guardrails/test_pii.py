"""PII detector on the labelled corpus, checksums and entity selection."""

from __future__ import annotations

import pytest

from haltgate.governance.guardrails import PIIDetector
from haltgate.governance.guardrails.pii import ENTITIES
from tests.guardrails import corpus
from tests.guardrails.metrics import evaluate

DETECTOR = PIIDetector()


def _entities(text: str) -> set[str]:
    return {c.entity for c in DETECTOR.detect(text) if c.score >= 0.5}


def test_corpus_recall_and_false_positive_rate(pii_corpus: list[corpus.Sample]) -> None:
    scores = evaluate(
        pii_corpus, lambda s: (s.kind in _entities(s.text)) if s.label else bool(_entities(s.text))
    )
    assert scores.recall >= 0.98, scores
    assert scores.fp_rate <= 0.01, scores


@pytest.mark.parametrize("entity", ENTITIES)
def test_every_entity_has_positives(entity: str, pii_corpus: list[corpus.Sample]) -> None:
    assert sum(1 for s in pii_corpus if s.label and s.kind == entity) >= 4


@pytest.mark.parametrize(
    ("valid", "invalid"),
    [
        ("4526 0181 5908 3012", "4526 0181 5908 3013"),  # Luhn
        ("DE89 3704 0044 0532 0130 00", "DE89 3704 0044 0532 0130 01"),  # mod-97
        ("DNI 91996233M", "DNI 91996233A"),  # letter checksum
        ("BSN 527239380", "BSN 527239381"),  # 11-proof
        ("SSN 536-90-4399", "SSN 666-90-4399"),  # area 666 never issued
    ],
)
def test_check_digits_decide(valid: str, invalid: str) -> None:
    assert _entities(valid)
    assert not _entities(invalid)


def test_entity_selection() -> None:
    only_email = PIIDetector(["email"])
    found = {c.entity for c in only_email.detect("a@example.com +44 20 7946 0958")}
    assert found == {"email"}
    with pytest.raises(ValueError, match="unknown"):
        PIIDetector(["passport"])


def test_private_and_documentation_addresses_score_low() -> None:
    (c,) = DETECTOR.detect("gateway 10.0.0.1")
    assert c.score < 0.5
    assert DETECTOR.detect("version 1.2.3.4") == []


def test_spans_cover_exactly_the_value() -> None:
    text = "mail: ann.lee@example.org, card 4526-0181-5908-3012."
    got = {text[c.start : c.end] for c in DETECTOR.detect(text)}
    assert got == {"ann.lee@example.org", "4526-0181-5908-3012"}
