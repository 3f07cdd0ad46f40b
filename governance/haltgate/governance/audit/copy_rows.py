"""A record's row of PostgreSQL's binary COPY format, built from its field values.

One encoder for both ends of the spool, so they cannot disagree:

- the spool writer (``row_head``) encodes the row when it seals a record, from the values
  it holds anyway, and stores it in the record's frame (format 2, audit/spool.py): the
  shipper then only joins bytes, no JSON parse and no encoding per record;
- the shipper (``row_from_fields``, via audit/binary_copy.py) encodes the rows of frames
  written before that (format 1) from their parsed JSON.

The row's columns are ``COLUMNS`` (binary_copy.py's COPY statement lists them in this
order). Binary COPY: a 16-bit field count, then per field a 32-bit length (-1 for NULL) and
the value in the type's send format. Empty optional texts are NULL; ``target`` and
``decision`` always have a value (``""`` and ``"allow"`` when empty).

``row_head`` also checks what ``record.check_types`` checks (every text field a str
without NUL, numbers finite, ``time`` in range) and more (``record_id`` a UUID, ``status``
a 32-bit integer), so a record that could not become a row is refused when it is sealed
instead of stopping the shipper later.
"""

from __future__ import annotations

import math
import struct
import uuid
from typing import TYPE_CHECKING, Any

from haltgate.governance.audit.columns import FIELD_COLUMNS

if TYPE_CHECKING:
    from haltgate.governance.audit.record import AuditRecord

__all__ = [
    "COLUMNS",
    "RecordEncodingError",
    "row_from_fields",
    "row_head",
    "row_rest",
    "text_field",
    "ts_micros",
]

COLUMNS = (
    "record_id",
    "ts",
    "seq",
    "chain_id",
    *(name for name in FIELD_COLUMNS if name not in ("prev_hash", "hash")),
    "prev_hash",
    "hash",
    "record",
)
"""Columns of haltgate.audit_records the shipper writes, in COPY order: the fixed-width
ones first (packed with one struct call), ``hash`` and ``record`` last (what the writer
knows last when it seals a record)."""

_NULL = b"\xff\xff\xff\xff"
_int32 = struct.Struct(">i").pack
_FIXED = struct.Struct(">hi16siqiq").pack  # field count; record_id uuid; ts; seq
_float8 = struct.Struct(">id").pack  # length 8 + IEEE double (cost_usd, latency_ms)
_int4 = struct.Struct(">ii").pack  # length 4 + integer (status)
_LENGTHS = [_int32(n) for n in range(1024)]  # length prefixes of short texts, prebuilt
_HASH_LENGTH = _int32(64)
_PG_EPOCH_US = 946_684_800 * 1_000_000  # timestamptz counts microseconds from 2000-01-01
_COUNT = len(COLUMNS)
_modf = math.modf


class RecordEncodingError(ValueError):
    """A record's value cannot become a column of the audit table (out of the column's
    range, or not of its type). Raised when sealing (the record is refused) and by the
    shipper for a spooled record written by something else (it stops there and retries
    rather than skip it)."""


def text_field(value: str) -> bytes:
    """A text column's value: its 32-bit length and UTF-8 bytes."""
    data = value.encode("utf-8")
    n = len(data)
    return (_LENGTHS[n] if n < 1024 else _int32(n)) + data


_SHORT: dict[str, bytes] = {}
"""Encoded values of the columns that repeat from record to record: names of the agent,
run, chain, target, model, tool, decision, codes. A key is only ever a str without NUL
(checked before it is stored). Bounded: cleared when full."""
_SHORT_MAX = 8192


def _short(value: str) -> bytes:
    encoded = text_field(value)
    if len(_SHORT) >= _SHORT_MAX:
        _SHORT.clear()
    _SHORT[value] = encoded
    return encoded


def ts_micros(when: float) -> int:
    """``ts`` of a record: microseconds since 2000-01-01 UTC, rounded the way
    ``datetime.timedelta(seconds=when)`` (and PostgreSQL parsing a microsecond timestamp)
    does, so every path gives a re-shipped record the same primary key ``(ts, record_id)``.

    Computed as timedelta does it, without building one (a third of the time): the whole
    seconds exactly, plus the fraction times 10**6 rounded half to even in double
    precision (tests/audit/test_binary_copy.py compares the two on 120,000 values)."""
    fraction, whole = math.modf(when)
    return int(whole) * 1_000_000 + round(fraction * 1e6) - _PG_EPOCH_US


