"""Export the audit trail to S3-compatible storage, verifiable offline.

An export of the window ``since <= ts < until`` is a set of objects under one prefix::

    records-000001.jsonl.gz   canonical record lines, by chain then sequence number
    ...
    manifest.json             window, counts, SHA-256 of every object, chain heads
    _progress.json            while running: what is done, so a rerun resumes

Records are read in ``(chain_id, seq, record_id)`` order, so resuming is a keyset query
after the last exported record and a chain never interleaves with another. The manifest
carries for each chain its first sequence number and ``prev_hash`` and its head (last
sequence number and hash): ``verify_export`` recomputes every hash and link from the lines
and checks them against the manifest, so a removed, added, edited or reordered record, a
changed object or a truncated chain is found without the database.

Choose ``until`` older than the shipping lag: a record shipped late into an exported window
is not in that export (verify the database for it).
"""

from __future__ import annotations

import gzip
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

import orjson
import psycopg

from haltgate.governance.audit.verify import ChainRecord, Problem, VerifyReport, verify_chains

__all__ = ["FORMAT", "ExportResult", "export", "open_store", "verify_export"]

FORMAT = "haltgate-audit-export/1"
MANIFEST = "manifest.json"
PROGRESS = "_progress.json"


class ExportError(Exception):
    """The export cannot proceed (a different export under the prefix, a missing object)."""


class Store(Protocol):
    """Where export objects go: S3 (boto3) or a local directory."""

    def put(self, name: str, data: bytes, content_type: str) -> None: ...
    def get(self, name: str) -> bytes | None: ...


class S3Store:
    """Objects under ``s3://bucket/prefix`` (AWS or any S3-compatible endpoint)."""

    def __init__(
        self, bucket: str, prefix: str, *, endpoint_url: str | None = None, client: Any = None
    ) -> None:
        if client is None:
            import boto3

            client = boto3.client("s3", endpoint_url=endpoint_url)
        self._s3 = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def put(self, name: str, data: bytes, content_type: str) -> None:
        self._s3.put_object(
            Bucket=self.bucket,
            Key=self._key(name),
            Body=data,
            ContentType=content_type,
            ChecksumAlgorithm="SHA256",
        )

    def get(self, name: str) -> bytes | None:
        try:
            response = self._s3.get_object(Bucket=self.bucket, Key=self._key(name))
        except self._s3.exceptions.NoSuchKey:
            return None
        body: bytes = response["Body"].read()
        return body


