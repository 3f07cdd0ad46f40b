"""The audit record: schema, canonical JSON and the per-run hash chain.

A record is what the sidecar knows about one decision. The caller fills in the facts; the
sink seals the record: it assigns the chain (one per agent run), the sequence number, the
previous record's hash and the record's own hash. The hash is SHA-256 over the canonical JSON
form of every field except ``hash`` itself (keys sorted, no whitespace, UTF-8), so editing,
removing, inserting or reordering a record breaks the chain where it happened.

The canonical JSON line (with ``hash``) is the unit stored everywhere: spool frames, the
``record`` column in PostgreSQL and the lines of an S3 export. Verification always recomputes
from that text, never from typed columns.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, NamedTuple

import orjson

from haltgate.governance.audit.copy_rows import row_head

__all__ = [
    "GENESIS_HASH",
    "SCHEMA_VERSION",
    "AuditRecord",
    "ChainHead",
    "Chainer",
    "Phase",
    "canonical_json",
    "chain_id_for",
    "record_hash",
]

SCHEMA_VERSION = 1
"""Version of the record layout, stored in every record as ``v``."""

GENESIS_HASH = "0" * 64
"""``prev_hash`` of the first record of a chain."""

Phase = Literal["intent", "outcome", "connection"]
PayloadMode = Literal["none", "redacted", "full"]

_SORTED = orjson.OPT_SORT_KEYS
_CHAIN_FIELDS = frozenset({"chain_id", "seq", "prev_hash", "hash"})


# Record ids are random version-4 UUIDs. Their bits come from a generator seeded once from
# the OS (re-seeded in a forked child) rather than uuid.uuid4(): os.urandom is a system call
# that releases the GIL, and on the sidecar's hot path (two records per call) that hands the
# GIL to the spool's writer thread and back. Ids must be unique, not secret.
_id_bits = random.Random(os.urandom(32)).getrandbits
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def _reseed_ids() -> None:
    global _id_bits
    _id_bits = random.Random(os.urandom(32)).getrandbits


os.register_at_fork(after_in_child=_reseed_ids)


def _new_record_id() -> str:
    h = format((_id_bits(128) & _UUID4_CLEAR) | _UUID4_SET, "032x")
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecord:
    """One audit record. The caller sets the facts; the sink assigns the chain fields.

    ``time`` is epoch seconds (float) as given by the caller, the same clock as the budget
    engine's event timestamps. Dictionaries and lists must be JSON-ready (str keys; str, int,
    float, bool, None, list, dict values).
    """

    decision_id: str
    """Id of the decision; also sent to the agent in ``x-haltgate-decision-id``."""
    time: float
    """When the decision was made, epoch seconds."""
    phase: Phase
    """``intent`` (before forwarding), ``outcome`` (after) or ``connection`` (tunnel)."""
    namespace: str = ""
    workload: str = ""
    pod: str = ""
    run_id: str = ""
    kind: str | None = None
    """``llm``, ``mcp``, ``http``, ``connection``, or ``None`` when unclassified."""
    target: str = ""
    """Method and URL (or host:port for a connection), e.g. ``POST https://h/v1/x``."""
    model: str | None = None
    tool: str | None = None
    """MCP tool name (first of a batch) or HTTP tool rule, if any."""
    args_digest: str | None = None
    """SHA-256 of the tool arguments (or request body), hex, so repeats are visible."""
    decision: str = "allow"
    """``allow`` or ``deny``."""
    failure_type: str | None = None
    """EXHAUSTION, STAGNATION, OVERRISK, SAFETY or EXTERNAL when the decision is a halt."""
    code: str | None = None
    """Stable snake_case reason code, e.g. ``tokens_exhausted``."""
    message: str | None = None
    budget_before: Mapping[str, Any] | None = None
    budget_after: Mapping[str, Any] | None = None
    usage: Mapping[str, Any] | None = None
    cost_usd: float | None = None
    findings: tuple[Mapping[str, Any], ...] = ()
    """Guardrail findings (detector, entity, action, ...): never the matched text."""
    status: int | None = None
    """Upstream HTTP status on an outcome."""
    latency_ms: float | None = None
    payload_mode: PayloadMode = "none"
    payload: Any = None
    """What the policy asked to keep of the bodies (already redacted by the caller)."""
    replay: Mapping[str, Any] | None = None
    """What ``haltgate audit explain``/``replay`` need to re-derive the decision: policy
    digest, stages, the budget engine's event and its view of the run before it (never a
    payload value; see ``docs/audit.md``). Absent from the JSON when ``None``, so records
    written before it existed keep their bytes and hashes."""
    enforcement: str | None = None
    """``monitor`` when the policy ran in monitor mode (``spec.enforcement``); absent
    (``None``) under ``enforce``, so those records keep their layout."""
    would_refuse: Mapping[str, Any] | None = None
    """Monitor mode: the first refusal the policy would have made (``stage``, ``code``,
    ``failure_type``; ``also``: later stages that would have refused too). The call went
    on. Absent when none."""
    record_id: str = field(default_factory=_new_record_id)
    v: int = SCHEMA_VERSION
    chain_id: str | None = None
    """Assigned by the sink (``chain_id_for``) unless the caller sets it."""
    seq: int | None = None
    prev_hash: str | None = None
    hash: str | None = None

    @property
    def sealed(self) -> bool:
        """True once the sink assigned chain, sequence number and hashes."""
        return self.hash is not None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dictionary of every field (shallow: nested values are shared)."""
        # Not dataclasses.asdict: it deep-copies every nested dict (~150 us per record),
        # which is most of the cost of sealing; orjson only needs dicts and lists.
        doc = {name: getattr(self, name) for name in _FIELD_NAMES}
        _json_ready(doc, _OPTIONAL_FIELDS, _MAPPING_FIELDS)
        doc["findings"] = [f if isinstance(f, dict) else dict(f) for f in self.findings]
        return doc

    def canonical(self) -> bytes:
        """Canonical JSON of the whole record (with ``hash``): the stored form."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> AuditRecord:
        """Inverse of ``to_dict``; unknown keys (a newer schema) are an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(doc) - known
        if unknown:
            raise ValueError(f"unknown audit record fields: {sorted(unknown)}")
        data = dict(doc)
        data["findings"] = tuple(data.get("findings") or ())
        return cls(**data)

    @classmethod
    def from_json(cls, line: bytes | str) -> AuditRecord:
        """Parse one canonical JSON line."""
        return cls.from_dict(orjson.loads(line))


_FIELD_NAMES = tuple(f.name for f in fields(AuditRecord))
_MAPPING_FIELDS = ("budget_before", "budget_after", "usage", "replay", "would_refuse")
_OPTIONAL_FIELDS = ("replay", "enforcement", "would_refuse")
"""Fields left out of the JSON when ``None`` (added after the first layout: older records
keep their bytes and hashes)."""


_LOW_NAMES = tuple(n for n in _FIELD_NAMES if n < "hash" and n != "chain_id")
_HIGH_NAMES = tuple(n for n in _FIELD_NAMES if n > "hash" and n not in ("seq", "prev_hash"))
_LOW_OPTIONAL = tuple(n for n in _OPTIONAL_FIELDS if n < "hash")
_HIGH_OPTIONAL = tuple(n for n in _OPTIONAL_FIELDS if n > "hash")
_LOW_MAPPINGS = tuple(n for n in _MAPPING_FIELDS if n < "hash")
_HIGH_MAPPINGS = tuple(n for n in _MAPPING_FIELDS if n > "hash")
assert min(_HIGH_NAMES) > "hash" > max(_LOW_NAMES) and "chain_id" < "hash" < "prev_hash" < "seq"


def _json_ready(doc: dict[str, Any], optional: Iterable[str], mappings: Iterable[str]) -> None:
    """Drop the optional fields of ``doc`` that are None and make its mapping fields plain
    dicts (in place; shallow, as orjson needs)."""
    for name in optional:
        if doc[name] is None:
            del doc[name]
    for name in mappings:
        value = doc.get(name)
        if value is not None and not isinstance(value, dict):
            doc[name] = dict(value)


def _halves(
    record: AuditRecord, chain: str, seq: int, prev: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``record.to_dict()`` with the chain fields set and without ``hash``, split into the
    keys that sort before ``hash`` and those after (both halves are never empty)."""
    low = {name: getattr(record, name) for name in _LOW_NAMES}
    high = {name: getattr(record, name) for name in _HIGH_NAMES}
    low["chain_id"] = chain
    high["seq"] = seq
    high["prev_hash"] = prev
    _json_ready(low, _LOW_OPTIONAL, _LOW_MAPPINGS)
    _json_ready(high, _HIGH_OPTIONAL, _HIGH_MAPPINGS)
    low["findings"] = [f if isinstance(f, dict) else dict(f) for f in record.findings]
    return low, high


