"""Sealing, canonical JSON and the hash chain of audit records."""

from __future__ import annotations

import hashlib

import orjson
import pytest

from haltgate.governance.audit import (
    GENESIS_HASH,
    AuditRecord,
    AuditSink,
    AuditUnavailableError,
    InvalidRecordError,
    MemoryAuditSink,
    canonical_json,
    record_hash,
)
from haltgate.governance.audit.record import Chainer, ChainHead
from tests.audit.helpers import make_record


def test_canonical_json_is_sorted_compact_utf8() -> None:
    out = canonical_json({"b": 1, "a": {"d": "é", "c": [1.5, None]}})
    assert out == '{"a":{"c":[1.5,null],"d":"é"},"b":1}'.encode()


def test_seal_links_records_and_hash_covers_every_field() -> None:
    chainer = Chainer()
    first, line1 = chainer.seal(make_record(0))
    second, line2 = chainer.seal(make_record(1))
    assert (first.seq, first.prev_hash) == (1, GENESIS_HASH)
    assert (second.seq, second.prev_hash) == (2, first.hash)
    assert first.chain_id == "team-a/agent-0/run-1"
    doc = orjson.loads(line1)
    assert doc["hash"] == first.hash == record_hash(doc)
    body = {k: v for k, v in doc.items() if k != "hash"}
    assert hashlib.sha256(canonical_json(body)).hexdigest() == first.hash
    doc["cost_usd"] = 0.5
    assert record_hash(doc) != first.hash
    assert AuditRecord.from_json(line2) == second


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"replay": {"v": 1, "stages": []}, "enforcement": "monitor"},
        {"would_refuse": {"stage": "tools", "code": "x"}, "enforcement": "monitor"},
        {"findings": ({"detector": "pii", "kind": "email"},), "usage": {"kind": 1}},
        {"chain_id": "custom/chain", "payload": {"hash": "h", "kind": [1, {"seq": 2}]}},
    ],
)
def test_sealed_line_is_the_canonical_json_of_the_sealed_record(overrides: dict) -> None:
    # The sealer serialises once, in two halves around "hash": its line must be exactly
    # what serialising the sealed record whole gives, and its hash what verify recomputes.
    chainer = Chainer()
    for i in range(2):
        sealed, line = chainer.seal(make_record(i, **overrides))
        assert line == canonical_json(sealed.to_dict()) == sealed.canonical()
        assert sealed.hash == record_hash(orjson.loads(line))
        raw, chain, head = chainer.seal_line(make_record(i + 2, **overrides))
        doc = orjson.loads(raw)
        assert raw == canonical_json(doc)
        assert (chain, head.seq, head.hash) == (doc["chain_id"], doc["seq"], doc["hash"])
        assert head.hash == record_hash(doc)


def test_chains_are_per_run_and_resume_from_heads() -> None:
    chainer = Chainer({"team-a/agent-0/run-1": ChainHead(41, "f" * 64)})
    resumed, _ = chainer.seal(make_record(0))
    other, _ = chainer.seal(make_record(0, run="run-2"))
    assert (resumed.seq, resumed.prev_hash) == (42, "f" * 64)
    assert (other.seq, other.prev_hash) == (1, GENESIS_HASH)


def test_from_dict_rejects_unknown_fields() -> None:
    doc = make_record(0).to_dict()
    doc["surprise"] = 1
    with pytest.raises(ValueError, match="surprise"):
        AuditRecord.from_dict(doc)


async def test_memory_sink_seals_in_order_and_refuses_after_close() -> None:
    sink = MemoryAuditSink()
    assert isinstance(sink, AuditSink)
    await sink.intent(make_record(0))
    await sink.outcome(make_record(1, phase="outcome"))
    assert [r.seq for r in sink.records] == [1, 2]
    assert all(r.sealed for r in sink.records)
    await sink.close()
    with pytest.raises(AuditUnavailableError):
        await sink.intent(make_record(2))


async def test_memory_sink_records_are_those_the_chainer_seals_whole() -> None:
    # The sink keeps the line's chain and hash and builds the sealed records only when
    # read: they must be exactly what sealing each record whole gives (chain, seq,
    # prev_hash, hash), over interleaved chains and reads between appends.
    sink, chainer = MemoryAuditSink(), Chainer()
    expected: list[AuditRecord] = []
    for i in range(9):
        record = make_record(i, run=f"run-{i % 2}", phase="outcome" if i % 3 else "intent")
        await (sink.outcome if i % 3 else sink.intent)(record)
        expected.append(chainer.seal(record)[0])
        if i in (2, 3):
            assert sink.records == expected
    got = sink.records
    assert got == expected
    assert [r.seq for r in got if r.run_id == "run-0"] == [1, 2, 3, 4, 5]
    for record in got:
        assert record.hash == record_hash(record.to_dict())
        assert AuditRecord.from_json(record.canonical()) == record


@pytest.mark.parametrize(
    "overrides",
    [
        {"cost_usd": "0.1"},
        {"cost_usd": float("nan")},
        {"status": 200.0},
        {"seq_": None},
        {"target": None},
        {"tool": 3},
        {"namespace": "a\x00b"},
        {"time": "now"},
    ],
)
async def test_columns_with_wrong_types_are_refused_at_intent(overrides: dict) -> None:
    overrides = {k: v for k, v in overrides.items() if k != "seq_"} or {"decision_id": 7}
    sink = MemoryAuditSink()
    with pytest.raises(InvalidRecordError):
        await sink.intent(make_record(0, **overrides))
    await sink.intent(make_record(1))
    assert sink.records[0].seq == 1
