"""Redaction: placeholders for found values (``<EMAIL_1>``) and cutting spans out of a text.

Shared by the guardrails (redact actions) and the audit scrubber, so both redact alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_PLACEHOLDER_TYPES = {
    "email": "EMAIL",
    "phone": "PHONE",
    "credit_card": "CREDIT_CARD",
    "iban": "IBAN",
    "national_id": "NATIONAL_ID",
    "ip_address": "IP_ADDRESS",
    "dob": "DOB",
}


class Redactor:
    """Hands out placeholders, the same one for the same value (``<EMAIL_1>``, ``<EMAIL_2>``).

    One redactor spans one scan, one JSON document or one stream, so a value that appears in
    several places of it gets one placeholder everywhere.
    """

    def __init__(self) -> None:
        """Start with no placeholders handed out."""
        self._seen: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}

    def placeholder(self, entity: str, value: str) -> str:
        """Placeholder for `value` of kind `entity`."""
        label = _PLACEHOLDER_TYPES.get(entity, entity.upper())
        key = (label, value)
        got = self._seen.get(key)
        if got is None:
            n = self._counts.get(label, 0) + 1
            self._counts[label] = n
            got = f"<{label}_{n}>"
            self._seen[key] = got
        return got


def apply_redactions(text: str, spans: Sequence[tuple[int, int, str]], redactor: Redactor) -> str:
    """Replace spans (merged where they overlap) by placeholders (public: the audit
    scrubber redacts with the same rules)."""
    merged: list[list[Any]] = []
    for start, end, entity in sorted(spans, key=lambda s: (s[0], -s[1])):
        if merged and start < merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1][1] = end
            continue
        merged.append([start, end, entity])
    parts: list[str] = []
    pos = 0
    for start, end, entity in merged:
        parts.append(text[pos:start])
        parts.append(redactor.placeholder(entity, text[start:end]))
        pos = end
    parts.append(text[pos:])
    return "".join(parts)
