"""Fit an audit record into one spool frame before it is sealed.

A spool frame holds at most ``MAX_FRAME`` bytes (16 MiB), and the reader (recovery, the
shipper) treats a longer length as corruption. A record that is written but cannot be read
back stops the shipper, and recovery then sets it aside as torn: a gap in the chain for a
call that did reach the upstream. So the writer checks the size with the reader's bound,
before the record takes a sequence number:

- the free-text fields are clipped (``target`` to 8 KiB, ``message`` to 4 KiB) with a
  visible ``...[truncated N bytes]`` marker;
- a ``payload`` whose JSON exceeds the spool's ``max_payload_bytes`` (1 MiB by default)
  is replaced by a marker object::

      {"truncated": true, "bytes": <size of the payload's JSON>,
       "sha256": <digest of that JSON>, "preview": <its first bytes, as text>}

  so the record says what was kept, how much was left out and how to match the original;
- whatever still does not fit is refused (``InvalidRecordError``), never written torn.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import orjson

from haltgate.governance.audit.record import AuditRecord

__all__ = [
    "MAX_MESSAGE_CHARS",
    "MAX_TARGET_CHARS",
    "TRUNCATED_KEY",
    "fit_fields",
    "fit_payload",
    "fit_record",
]

MAX_TARGET_CHARS = 8 * 1024
MAX_MESSAGE_CHARS = 4 * 1024
TRUNCATED_KEY = "truncated"
_PREVIEW_BYTES = 4 * 1024


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"...[truncated {len(text) - limit} chars]"


def truncation_marker(encoded: bytes) -> dict[str, Any]:
    """What replaces a payload too large to keep (``encoded``: its JSON)."""
    return {
        TRUNCATED_KEY: True,
        "bytes": len(encoded),
        "sha256": hashlib.sha256(encoded).hexdigest(),
        "preview": encoded[:_PREVIEW_BYTES].decode("utf-8", "ignore"),
    }


def fit_record(record: AuditRecord, max_payload_bytes: int) -> AuditRecord:
    """``record`` itself when it fits (the common case: no copy), else a copy with its
    long fields clipped and an oversized payload replaced by a truncation marker."""
    return fit_payload(fit_fields(record), max_payload_bytes)


def fit_fields(record: AuditRecord) -> AuditRecord:
    """:func:`fit_record`'s clipping of the free-text fields alone (no serialising)."""
    changes: dict[str, Any] = {}
    # A value of another type is left as it is: sealing refuses it, naming the field.
    if type(record.target) is str and len(record.target) > MAX_TARGET_CHARS:
        changes["target"] = _clip(record.target, MAX_TARGET_CHARS)
    if type(record.message) is str and len(record.message) > MAX_MESSAGE_CHARS:
        changes["message"] = _clip(record.message, MAX_MESSAGE_CHARS)
    return dataclasses.replace(record, **changes) if changes else record


def fit_payload(record: AuditRecord, max_payload_bytes: int) -> AuditRecord:
    """:func:`fit_record`'s payload check alone: the payload's JSON is serialised to be
    measured, so the spool calls it only for a record whose JSON is longer than
    ``max_payload_bytes`` (a payload that long makes a longer record; a shorter record's
    payload fits)."""
    changes: dict[str, Any] = {}
    payload = record.payload
    if payload is not None and not isinstance(payload, (int, float, bool)):
        if not (isinstance(payload, str) and len(payload) * 4 <= max_payload_bytes):
            try:
                encoded = orjson.dumps(payload)
            except TypeError:
                encoded = b""  # not JSON-ready: sealing refuses the record as before
            if len(encoded) > max_payload_bytes:
                changes["payload"] = truncation_marker(encoded)
    return dataclasses.replace(record, **changes) if changes else record
