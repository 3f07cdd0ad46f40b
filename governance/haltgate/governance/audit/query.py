"""Read the audit trail: filtered, cursor-paginated record listings and cost per agent.

SQL is built here once and run either synchronously (CLI) or on an async pool (HTTP API).
Pagination is keyset on ``(ts, record_id)`` (index ``audit_records_ts``), so a page costs the
same at any depth and a cursor stays valid while new records arrive.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
import psycopg

__all__ = [
    "MAX_LIMIT",
    "CursorError",
    "Order",
    "Page",
    "RecordFilter",
    "build_cost_query",
    "build_records_query",
    "cost_by_agent",
    "page_from_rows",
    "parse_time",
    "query_records",
]

MAX_LIMIT = 1000
"""Largest page size."""


def parse_time(value: str) -> datetime:
    """A time bound as the CLI and the API take it: epoch seconds, or ISO 8601
    (``2026-11-01``, ``2026-11-01T12:00:00Z``), UTC if naive. Raises ``ValueError``."""
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except ValueError:
        pass
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class CursorError(ValueError):
    """A cursor that this server did not issue (or for another sort order)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordFilter:
    """Conditions on records; ``None`` means any. Times are half-open: since <= ts < until."""

    namespace: str | None = None
    workload: str | None = None
    pod: str | None = None
    run_id: str | None = None
    chain_id: str | None = None
    decision: str | None = None
    failure_type: str | None = None
    code: str | None = None
    tool: str | None = None
    kind: str | None = None
    phase: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


@dataclass(frozen=True, slots=True)
class Page:
    """One page of records (full record documents) and the cursor of the next page."""

    records: list[dict[str, Any]]
    next_cursor: str | None


def _conditions(flt: RecordFilter) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    for name in (
        "namespace",
        "workload",
        "pod",
        "run_id",
        "chain_id",
        "decision",
        "failure_type",
        "code",
        "tool",
        "kind",
        "phase",
    ):
        value = getattr(flt, name)
        if value is not None:
            where.append(f"{name} = %s")
            params.append(value)
    if flt.since is not None:
        where.append("ts >= %s")
        params.append(flt.since)
    if flt.until is not None:
        where.append("ts < %s")
        params.append(flt.until)
    return where, params


Order = Literal["asc", "desc", "chain"]
"""Record order: by time (``asc``/``desc``, keyset ``(ts, record_id)``) or ``chain``: each
chain in sequence order (keyset ``(chain_id, seq)``), what a run's history needs. Record times
are taken when a record is made, not when it is sealed, so within one chain a later sequence
number can carry an equal or earlier time (an outcome sealed after the next intent)."""