class DirStore:
    """Objects as files in a local directory (offline copies, tests)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def put(self, name: str, data: bytes, content_type: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.path / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.replace(self.path / name)

    def get(self, name: str) -> bytes | None:
        try:
            return (self.path / name).read_bytes()
        except FileNotFoundError:
            return None


def open_store(url: str, *, endpoint_url: str | None = None, client: Any = None) -> Store:
    """``s3://bucket/prefix`` or a local directory path."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ExportError(f"no bucket in {url!r}")
        return S3Store(parsed.netloc, parsed.path, endpoint_url=endpoint_url, client=client)
    if parsed.scheme in ("", "file"):
        return DirStore(Path(parsed.path if parsed.scheme else url))
    raise ExportError(f"unsupported export location {url!r} (s3://bucket/prefix or a path)")


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What ``export`` did."""

    manifest: dict[str, Any]
    objects_written: int
    resumed: bool
    already_complete: bool


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _batches(
    dsn: str, since: datetime, until: datetime, after: list[Any] | None, size: int
) -> Iterator[list[tuple[str, int, str, str]]]:
    """Rows ``(chain_id, seq, record_id, record)`` in export order, ``size`` at a time."""
    where = ["ts >= %s", "ts < %s"]
    params: list[Any] = [since, until]
    if after is not None:
        where.append("(chain_id, seq, record_id) > (%s, %s, %s::uuid)")
        params.extend(after)
    sql = (
        "SELECT chain_id, seq, record_id::text, record FROM haltgate.audit_records"
        f" WHERE {' AND '.join(where)} ORDER BY chain_id, seq, record_id"
    )
    with psycopg.connect(dsn) as conn, conn.cursor(name="haltgate_audit_export") as cur:
        cur.itersize = min(size, 10000)
        cur.execute(sql, params)
        while True:
            rows = cur.fetchmany(size)
            if not rows:
                return
            yield rows


def export(
    dsn: str,
    url: str,
    *,
    since: datetime,
    until: datetime,
    endpoint_url: str | None = None,
    records_per_object: int = 50_000,
    client: Any = None,
) -> ExportResult:
    """Export ``since <= ts < until`` to ``url``; resume an interrupted run of the same window.

    Each object is uploaded before the progress document that names it, and the manifest
    last: a crash at any point leaves a prefix that a rerun completes.
    """
    if until <= since:
        raise ExportError("--until must be after --since")
    store = open_store(url, endpoint_url=endpoint_url, client=client)
    window = {"since": _iso(since), "until": _iso(until)}
    existing = store.get(MANIFEST)
    if existing is not None:
        manifest = orjson.loads(existing)
        if {"since": manifest.get("since"), "until": manifest.get("until")} != window:
            raise ExportError(f"{url} already holds an export of another window")
        return ExportResult(manifest, 0, resumed=False, already_complete=True)
    progress: dict[str, Any] = {**window, "objects": [], "chains": {}, "after": None}
    resumed = False
    raw = store.get(PROGRESS)
    if raw is not None:
        saved = orjson.loads(raw)
        if {"since": saved.get("since"), "until": saved.get("until")} != window:
            raise ExportError(f"{url} holds an unfinished export of another window")
        progress, resumed = saved, True
    chains: dict[str, dict[str, Any]] = progress["chains"]
    written = 0
    for rows in _batches(dsn, since, until, progress["after"], records_per_object):
        buf = io.BytesIO()
        # mtime=0: the same rows give the same bytes, so a rerun reproduces the object.
        with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
            for chain_id, seq, _, record in rows:
                line = record.encode()
                gz.write(line + b"\n")
                doc = orjson.loads(line)
                entry = chains.get(chain_id)
                if entry is None:
                    chains[chain_id] = entry = {
                        "first_seq": seq,
                        "first_prev_hash": doc["prev_hash"],
                        "records": 0,
                    }
                entry.update(last_seq=seq, head_hash=doc["hash"])
                entry["records"] += 1
        data = buf.getvalue()
        name = f"records-{len(progress['objects']) + 1:06d}.jsonl.gz"
        store.put(name, data, "application/gzip")
        progress["objects"].append(
            {
                "name": name,
                "sha256": hashlib.sha256(data).hexdigest(),
                "bytes": len(data),
                "records": len(rows),
                "first": [rows[0][0], rows[0][1]],
                "last": [rows[-1][0], rows[-1][1]],
            }
        )
        last = rows[-1]
        progress["after"] = [last[0], last[1], last[2]]
        store.put(PROGRESS, orjson.dumps(progress), "application/json")
        written += 1
    manifest = {
        "format": FORMAT,
        **window,
        "created_at": _iso(datetime.now(UTC)),
        "records": sum(o["records"] for o in progress["objects"]),
        "objects": [
            {k: o[k] for k in ("name", "sha256", "bytes", "records")} for o in progress["objects"]
        ],
        "chains": chains,
    }
    store.put(
        MANIFEST,
        orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS),
        "application/json",
    )
    return ExportResult(manifest, written, resumed=resumed, already_complete=False)


def verify_export(url: str, *, endpoint_url: str | None = None, client: Any = None) -> VerifyReport:
    """Check an export offline: object digests and counts, every hash and link, chain heads."""
    store = open_store(url, endpoint_url=endpoint_url, client=client)
    raw = store.get(MANIFEST)
    if raw is None:
        report = VerifyReport()
        report.problems.append(
            Problem(
                "missing_manifest",
                "-",
                None,
                None,
                f"no {MANIFEST} under {url} (export unfinished?)",
            )
        )
        return report
    manifest = orjson.loads(raw)
    problems: list[Problem] = []
    lines: list[ChainRecord] = []
    for obj in manifest.get("objects", []):
        data = store.get(obj["name"])
        if data is None:
            problems.append(Problem("missing_object", "-", None, None, obj["name"]))
            continue
        if hashlib.sha256(data).hexdigest() != obj["sha256"]:
            problems.append(
                Problem(
                    "object_digest_mismatch", "-", None, None, f"{obj['name']} changed since export"
                )
            )
        body = gzip.decompress(data).splitlines()
        if len(body) != obj["records"]:
            problems.append(
                Problem(
                    "object_count_mismatch",
                    "-",
                    None,
                    None,
                    f"{obj['name']}: {len(body)} lines, manifest says {obj['records']}",
                )
            )
        base = len(lines)
        lines.extend(ChainRecord(line, base + i) for i, line in enumerate(body))
    report = verify_chains(lines, windowed=True)
    report.problems[:0] = problems
    _check_heads(report, manifest.get("chains", {}), lines)
    if report.records != manifest.get("records"):
        report.problems.append(
            Problem(
                "record_count_mismatch",
                "-",
                None,
                None,
                f"{report.records} records, manifest says {manifest.get('records')}",
            )
        )
    return report


def _check_heads(
    report: VerifyReport, chains: dict[str, dict[str, Any]], lines: list[ChainRecord]
) -> None:
    firsts: dict[str, dict[str, Any]] = {}
    for rec in lines:
        try:
            doc = orjson.loads(rec.text)
        except orjson.JSONDecodeError:
            continue
        chain = str(doc.get("chain_id"))
        seq = doc.get("seq")
        if isinstance(seq, int) and (chain not in firsts or seq < firsts[chain]["seq"]):
            firsts[chain] = doc
    for chain in sorted(set(chains) | set(report.heads)):
        want, have, first = chains.get(chain), report.heads.get(chain), firsts.get(chain)
        if want is None or have is None or first is None:
            report.problems.append(
                Problem(
                    "head_mismatch",
                    chain,
                    None,
                    None,
                    "chain in the manifest or the data, not both",
                )
            )
            continue
        if (have["seq"], have["hash"]) != (want["last_seq"], want["head_hash"]):
            report.problems.append(
                Problem(
                    "head_mismatch",
                    chain,
                    have["seq"],
                    None,
                    f"chain ends at seq {have['seq']}, manifest head is seq {want['last_seq']} "
                    "(records removed or added at the tail)",
                )
            )
        if (first["seq"], first["prev_hash"]) != (want["first_seq"], want["first_prev_hash"]):
            report.problems.append(
                Problem(
                    "head_mismatch",
                    chain,
                    first["seq"],
                    None,
                    f"chain starts at seq {first['seq']}, manifest says seq {want['first_seq']} "
                    "(records removed at the start)",
                )
            )