def uuid_bytes(value: str) -> bytes:
    """The 16 bytes of the UUID ``value``; ``RecordEncodingError`` if it is none."""
    if type(value) is str and len(value) == 36 and value.count("-") == 4:
        try:
            raw = bytes.fromhex(value.replace("-", ""))
        except ValueError:
            raw = b""
        if len(raw) == 16:
            return raw
    try:
        return uuid.UUID(value).bytes  # braces, no hyphens, urn: prefix
    except (ValueError, TypeError, AttributeError):
        raise RecordEncodingError(
            f"audit record field record_id is not a UUID: {value!r}"[:200]
        ) from None


def row_from_fields(d: dict[str, Any], when: float, record: bytes) -> bytes:
    """The row of a spooled record from its parsed fields ``d`` (its JSON ``record``,
    frame time ``when``). Raises like the struct packing (the caller names the field)."""
    g = d.get
    c = _SHORT.get
    kind, model, tool, failure, code = (
        g("kind"),
        g("model"),
        g("tool"),
        g("failure_type"),
        g("code"),
    )
    cost, latency, status = g("cost_usd"), g("latency_ms"), g("status")
    n = len(record)
    chain, phase, namespace, workload, pod, run = (
        d["chain_id"],
        d["phase"],
        d["namespace"],
        d["workload"],
        d["pod"],
        d["run_id"],
    )
    target, decision = g("target") or "", g("decision") or "allow"
    return b"".join(
        (
            _FIXED(_COUNT, 16, uuid_bytes(d["record_id"]), 8, ts_micros(when), 8, d["seq"]),
            c(chain) or _short(chain),
            text_field(d["decision_id"]),
            c(phase) or _short(phase),
            c(namespace) or _short(namespace),
            c(workload) or _short(workload),
            c(pod) or _short(pod),
            c(run) or _short(run),
            (c(kind) or _short(kind)) if kind else _NULL,
            c(target) or _short(target),
            (c(model) or _short(model)) if model else _NULL,
            (c(tool) or _short(tool)) if tool else _NULL,
            c(decision) or _short(decision),
            (c(failure) or _short(failure)) if failure else _NULL,
            (c(code) or _short(code)) if code else _NULL,
            _NULL if cost is None else _float8(8, cost),
            _NULL if latency is None else _float8(8, latency),
            _NULL if status is None else _int4(4, status),
            text_field(d["prev_hash"]),
            text_field(d["hash"]),
            _LENGTHS[n] if n < 1024 else _int32(n),
            record,
        )
    )


def _bad(name: str, optional: bool) -> TypeError:
    return TypeError(
        f"audit record field {name} must be a str without NUL" + (" or None" if optional else "")
    )


def _col(value: Any, name: str) -> bytes:
    """A repeating text column (required): cached, checked once per distinct value."""
    try:
        encoded = _SHORT.get(value)
    except TypeError:  # unhashable: no str
        raise _bad(name, False) from None
    if encoded is not None:
        return encoded
    if type(value) is not str or "\x00" in value:
        raise _bad(name, False)
    return _short(value)


def _opt(value: Any, name: str) -> bytes:
    """A repeating text column that may be NULL (None or empty)."""
    if not value:
        if value is None or value == "":
            return _NULL
        raise _bad(name, True)
    try:
        encoded = _SHORT.get(value)
    except TypeError:  # unhashable: no str
        raise _bad(name, True) from None
    if encoded is not None:
        return encoded
    if type(value) is not str or "\x00" in value:
        raise _bad(name, True)
    return _short(value)


def _number(value: Any, name: str) -> bytes:
    if value is None:
        return _NULL
    if type(value) not in (int, float) or value != value or value in (math.inf, -math.inf):
        raise TypeError(f"audit record field {name} must be a finite number or None")
    try:
        return _float8(8, value)
    except OverflowError:  # an int beyond a double's range
        raise TypeError(f"audit record field {name} must be a finite number or None") from None


_MIDDLE: dict[tuple[Any, ...], bytes] = {}
"""The columns from ``phase`` to ``code``, encoded together, by their values: they repeat
from call to call (one agent, a few targets and models), so most records cost one lookup.
A key is stored only once every value in it passed the checks. Bounded: cleared when full."""
_MIDDLE_MAX = 8192