def _encode_cursor(first: Any, second: Any, order: str) -> str:
    key = first.isoformat() if isinstance(first, datetime) else first
    raw = orjson.dumps([key, second, order])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, order: str) -> tuple[Any, Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        first, second, cursor_order = orjson.loads(raw)
        if cursor_order != order:
            raise CursorError("cursor was issued for another sort order")
        if order == "chain":
            return str(first), int(second)
        return datetime.fromisoformat(first), str(second)
    except CursorError:
        raise
    except (ValueError, TypeError) as e:
        raise CursorError("malformed cursor") from e


def build_records_query(
    flt: RecordFilter,
    *,
    limit: int = 100,
    cursor: str | None = None,
    order: Order = "asc",
) -> tuple[str, list[Any]]:
    """SQL and parameters for one page (one extra row tells whether more exist).

    Rows are ``(key1, key2, record)``: the two keyset columns of ``order``, then the record."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be within 1..{MAX_LIMIT}")
    if order not in ("asc", "desc", "chain"):
        raise ValueError("order must be asc, desc or chain")
    where, params = _conditions(flt)
    if order == "chain":
        keys, sort = "chain_id, seq", " ORDER BY chain_id ASC, seq ASC"
        if cursor is not None:
            where.append("(chain_id, seq) > (%s, %s)")
            params.extend(_decode_cursor(cursor, order))
    else:
        direction = "ASC" if order == "asc" else "DESC"
        keys = "ts, record_id::text"
        sort = f" ORDER BY ts {direction}, record_id {direction}"
        if cursor is not None:
            ts, record_id = _decode_cursor(cursor, order)
            op = ">" if order == "asc" else "<"
            where.append(f"(ts, record_id) {op} (%s, %s::uuid)")
            params.extend([ts, record_id])
    sql = (
        f"SELECT {keys}, record FROM haltgate.audit_records"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + f"{sort} LIMIT %s"
    )
    params.append(limit + 1)
    return sql, params


def page_from_rows(rows: Sequence[Sequence[Any]], limit: int, order: Order = "asc") -> Page:
    """Turn ``(key1, key2, record)`` rows of :func:`build_records_query` into a page."""
    more = len(rows) > limit
    rows = rows[:limit]
    records = [orjson.loads(r[2]) for r in rows]
    cursor = _encode_cursor(rows[-1][0], rows[-1][1], order) if more and rows else None
    return Page(records, cursor)


def query_records(
    dsn: str,
    flt: RecordFilter,
    *,
    limit: int = 100,
    cursor: str | None = None,
    order: Order = "asc",
) -> Page:
    """One page of records matching ``flt``."""
    sql, params = build_records_query(flt, limit=limit, cursor=cursor, order=order)
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(sql, params).fetchall()
    return page_from_rows(rows, limit, order)


def build_cost_query(flt: RecordFilter) -> tuple[str, list[Any]]:
    """Cost, calls, refusals and tokens per agent (namespace, workload).

    Cost and tokens come from outcome records (settled usage). A call forwarded upstream
    has an intent record; a call refused before forwarding has only its outcome record
    (deny or error, no upstream status, a code that is not an ``upstream_*`` failure), so
    calls count both. Refusals are the deny decisions of either phase (the sidecar writes
    intents as allow, so nothing is counted twice)."""
    where, params = _conditions(flt)
    sql = (
        "SELECT namespace, workload,"
        " count(*) FILTER (WHERE phase = 'intent' OR (phase = 'outcome'"
        "   AND decision <> 'allow' AND status IS NULL"
        "   AND left(coalesce(code, ''), 9) <> 'upstream_')) AS calls,"
        " count(*) FILTER (WHERE phase <> 'connection' AND decision = 'deny') AS denied,"
        " coalesce(sum(cost_usd) FILTER (WHERE phase <> 'intent'), 0) AS cost_usd,"
        " coalesce(sum((record::json #>> '{usage,input_tokens}')::bigint)"
        "   FILTER (WHERE phase <> 'intent'), 0) AS input_tokens,"
        " coalesce(sum((record::json #>> '{usage,output_tokens}')::bigint)"
        "   FILTER (WHERE phase <> 'intent'), 0) AS output_tokens,"
        " min(ts) AS first_seen, max(ts) AS last_seen"
        " FROM haltgate.audit_records"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + " GROUP BY namespace, workload ORDER BY cost_usd DESC, namespace, workload"
    )
    return sql, params


def cost_rows_to_dicts(rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """JSON-ready cost rows."""
    out = []
    for ns, wl, calls, denied, cost, tin, tout, first, last in rows:
        out.append(
            {
                "namespace": ns,
                "workload": wl,
                "calls": int(calls),
                "denied": int(denied),
                "cost_usd": float(cost),
                "input_tokens": int(tin),
                "output_tokens": int(tout),
                "first_seen": first.astimezone(UTC).isoformat() if first else None,
                "last_seen": last.astimezone(UTC).isoformat() if last else None,
            }
        )
    return out


def cost_by_agent(dsn: str, flt: RecordFilter) -> list[dict[str, Any]]:
    """Cost per agent for records matching ``flt``."""
    sql, params = build_cost_query(flt)
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(sql, params).fetchall()
    return cost_rows_to_dicts(rows)
