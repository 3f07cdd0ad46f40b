"""Where explain, replay and simulate read records: a spool directory or PostgreSQL.

Both give the canonical records as dictionaries, in chain order (chain, then sequence
number). The spool is read offline, without a database and without taking the writer's
lock: frames are only ever appended, and a torn tail (a writer mid-commit) ends the read
of its segment. Checkpoint frames (chain heads) are not records and are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from haltgate.governance.audit.spool import iter_frames, list_segments, segment_path

__all__ = ["RecordSourceError", "database_records", "spool_records"]


class RecordSourceError(Exception):
    """The records could not be read (names the source and why)."""

    code = "audit_source_unreadable"


def _spool_iter(directory: Path) -> Iterator[dict[str, Any]]:
    if not directory.is_dir():
        raise RecordSourceError(f"--spool {directory}: not a directory")
    for number in list_segments(directory):
        try:
            data = segment_path(directory, number).read_bytes()
        except FileNotFoundError:
            continue  # shipped and removed meanwhile
        except OSError as e:
            raise RecordSourceError(f"--spool {directory}: segment {number}: {e.strerror}") from e
        frames, _, _ = iter_frames(data, number)
        for frame in frames:
            if frame.is_checkpoint:
                continue
            try:
                doc = orjson.loads(frame.data)
            except orjson.JSONDecodeError as e:
                raise RecordSourceError(
                    f"--spool {directory}: segment {number} offset {frame.offset}: not JSON"
                ) from e
            if isinstance(doc, dict):
                yield doc


def _order(doc: dict[str, Any]) -> tuple[str, int]:
    seq = doc.get("seq")
    return (str(doc.get("chain_id") or ""), seq if isinstance(seq, int) else 0)


def spool_records(
    directory: Path,
    *,
    decision_id: str | None = None,
    run_id: str | None = None,
    since: float | None = None,
    until: float | None = None,
    workload: str | None = None,
) -> list[dict[str, Any]]:
    """Records of a spool directory matching the filters, in chain order."""
    out = []
    for doc in _spool_iter(directory):
        if decision_id is not None and doc.get("decision_id") != decision_id:
            continue
        if run_id is not None and doc.get("run_id") != run_id:
            continue
        if workload is not None and doc.get("workload") != workload:
            continue
        t = doc.get("time")
        if since is not None and not (isinstance(t, (int, float)) and t >= since):
            continue
        if until is not None and not (isinstance(t, (int, float)) and t < until):
            continue
        out.append(doc)
    out.sort(key=_order)
    return out


def database_records(
    dsn: str,
    *,
    decision_id: str | None = None,
    run_id: str | None = None,
    since: float | None = None,
    until: float | None = None,
    workload: str | None = None,
    limit: int = 1_000_000,
) -> list[dict[str, Any]]:
    """Records in PostgreSQL matching the filters, in chain order (the stored text, the
    one verify hashes, never the typed columns)."""
    import psycopg

    where = []
    args: list[Any] = []
    for column, value in (("decision_id", decision_id), ("run_id", run_id), ("workload", workload)):
        if value is not None:
            where.append(f"{column} = %s")
            args.append(value)
    if since is not None:
        where.append("ts >= to_timestamp(%s)")
        args.append(since)
    if until is not None:
        where.append("ts < to_timestamp(%s)")
        args.append(until)
    sql = (
        "SELECT record FROM haltgate.audit_records"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY chain_id, seq LIMIT %s"
    )
    args.append(limit)
    try:
        with psycopg.connect(dsn) as conn:
            rows = conn.execute(sql, args).fetchall()
    except psycopg.Error as e:
        raise RecordSourceError(
            f"--dsn: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from e
    return [orjson.loads(row[0]) for row in rows]
