"""Chain verification: find edited, removed, inserted and reordered records.

Each record's hash is recomputed from its canonical JSON (the stored text, never the typed
columns), and each chain is walked in sequence order:

- ``hash_mismatch``   the record's content no longer matches its hash (edited)
- ``broken_link``     ``prev_hash`` is not the previous record's hash (replaced, inserted
                      or moved; with a recomputed hash an edit shows up here)
- ``seq_gap``         sequence numbers missing (removed)
- ``duplicate_seq``   two records claim one position (inserted)
- ``missing_start``   the chain does not start at 1 (removed head), unless a time window
                      cut it
- ``out_of_order``    (exports) a chain's lines are not in sequence order
- ``column_mismatch`` (PostgreSQL) an indexed column disagrees with the record text
- ``head_mismatch``   (exports) the last record differs from the manifest's chain head:
                      removed or added at the tail
- ``unparseable``     a stored line is not a record
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import psycopg

from haltgate.governance.audit.columns import FIELD_COLUMNS
from haltgate.governance.audit.record import GENESIS_HASH, canonical_json

__all__ = ["ChainRecord", "Problem", "VerifyReport", "verify_chains", "verify_database"]

# Indexed columns compared with the record text (column -> record key).
_CHECKED_COLUMNS = ("record_id", "chain_id", "seq", *FIELD_COLUMNS)


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding. ``position`` is the 0-based index in the source (row or line)."""

    kind: str
    chain_id: str
    seq: int | None
    position: int | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "chain_id": self.chain_id,
            "seq": self.seq,
            "position": self.position,
            "detail": self.detail,
        }


@dataclass(slots=True)
class VerifyReport:
    """Result of a verification. ``ok`` when no problem was found."""

    chains: int = 0
    records: int = 0
    problems: list[Problem] = field(default_factory=list)
    heads: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Last record per chain: ``{"seq": n, "hash": h}``."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "chains": self.chains,
            "records": self.records,
            "problems": [p.as_dict() for p in self.problems],
        }


@dataclass(frozen=True, slots=True)
class ChainRecord:
    """A stored record as read back: its text, where it was, and optional typed columns."""

    text: bytes
    position: int
    columns: Mapping[str, Any] | None = None