def _serialised(record: AuditRecord, chain: str, seq: int, prev: str) -> tuple[bytes, bytes]:
    """The canonical JSON of ``record`` sealed, without ``hash``, in two parts: up to the
    place of ``hash`` without the closing brace, and after it without the opening one."""
    low, high = _halves(record, chain, seq, prev)
    return canonical_json(low)[:-1], canonical_json(high)[1:]


def canonical_json(doc: Mapping[str, Any]) -> bytes:
    """Sorted keys, no whitespace, UTF-8 (orjson's compact output)."""
    return orjson.dumps(doc, option=_SORTED)


def record_hash(doc: Mapping[str, Any]) -> str:
    """SHA-256 (hex) over the canonical JSON of ``doc`` without its ``hash`` key."""
    body = {k: v for k, v in doc.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


_STR_FIELDS = (
    "decision_id",
    "phase",
    "namespace",
    "workload",
    "pod",
    "run_id",
    "target",
    "decision",
    "record_id",
)
_OPT_STR_FIELDS = (
    "kind",
    "model",
    "tool",
    "args_digest",
    "failure_type",
    "code",
    "message",
    "chain_id",
)
_OPT_NUM_FIELDS = ("cost_usd", "latency_ms")


_HASH_FIELD_BYTES = len(',"hash":""') + 64
"""What adding ``hash`` (hex SHA-256) to a canonical record adds to its length."""


def check_types(record: AuditRecord) -> None:
    """Raise ``TypeError`` when a field that becomes a database column has the wrong type.

    Checked when sealing, so a bad record is refused at ``intent()`` (the caller's bug,
    visible at once) instead of stopping the shipper later."""
    for name in _STR_FIELDS + _OPT_STR_FIELDS:
        value = getattr(record, name)
        if value is None and name in _OPT_STR_FIELDS:
            continue
        # PostgreSQL text cannot hold NUL: it would stop the shipper, so refuse it here.
        if type(value) is not str or "\x00" in value:
            raise TypeError(
                f"audit record field {name} must be a str without NUL"
                + (" or None" if name in _OPT_STR_FIELDS else "")
            )
    for name in _OPT_NUM_FIELDS:
        value = getattr(record, name)
        if value is not None and (type(value) not in (int, float) or value != value):
            raise TypeError(f"audit record field {name} must be a finite number or None")
    if record.status is not None and type(record.status) is not int:
        raise TypeError("audit record field status must be an int or None")
    if type(record.time) not in (int, float) or not 0 <= record.time < 1e11:
        raise TypeError("audit record field time must be epoch seconds")


def chain_id_for(record: AuditRecord) -> str:
    """Default chain of a record: one per agent run in one pod.

    The pod is part of it because two replicas may carry the same run id while each writes
    its own spool; a restarted container keeps its pod name and spool and so its chain.
    """
    return f"{record.namespace}/{record.pod}/{record.run_id}"


class ChainHead(NamedTuple):
    """Last sealed record of a chain: its sequence number and hash. A named tuple, not a
    frozen dataclass: one is built per sealed record, and a tuple is built ~4x faster
    (~0.25 instead of ~1 us)."""

    seq: int
    hash: str


class Chainer:
    """Assigns chain fields in append order. Thread-safe; one per spool (or memory sink).

    ``heads`` restores the chains after a restart so a sidecar continues its runs' chains.
    """

    def __init__(self, heads: Mapping[str, ChainHead] | None = None) -> None:
        self._heads: dict[str, ChainHead] = dict(heads or {})
        self._lock = threading.Lock()

    def seal(self, record: AuditRecord) -> tuple[AuditRecord, bytes]:
        """Return the sealed record and its canonical JSON line (without newline)."""
        with self._lock:
            chain, prev, _, line, _, head = self._seal_locked(record)
        seq, digest = head
        sealed = replace(record, chain_id=chain, seq=seq, prev_hash=prev, hash=digest)
        return sealed, line

    def seal_line(
        self,
        record: AuditRecord,
        max_bytes: int | None = None,
        *,
        refit: Callable[[AuditRecord], AuditRecord] | None = None,
        refit_above: int = 0,
    ) -> tuple[bytes, str, ChainHead]:
        """Seal ``record``; return its canonical JSON line, chain and new head (the spool's
        hot path: building the sealed dataclass costs as much as the hashing).
        ``max_bytes``: a longer line raises ``ValueError`` before the chain advances.
        ``refit``: when the record's JSON is longer than ``refit_above`` bytes, what is
        sealed is ``refit(record)`` (the spool's payload bound: measured only then)."""
        with self._lock:
            chain, _, _, line, _, head = self._seal_locked(record, max_bytes, refit, refit_above)
        return line, chain, head

    def seal_row(
        self,
        record: AuditRecord,
        max_bytes: int | None = None,
        *,
        refit: Callable[[AuditRecord], AuditRecord] | None = None,
        refit_above: int = 0,
    ) -> tuple[bytes, bytes, str, ChainHead]:
        """``seal_line``, and the record's binary COPY row up to its ``hash`` column
        (audit/copy_rows.py ``row_head``; ``row_rest`` completes it): ``(line, row head,
        chain, head)``. The row is encoded from the values in hand (no JSON parse) and
        checked as ``check_types`` checks, plus what a column cannot hold (a ``record_id``
        that is no UUID, a ``status`` beyond 32 bits): such a record raises
        ``TypeError``/``ValueError`` before the chain advances. ``max_bytes`` bounds the
        line and the row together."""
        with self._lock:
            chain, _, _, line, prefix, head = self._seal_locked(
                record, max_bytes, refit, refit_above, row=True
            )
        assert prefix is not None
        return line, prefix, chain, head

    def _seal_locked(
        self,
        record: AuditRecord,
        max_bytes: int | None = None,
        refit: Callable[[AuditRecord], AuditRecord] | None = None,
        refit_above: int = 0,
        *,
        row: bool = False,
    ) -> tuple[str, str, int, bytes, bytes | None, ChainHead]:
        """(chain, prev_hash, size, canonical line, row head or None, new chain head) of
        ``record`` sealed."""
        chain = record.chain_id or chain_id_for(record)
        head = self._heads.get(chain)
        seq = 1 if head is None else head.seq + 1
        prev = GENESIS_HASH if head is None else head.hash
        row_start = None
        if row:  # checks what check_types checks, as it encodes
            row_start = row_head(record, chain, seq, prev)
            extra = len(row_start) + 72
        else:
            check_types(record)
            extra = 0
        # Serialised once, in two halves: the keys that sort before "hash" and those after.
        # Joined they are the canonical JSON without ``hash`` (what the hash covers); with
        # ``"hash":"..."`` between them, the sealed line: the same bytes as serialising the
        # sealed record whole, without serialising it twice.
        # Serialising first means a record that is not JSON-ready raises before the chain
        # advances: a refused record never takes a sequence number.
        head_part, tail_part = _serialised(record, chain, seq, prev)
        size = len(head_part) + 1 + len(tail_part)
        if refit is not None and size > refit_above:
            fitted = refit(record)
            if fitted is not record:
                head_part, tail_part = _serialised(fitted, chain, seq, prev)
                size = len(head_part) + 1 + len(tail_part)
        if max_bytes is not None and size + _HASH_FIELD_BYTES + extra > max_bytes:
            raise ValueError(
                f"sealed record would be {size} bytes, over the {max_bytes}-byte frame bound"
            )
        digest = hashlib.sha256(b"".join((head_part, b",", tail_part))).hexdigest()
        self._heads[chain] = new = ChainHead(seq, digest)
        line = b"".join((head_part, b',"hash":"', digest.encode(), b'",', tail_part))
        return chain, prev, size, line, row_start, new

    def advance(self, chain: str, head: ChainHead) -> None:
        """Record ``head`` as the chain's last record (recovery replays the spool)."""
        with self._lock:
            self._heads[chain] = head

    def head(self, chain: str) -> ChainHead | None:
        """Current head of ``chain``."""
        with self._lock:
            return self._heads.get(chain)

    def heads(self) -> dict[str, ChainHead]:
        """Copy of all chain heads."""
        with self._lock:
            return dict(self._heads)


def is_chain_field(name: str) -> bool:
    """True for the fields the sink assigns."""
    return name in _CHAIN_FIELDS
