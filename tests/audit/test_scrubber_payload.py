"""A call's payload is scrubbed once for both of its records (intent and outcome)."""

from __future__ import annotations

import pytest

from haltgate.governance.audit.redact import (
    MAX_PAYLOAD_SCAN_CHARS,
    OVER_BUDGET,
    AuditScrubber,
)


def _doc(n: int) -> dict[str, object]:
    # Past the scan budget: the later strings are stored as OVER_BUDGET markers.
    filler = "lorem ipsum dolor sit amet " * 200
    return {
        "messages": [
            {"role": "user", "content": f"{i} write to jane.doe{i}@example.com {filler}"}
            for i in range(n)
        ],
        "phone": 4155550123,
    }


def test_the_same_payload_gets_the_copy_a_fresh_walk_gives() -> None:
    doc = _doc(20)
    assert sum(len(m["content"]) for m in doc["messages"]) > MAX_PAYLOAD_SCAN_CHARS  # type: ignore[index]
    scrubber = AuditScrubber(redact=True)
    first = scrubber.payload(doc)
    again = scrubber.payload(doc)
    assert again is first
    # What a second walk of the same scrubber gives (the records before the memo): equal.
    assert scrubber._value(doc, 0) == first
    contents = [m["content"] for m in first["messages"]]
    assert "<EMAIL_1>" in contents[0] and "jane.doe0" not in contents[0]
    assert contents[-1] == OVER_BUDGET


def test_another_payload_is_scrubbed_on_its_own() -> None:
    scrubber = AuditScrubber(redact=True)
    one = scrubber.payload({"a": "mail jane@example.com now"})
    other = scrubber.payload({"a": "call bob@example.org today"})
    assert one == {"a": "mail <EMAIL_1> now"}
    assert other == {"a": "call <EMAIL_2> today"}
    assert scrubber.payload({"a": "mail jane@example.com now"}) == one


def test_a_long_value_found_clean_is_not_scanned_again_and_a_dirty_one_always_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from haltgate.governance.audit import redact

    scans: list[int] = []
    spans = redact._spans

    def counted(text: str) -> list[tuple[int, int, str]]:
        scans.append(len(text))
        return spans(text)

    monkeypatch.setattr(redact, "_spans", counted)
    clean = "a long message without anything to redact in it. " * 30
    dirty = clean + " write to jane.doe@example.com"
    assert len(clean) > 512
    for _ in range(3):
        assert AuditScrubber(redact=True).text(clean) == clean
        assert AuditScrubber(redact=True).text(dirty).endswith("write to <EMAIL_1>")
    assert scans.count(len(clean)) == 1  # clean: scanned once, then known by its digest
    assert scans.count(len(dirty)) == 3  # redacted values are never cached
    # A lone surrogate (from a JSON escape) is hashed, not refused.
    odd = clean + "\ud800"
    assert AuditScrubber(redact=True).text(odd) == odd