def _recompute(doc: Mapping[str, Any]) -> str:
    body = {k: v for k, v in doc.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def _column_problems(doc: Mapping[str, Any], columns: Mapping[str, Any]) -> list[str]:
    wrong = []
    for name in _CHECKED_COLUMNS:
        if name not in columns:
            continue
        have = columns[name]
        want = doc.get(name)
        if name == "record_id":
            have = str(have)
        if name == "target":
            want = want or ""
        if have != want:
            wrong.append(name)
    ts = columns.get("ts")
    if isinstance(ts, datetime) and abs(ts.timestamp() - float(doc.get("time", 0))) > 1e-5:
        wrong.append("ts")
    return wrong


class _ChainWalk:
    """Walks one chain in the order given (sequence order), collecting problems."""

    def __init__(self, report: VerifyReport, chain: str, windowed: bool) -> None:
        self.report = report
        self.chain = chain
        self.windowed = windowed
        self.prev: dict[str, Any] | None = None
        self.max_position = -1

    def add(self, doc: dict[str, Any], rec: ChainRecord) -> None:
        report, chain = self.report, self.chain
        seq = doc.get("seq")
        report.records += 1

        def problem(kind: str, detail: str) -> None:
            report.problems.append(Problem(kind, chain, seq, rec.position, detail))

        if _recompute(doc) != doc.get("hash"):
            problem("hash_mismatch", "record content does not match its hash (edited)")
        if rec.columns is not None:
            wrong = _column_problems(doc, rec.columns)
            if wrong:
                problem("column_mismatch", f"columns differ from the record: {', '.join(wrong)}")
        if rec.position < self.max_position:
            problem("out_of_order", "record appears before an earlier-sequenced one")
        self.max_position = max(self.max_position, rec.position)
        prev = self.prev
        if not isinstance(seq, int):
            problem("unparseable", "record has no integer seq")
            return
        if prev is None:
            if seq != 1 and not self.windowed:
                problem("missing_start", f"chain starts at seq {seq}: records 1..{seq - 1} missing")
            elif seq == 1 and doc.get("prev_hash") != GENESIS_HASH:
                problem("broken_link", "first record does not link to the genesis hash")
        else:
            prev_seq = prev["seq"]
            if seq == prev_seq:
                problem("duplicate_seq", f"second record with seq {seq} (inserted)")
                return
            if seq != prev_seq + 1:
                problem("seq_gap", f"records {prev_seq + 1}..{seq - 1} missing (removed)")
            elif doc.get("prev_hash") != prev.get("hash"):
                problem(
                    "broken_link",
                    f"prev_hash does not match the hash of seq {prev_seq} "
                    "(record replaced, inserted or moved)",
                )
        self.prev = doc
        report.heads[chain] = {"seq": seq, "hash": doc.get("hash")}


def verify_chains(
    records: Iterable[ChainRecord], *, windowed: bool = False, presorted: bool = False
) -> VerifyReport:
    """Verify records of any number of chains.

    ``presorted``: records arrive grouped by chain and in sequence order (a database
    cursor); otherwise they are grouped and sorted here (an export). ``windowed``: the
    records are a time window, so chains may start after seq 1.
    """
    report = VerifyReport()
    parsed = _parse(records, report)
    if not presorted:
        by_chain: dict[str, list[tuple[dict[str, Any], ChainRecord]]] = {}
        for doc, rec in parsed:
            by_chain.setdefault(str(doc.get("chain_id")), []).append((doc, rec))
        ordered: Iterable[tuple[dict[str, Any], ChainRecord]] = (
            item
            for chain in sorted(by_chain)
            for item in sorted(by_chain[chain], key=lambda x: (_seq(x[0]), x[1].position))
        )
    else:
        ordered = parsed
    walk: _ChainWalk | None = None
    for doc, rec in ordered:
        chain = str(doc.get("chain_id"))
        if walk is None or walk.chain != chain:
            walk = _ChainWalk(report, chain, windowed)
            report.chains += 1
        walk.add(doc, rec)
    return report


def _seq(doc: Mapping[str, Any]) -> int:
    seq = doc.get("seq")
    return seq if isinstance(seq, int) else -1


def _parse(
    records: Iterable[ChainRecord], report: VerifyReport
) -> Iterator[tuple[dict[str, Any], ChainRecord]]:
    for rec in records:
        try:
            doc = orjson.loads(rec.text)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
        except (orjson.JSONDecodeError, ValueError) as e:
            report.records += 1
            report.problems.append(Problem("unparseable", "?", None, rec.position, str(e)))
            continue
        yield doc, rec


def verify_database(
    dsn: str,
    *,
    chain_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> VerifyReport:
    """Walk the chains stored in PostgreSQL (all, or one, or a time window)."""
    where: list[str] = []
    params: list[Any] = []
    if chain_id is not None:
        where.append("chain_id = %s")
        params.append(chain_id)
    if since is not None:
        where.append("ts >= %s")
        params.append(since)
    if until is not None:
        where.append("ts < %s")
        params.append(until)
    sql = (
        f"SELECT record, ts, {', '.join(_CHECKED_COLUMNS)} FROM haltgate.audit_records"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + " ORDER BY chain_id, seq, ts, record_id"
    )
    with psycopg.connect(dsn) as conn, conn.cursor(name="haltgate_audit_verify") as cur:
        cur.itersize = 5000
        cur.execute(sql, params)
        names = [d.name for d in (cur.description or ())]

        def rows() -> Iterator[ChainRecord]:
            for position, row in enumerate(cur):
                cols = dict(zip(names, row, strict=True))
                yield ChainRecord(cols.pop("record").encode(), position, cols)

        return verify_chains(rows(), windowed=since is not None, presorted=True)
