"""Sealing in one serialisation stores the same bytes as sealing in two halves.

``Chainer`` serialises a record once, with a NUL byte standing for its hash
(``record._unhashed``). The way it sealed before (two dicts, the keys before and after
``hash``, each serialised, then joined for the hash and again for the line) is kept here as
the reference: a large varied set of intent and outcome records, on several chains, is
sealed both ways and every canonical line, COPY row, chain head and spool frame must be
byte for byte the same.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from dataclasses import fields, replace
from types import MappingProxyType
from typing import Any

import orjson
import pytest

from haltgate.governance.audit.copy_rows import row_head
from haltgate.governance.audit.fit import fit_payload
from haltgate.governance.audit.record import GENESIS_HASH, AuditRecord, Chainer, chain_id_for
from haltgate.governance.audit.spool import encode_row_frame

# ------------------------------------------------------------------ the reference: two halves

_NAMES = tuple(f.name for f in fields(AuditRecord))
_MAPPINGS = ("budget_before", "budget_after", "usage", "replay", "would_refuse")
_OPTIONAL = ("replay", "enforcement", "would_refuse")
_LOW = tuple(n for n in _NAMES if n < "hash" and n != "chain_id")
_HIGH = tuple(n for n in _NAMES if n > "hash" and n not in ("seq", "prev_hash"))


def _ready(doc: dict[str, Any], optional: Iterable[str], mappings: Iterable[str]) -> None:
    for name in optional:
        if name in doc and doc[name] is None:
            del doc[name]
    for name in mappings:
        value = doc.get(name)
        if value is not None and not isinstance(value, dict):
            doc[name] = dict(value)


def _reference_halves(record: AuditRecord, chain: str, seq: int, prev: str) -> tuple[bytes, bytes]:
    low = {name: getattr(record, name) for name in _LOW}
    high = {name: getattr(record, name) for name in _HIGH}
    low["chain_id"] = chain
    high["seq"] = seq
    high["prev_hash"] = prev
    _ready(low, _OPTIONAL, _MAPPINGS)
    _ready(high, _OPTIONAL, _MAPPINGS)
    low["findings"] = [f if isinstance(f, dict) else dict(f) for f in record.findings]
    sort = orjson.OPT_SORT_KEYS
    return orjson.dumps(low, option=sort)[:-1], orjson.dumps(high, option=sort)[1:]


class ReferenceChainer:
    """The sealing as it was before the one-pass serialisation (line, row head, head)."""

    def __init__(self) -> None:
        self.heads: dict[str, tuple[int, str]] = {}

    def seal_row(
        self, record: AuditRecord, refit_above: int = 1 << 30
    ) -> tuple[bytes, bytes, str, int, str]:
        chain = record.chain_id or chain_id_for(record)
        head = self.heads.get(chain)
        seq = 1 if head is None else head[0] + 1
        prev = GENESIS_HASH if head is None else head[1]
        row = row_head(record, chain, seq, prev)
        low, high = _reference_halves(record, chain, seq, prev)
        if len(low) + 1 + len(high) > refit_above:
            fitted = fit_payload(record, refit_above)
            if fitted is not record:
                low, high = _reference_halves(fitted, chain, seq, prev)
        digest = hashlib.sha256(low + b"," + high).hexdigest()
        self.heads[chain] = (seq, digest)
        line = low + b',"hash":"' + digest.encode() + b'",' + high
        return line, row, chain, seq, digest


# ------------------------------------------------------------------ the records

_TEXTS = (
    "",
    "plain",
    "naïve 日本語 🛑 e\u0301 \u2028 \\N \t tab \n nl",
    'quote " and ,"hash":"' + "0" * 64 + '",',
    '"kind":"llm"}',
    "\x01\x1f control",
    "\U0001f600" * 40,
)


def _value(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.randrange(10 if depth < 3 else 6)
    if pick == 0:
        return None
    if pick == 1:
        return rng.choice((True, False))
    if pick == 2:
        return rng.choice((0, -1, 7, 2**53 + 1, -(2**63), 2**64 - 1))
    if pick == 3:
        return rng.choice((0.0, -0.0, 1e-7, 0.00004485, 1e300, 1 / 3, 1796687963.7719014))
    if pick in (4, 5):
        return rng.choice(_TEXTS) + str(rng.randrange(1000))
    if pick in (6, 7):
        return _doc(rng, depth)
    return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]


def _doc(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    keys = rng.sample(("b", "a", "hash", "kind", "findings", "Z", "é", "a b", "\x00k"), 4)
    return {k: _value(rng, depth + 1) for k in keys}


def _replay(rng: random.Random) -> dict[str, Any]:
    return {
        "v": 1,
        "policy": "8c90a82d" * 8,
        "engine": "builtin",
        "stages": [{"stage": "tools", "rule": "llm", "result": "allow"}, {"stage": "budget"}],
        "decided_by": rng.choice((None, "budget", "tools")),
        "risk": rng.random(),
        "budget": {
            "before": {"used": [0, 1.5, 2], "halt": None, "meters": ["calls/hour-rolling"]},
            "event": {"ts": rng.random() * 1e9, "model": rng.choice(_TEXTS), "tool": None},
        },
    }


def _record(rng: random.Random, i: int) -> AuditRecord:
    phase = rng.choice(("intent", "outcome", "connection"))
    outcome = phase != "intent"
    opt = rng.random
    return AuditRecord(
        decision_id=f"d{i:x}-{rng.choice(_TEXTS)}",
        time=rng.choice((1796687963.7719014, 1.5, 0, 99999999999.0, rng.random() * 2e9)),
        phase=phase,  # type: ignore[arg-type]
        namespace=rng.choice(("", "team-a", "ns")),
        workload=rng.choice(("", "agent", "wörk")),
        pod=rng.choice(("", "pod-1", "pod-2")),
        run_id=rng.choice(("", "run-1", "d804e96a665243428280d9cbdc0de19f")),
        kind=rng.choice((None, "llm", "mcp", "http", "connection")),
        target=rng.choice(_TEXTS) + " POST http://127.0.0.1/v1/chat/completions",
        model=rng.choice((None, "gpt-4o-mini", "", "modèle"))
        if opt() < 0.8
        else rng.choice(_TEXTS),
        tool=rng.choice((None, "search", "")),
        args_digest=rng.choice((None, "d32630ff" * 8)),
        decision=rng.choice(("allow", "deny", "")),
        failure_type=rng.choice((None, "EXHAUSTION", "SAFETY")),
        code=rng.choice((None, "tokens_exhausted", "")),
        message=rng.choice((None, *_TEXTS)),
        budget_before=MappingProxyType(_doc(rng)) if opt() < 0.3 else None,
        budget_after=MappingProxyType({"tokens": {"used": 1.0}}) if opt() < 0.3 else None,
        usage={"input_tokens": rng.randrange(9), "model": "m"} if outcome and opt() < 0.7 else None,
        cost_usd=rng.choice((None, 0.0, 0.00004485, 3)) if outcome else None,
        findings=tuple(
            rng.choice(
                (
                    {"detector": "pii", "entity": "EMAIL", "action": "redact", "hash": "x"},
                    MappingProxyType({"detector": "secrets", "kind": "key", "path": ["a", 1]}),
                    {"detector": "z", "findings": [], "\x00": "\x00"},
                )
            )
            for _ in range(rng.randrange(3))
        ),
        status=rng.choice((None, 200, 599, -1, 2**31 - 1)) if outcome else None,
        latency_ms=rng.choice((None, 0.5, 12, 1e-9)) if outcome else None,
        payload_mode=rng.choice(("none", "redacted", "full")),
        payload=_value(rng) if opt() < 0.5 else None,
        replay=_replay(rng) if opt() < 0.8 else None,
        enforcement=rng.choice((None, "monitor")),
        would_refuse={"stage": "budget", "also": [{"stage": "opa"}]} if opt() < 0.2 else None,
        chain_id=rng.choice((None, None, None, "explicit/chain", "ç/h")),
        v=rng.choice((1, 1, 2)),
    )


def _records(n: int, seed: int) -> list[AuditRecord]:
    rng = random.Random(seed)
    return [_record(rng, i) for i in range(n)]


# ------------------------------------------------------------------ the comparisons


def test_the_records_cover_what_they_should() -> None:
    records = _records(3000, seed=18)
    assert {r.phase for r in records} == {"intent", "outcome", "connection"}
    assert sum(r.replay is not None for r in records) > 2000
    assert any(isinstance(r.budget_before, MappingProxyType) for r in records)
    assert any(isinstance(r.payload, dict) for r in records)
    assert any(r.enforcement is None for r in records) and any(r.enforcement for r in records)
    assert len({r.chain_id or chain_id_for(r) for r in records}) > 20


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_pass_sealing_stores_the_same_bytes_as_two_halves(seed: int) -> None:
    chainer, reference = Chainer(), ReferenceChainer()
    for record in _records(3000, seed):
        line, row, chain, head = chainer.seal_row(record, max_bytes=1 << 24)
        want_line, want_row, want_chain, want_seq, want_hash = reference.seal_row(record)
        assert line == want_line
        assert row == want_row
        assert (chain, head.seq, head.hash) == (want_chain, want_seq, want_hash)
        # The line is the record's canonical JSON whole, and its hash covers it without
        # ``hash`` (what verify recomputes).
        doc = orjson.loads(line)
        assert doc["hash"] == head.hash
        assert line == orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
        assert encode_row_frame(row, head.hash, line, record.time) == encode_row_frame(
            want_row, want_hash, want_line, record.time
        )
    assert chainer.heads() == {c: (s, h) for c, (s, h) in reference.heads.items()}


def test_seal_and_seal_line_give_the_same_line_and_record() -> None:
    a, b = Chainer(), Chainer()
    for record in _records(500, seed=4):
        sealed, line = a.seal(record)
        line_b, chain, head = b.seal_line(record)
        assert line == line_b
        assert (sealed.chain_id, sealed.seq, sealed.hash) == (chain, head.seq, head.hash)
        assert sealed.canonical() == line


def test_a_refitted_payload_is_sealed_the_same_way() -> None:
    chainer, reference = Chainer(), ReferenceChainer()
    big = {"text": "x" * 5000, "nested": [{"k": "v" * 100}] * 20}
    for i, record in enumerate(_records(200, seed=5)):
        record = replace(record, payload=big if i % 2 else record.payload)
        line, row, _, head = chainer.seal_row(
            record,
            max_bytes=1 << 24,
            refit=lambda r: fit_payload(r, 4096),
            refit_above=4096,
        )
        want_line, want_row, _, _, want_hash = reference.seal_row(record, refit_above=4096)
        assert (line, row, head.hash) == (want_line, want_row, want_hash)
        if i % 2:
            assert orjson.loads(line)["payload"]["truncated"] is True


def test_a_raw_nul_in_the_output_is_refused_without_taking_a_seq() -> None:
    chainer = Chainer()
    first = _records(1, seed=6)[0]
    chainer.seal_line(first)
    chain = first.chain_id or chain_id_for(first)
    before = chainer.head(chain)
    bad = replace(first, payload={"raw": orjson.Fragment(b'"a\x00b"')})
    with pytest.raises(ValueError, match="raw NUL"):
        chainer.seal_line(bad)
    assert chainer.head(chain) == before
    # A NUL inside a string is escaped: sealed like any other value.
    line, _, head = chainer.seal_line(replace(first, payload={"raw": "a\x00b"}))
    assert b"\\u0000" in line and head.seq == before.seq + 1


def test_a_record_that_is_not_json_ready_is_refused_without_taking_a_seq() -> None:
    chainer = Chainer()
    first = _records(1, seed=7)[0]
    chainer.seal_line(first)
    chain = first.chain_id or chain_id_for(first)
    before = chainer.head(chain)
    with pytest.raises(TypeError):
        chainer.seal_line(replace(first, payload={1: "non-str key"}))
    with pytest.raises(TypeError):
        chainer.seal_line(replace(first, payload=object()))
    assert chainer.head(chain) == before
