"""The top-level fields of a spooled record, parsed without its replay inputs.

The shipper needs a record's scalar fields for the table's columns, never its ``replay``
inputs: in a sidecar's LLM intent they are more than half of the 2.3 KB line, and most of
what ``orjson.loads`` spends building Python objects. ``record_fields`` cuts them out of the
canonical JSON before parsing: from the last ``,"replay":{`` up to the last ``,"run_id":"``
(the key that follows ``replay`` in sorted order, always present).

Why the result is exact whenever it is used. Inside a JSON string every ``"`` is escaped, so
both patterns only ever match at keys. Removing a span keeps the nesting depth of every
byte outside it only if the span starts and ends at the same depth; otherwise the text is
no longer valid JSON and the full line is parsed instead. At depth 1 the span is exactly
the top-level keys from ``replay`` up to ``run_id``, and no column is among them. At a
deeper depth both ends lie inside container fields (objects or lists): the same one (then
no top-level key is touched), or two different ones, the second after ``run_id`` (the
last ``,"run_id":"`` is at or after the top-level key): then the span removes top-level
keys, and the check below makes sure a required column key is always among them, which
the result then lacks, and the full line is parsed. ``cut_is_exact`` verifies that
property on the record layout at import; if a future field breaks it, the cut is never
taken (``tests/audit/test_record_fields.py`` fails on that too). The argument needs the
keys sorted, as in every canonical line the spool writer seals; a line written otherwise
could lose an optional column value here, which ``verify`` reports as ``column_mismatch``.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import orjson

from haltgate.governance.audit.columns import FIELD_COLUMNS
from haltgate.governance.audit.record import AuditRecord

__all__ = ["CUT_IS_EXACT", "REQUIRED_FIELDS", "cut_is_exact", "record_fields"]

REQUIRED_FIELDS = frozenset(
    (
        "record_id",
        "seq",
        "chain_id",
        "prev_hash",
        "hash",
        "decision_id",
        "phase",
        "namespace",
        "workload",
        "pod",
        "run_id",
    )
)
"""Fields every sealed record has and the shipper reads without a default."""

_COLUMN_FIELDS = frozenset(("record_id", "seq", "chain_id", *FIELD_COLUMNS))
"""The record fields the shipper writes to columns (the key columns, then columns.py's)."""
_SCALAR_TYPES = frozenset(("str", "int", "float", "bool", "None", "Phase", "PayloadMode"))
_REPLAY = b',"replay":{'
_RUN_ID = b',"run_id":"'


def cut_is_exact(names: list[str], containers: list[str]) -> bool:
    """The layout property the module docstring relies on, for records whose top-level
    keys are ``names``, of which ``containers`` may hold objects or lists."""
    if "replay" not in containers or "run_id" not in names:
        return False
    # The intended cut: the keys from replay up to run_id hold no column.
    if any("replay" <= n < "run_id" for n in names if n in _COLUMN_FIELDS):
        return False
    # A cut between two containers, the second after run_id: a column among the removed
    # keys only with a required one (its absence sends the line to the full parse).
    for first in containers:
        for second in containers:
            if first < second and second > "run_id":
                removed = {n for n in names if first < n <= second}
                if removed & _COLUMN_FIELDS and not removed & REQUIRED_FIELDS:
                    return False
    return True


def _layout() -> tuple[list[str], list[str]]:
    """``AuditRecord``'s field names, and those whose type is not a scalar."""
    names = [f.name for f in fields(AuditRecord)]
    containers = [
        f.name
        for f in fields(AuditRecord)
        if not {part.strip() for part in str(f.type).split("|")} <= _SCALAR_TYPES
    ]
    return names, containers


CUT_IS_EXACT = cut_is_exact(*_layout())
"""Whether ``record_fields`` may cut the replay inputs out (the record layout allows it)."""


def record_fields(data: bytes) -> dict[str, Any]:
    """The record ``data`` (canonical JSON) as a dict: without ``replay`` when it can be cut
    out exactly (module docstring), else the whole record. Raises orjson.JSONDecodeError
    when the line is not JSON."""
    if CUT_IS_EXACT:
        start = data.rfind(_REPLAY)
        if start > 0:
            end = data.rfind(_RUN_ID)
            if end > start:
                try:
                    doc = orjson.loads(data[:start] + data[end:])
                except orjson.JSONDecodeError:
                    doc = None
                if type(doc) is dict and REQUIRED_FIELDS <= doc.keys():
                    return doc
    return orjson.loads(data)