def _middle(key: tuple[Any, ...]) -> bytes:
    """Check and encode the columns ``phase`` to ``code`` of ``key`` (a cache miss)."""
    phase, namespace, workload, pod, run, kind, target, model, tool, decision, fail, code = key
    encoded = b"".join(
        (
            _col(phase, "phase"),
            _col(namespace, "namespace"),
            _col(workload, "workload"),
            _col(pod, "pod"),
            _col(run, "run_id"),
            _opt(kind, "kind"),
            _col(target, "target"),
            _opt(model, "model"),
            _opt(tool, "tool"),
            _col(decision, "decision") if decision != "" else _col("allow", "decision"),
            _opt(fail, "failure_type"),
            _opt(code, "code"),
        )
    )
    if len(_MIDDLE) >= _MIDDLE_MAX:
        _MIDDLE.clear()
    _MIDDLE[key] = encoded
    return encoded


def _float_field(value: Any, name: str) -> bytes:
    if type(value) is float and value - value == 0.0:  # finite (inf - inf and nan are nan)
        return _float8(8, value)
    return _number(value, name)


def row_head(record: AuditRecord, chain: str, seq: int, prev: str) -> bytes:
    """The row of ``record`` sealed as ``chain``/``seq`` after ``prev``, every column
    before ``hash`` (complete it with ``row_rest``). Raises ``TypeError`` or
    ``RecordEncodingError`` naming the field when the record cannot become a row (it is
    then refused, before it takes a sequence number); checks everything
    ``record.check_types`` does."""
    when = record.time
    if type(when) not in (int, float) or not 0 <= when < 1e11:
        raise TypeError("audit record field time must be epoch seconds")
    digest, message, chain_id = record.args_digest, record.message, record.chain_id
    if digest is not None and (type(digest) is not str or "\x00" in digest):
        raise _bad("args_digest", True)
    if message is not None and (type(message) is not str or "\x00" in message):
        raise _bad("message", True)
    if chain_id is not None and (type(chain_id) is not str or "\x00" in chain_id):
        raise _bad("chain_id", True)
    decision_id = record.decision_id
    if type(decision_id) is not str or "\x00" in decision_id:
        raise _bad("decision_id", False)
    cost, latency, status = record.cost_usd, record.latency_ms, record.status
    if status is None:
        status_field = _NULL
    elif type(status) is not int:
        raise TypeError("audit record field status must be an int or None")
    elif not -(2**31) <= status < 2**31:
        raise RecordEncodingError("audit record field status does not fit a 32-bit integer")
    else:
        status_field = _int4(4, status)
    key = (
        record.phase,
        record.namespace,
        record.workload,
        record.pod,
        record.run_id,
        record.kind,
        record.target,
        record.model,
        record.tool,
        record.decision,
        record.failure_type,
        record.code,
    )
    try:
        middle = _MIDDLE.get(key)
    except TypeError:  # an unhashable value: _middle names it
        middle = None
    if middle is None:
        middle = _middle(key)
    record_id = record.record_id
    try:  # the usual form, inline (uuid_bytes: the others, and the error)
        if record_id[8] != "-" or len(record_id) != 36:
            raise ValueError
        raw = bytes.fromhex(record_id.replace("-", ""))
        if len(raw) != 16 or record_id.count("-") != 4:
            raise ValueError
    except (ValueError, TypeError, IndexError, AttributeError):
        raw = uuid_bytes(record_id)
    fraction, whole = _modf(when)  # ts_micros, inline
    ident = decision_id.encode()
    n = len(ident)
    return b"".join(
        (
            _FIXED(
                _COUNT,
                16,
                raw,
                8,
                int(whole) * 1_000_000 + round(fraction * 1e6) - _PG_EPOCH_US,
                8,
                seq,
            ),
            _SHORT.get(chain) or _col(chain, "chain_id"),
            _LENGTHS[n] if n < 1024 else _int32(n),
            ident,
            middle,
            _NULL if cost is None else _float_field(cost, "cost_usd"),
            _NULL if latency is None else _float_field(latency, "latency_ms"),
            status_field,
            _HASH_LENGTH if len(prev) == 64 else _int32(len(prev.encode())),
            prev.encode(),
        )
    )


def row_rest(digest: str, line_length: int) -> bytes:
    """What follows ``row_head`` up to the record's JSON: its ``hash`` and the length of
    its canonical JSON line (which ends the row)."""
    n = line_length
    return b"".join((_HASH_LENGTH, digest.encode(), _LENGTHS[n] if n < 1024 else _int32(n)))
