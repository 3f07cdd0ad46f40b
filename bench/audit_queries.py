"""Audit trail: every query the product runs against ``haltgate.audit_records``, EXPLAINed
and timed on a table of N records (default 1,000,000).

Run: ``.venv/bin/python bench/audit_queries.py [--records N] [--schema-upto NNNN]``

The table is filled with SQL (``generate_series``): 200 agents, 5,000 runs (one pod each),
intent + outcome per call, 2 % refusals (with a failure type), 30 % tool calls, random
decision ids. ``--schema-upto`` stops the migrations at that version, to compare the
plans before and after an index migration on the same data (the later migrations are
then applied and the queries run again).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

import psycopg  # noqa: E402

from haltgate.governance import migrations  # noqa: E402
from haltgate.governance.audit.migrate import AUDIT_MIGRATIONS, available_migrations  # noqa: E402
from haltgate.governance.audit.query import (  # noqa: E402
    RecordFilter,
    build_cost_query,
    build_records_query,
)
from haltgate.testbed.postgres import remove, start_postgres  # noqa: E402

BASE = datetime(2026, 11, 1, tzinfo=UTC)

FILL = """
INSERT INTO haltgate.audit_records
  (record_id, ts, chain_id, seq, prev_hash, hash, decision_id, phase, namespace, workload,
   pod, run_id, kind, target, model, tool, decision, failure_type, code, cost_usd,
   latency_ms, status, record)
SELECT gen_random_uuid(), %(base)s + g * interval '500 ms',
  'team-' || (r %% 20) || '/agent-' || (r %% 200) || '-0/run-' || r,
  g / 5000, md5(g::text || 'p') || md5(g::text || 'q'), md5(g::text) || md5(g::text || 'h'),
  md5(g::text || 'd'), CASE WHEN g %% 2 = 0 THEN 'intent' ELSE 'outcome' END,
  'team-' || (r %% 20), 'agent-' || (r %% 200), 'agent-' || (r %% 200) || '-0', 'run-' || r,
  CASE WHEN g %% 10 < 3 THEN 'mcp' ELSE 'llm' END,
  'POST https://api.example.test/v1/chat/completions', 'gpt-4o-mini',
  CASE WHEN g %% 10 < 3 THEN 'tool-' || (g %% 17) END,
  CASE WHEN g %% 50 = 7 THEN 'deny' ELSE 'allow' END,
  CASE WHEN g %% 50 = 7 THEN (ARRAY['EXHAUSTION','STAGNATION','OVERRISK','SAFETY'])[g %% 4 + 1] END,
  CASE WHEN g %% 50 = 7 THEN 'tokens_exhausted' END,
  CASE WHEN g %% 2 = 1 THEN 0.00042 END, CASE WHEN g %% 2 = 1 THEN 812.5 END,
  CASE WHEN g %% 2 = 1 THEN 200 END,
  json_build_object('decision_id', md5(g::text || 'd'), 'seq', g / 5000,
    'usage', json_build_object('input_tokens', 12, 'output_tokens', 30),
    'pad', repeat('x', 600))::text
FROM generate_series(%(lo)s, %(hi)s - 1) AS g, LATERAL (SELECT g %% 5000 AS r) AS x
"""


def queries(probe: dict[str, Any]) -> list[tuple[str, str, list[Any]]]:
    """(name, SQL, params): what the API, the CLI, explain/replay/simulate, verify and
    export run; probe values are taken from the data."""
    mid = probe["mid"]
    day = timedelta(hours=1)
    out: list[tuple[str, str, list[Any]]] = []

    def rec(name: str, order: str = "asc", **kw: Any) -> None:
        sql, params = build_records_query(RecordFilter(**kw), limit=100, order=order)  # type: ignore[arg-type]
        out.append((name, sql, params))

    rec("records, newest first (no filter)", "desc")
    rec("records, time window", since=mid, until=mid + day)
    rec("records by agent (namespace, workload)", namespace=probe["ns"], workload=probe["wl"])
    rec("records by workload only", workload=probe["wl"])
    rec("records by pod", pod=probe["pod"])
    rec("run history (time order)", run_id=probe["run"])
    rec("run history (chain order)", "chain", run_id=probe["run"])
    rec("records of one chain (chain order)", "chain", chain_id=probe["chain"])
    rec("all chains in chain order", "chain")
    rec("refusals (decision=deny)", decision="deny")
    rec("failures of a type", failure_type="SAFETY")
    rec("tool calls of a tool", tool="tool-3")
    rec("by reason code", code="tokens_exhausted")
    rec("by kind", kind="mcp", since=mid, until=mid + day)
    for name, flt in (
        ("cost per agent, all time", RecordFilter()),
        ("cost per agent, one day", RecordFilter(since=mid, until=mid + timedelta(days=1))),
        ("cost of one agent", RecordFilter(namespace=probe["ns"], workload=probe["wl"])),
    ):
        sql, params = build_cost_query(flt)
        out.append((name, sql, params))
    out.append(
        (
            "explain: records of a decision",
            "SELECT record FROM haltgate.audit_records WHERE decision_id = %s "
            "ORDER BY chain_id, seq LIMIT 16",
            [probe["decision"]],
        )
    )
    out.append(
        (
            "replay/simulate --dsn --run-id",
            "SELECT record FROM haltgate.audit_records WHERE run_id = %s "
            "ORDER BY chain_id, seq LIMIT %s",
            [probe["run"], 1_000_000],
        )
    )
    out.append(
        (
            "replay/simulate --dsn --workload (one hour)",
            "SELECT record FROM haltgate.audit_records WHERE workload = %s AND ts >= %s"
            " AND ts < %s ORDER BY chain_id, seq LIMIT %s",
            [probe["wl"], mid, mid + day, 1_000_000],
        )
    )
    out.append(
        (
            "verify --chain-id",
            "SELECT record, ts FROM haltgate.audit_records WHERE chain_id = %s"
            " ORDER BY chain_id, seq, ts, record_id",
            [probe["chain"]],
        )
    )
    out.append(
        (
            "verify, one hour window",
            "SELECT record, ts FROM haltgate.audit_records WHERE ts >= %s AND ts < %s"
            " ORDER BY chain_id, seq, ts, record_id",
            [mid, mid + day],
        )
    )
    out.append(
        (
            "export, one hour window (first 10,000)",
            "SELECT chain_id, seq, record_id::text, record FROM haltgate.audit_records"
            " WHERE ts >= %s AND ts < %s ORDER BY chain_id, seq, record_id LIMIT 10000",
            [mid, mid + day],
        )
    )
    return out


def _plan_summary(plan: dict[str, Any]) -> str:
    """The scan nodes of a JSON plan: 'Index Scan audit_records_x', 'Seq Scan', ..."""
    found: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        kind = node["Node Type"]
        if "Scan" in kind:
            label = kind.replace(" Scan", "")
            index = node.get("Index Name")
            text = f"{label}({index})" if index else label
            if text not in found:
                found.append(text)
        elif kind in ("Sort", "Incremental Sort", "HashAggregate") and kind not in found:
            found.append(kind)
        for child in node.get("Plans", ()):
            walk(child)

    walk(plan)
    return ", ".join(found)


def run_queries(dsn: str, label: str, repeat: int = 3) -> dict[str, tuple[str, float]]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT namespace, workload, pod, run_id, chain_id, decision_id, ts"
            " FROM haltgate.audit_records ORDER BY ts LIMIT 1 OFFSET"
            " (SELECT count(*) / 2 FROM haltgate.audit_records)"
        ).fetchone()
        assert row is not None
        probe = dict(zip(("ns", "wl", "pod", "run", "chain", "decision", "mid"), row, strict=True))
        results: dict[str, tuple[str, float]] = {}
        for name, sql, params in queries(probe):
            plan = conn.execute("EXPLAIN (FORMAT JSON) " + sql, params).fetchone()
            assert plan is not None
            best = float("inf")
            for _ in range(repeat):
                t0 = time.perf_counter()
                conn.execute(sql, params).fetchall()
                best = min(best, time.perf_counter() - t0)
            results[name] = (_plan_summary(plan[0][0]["Plan"]), best * 1e3)
    print(f"-- {label}")
    for name, (plan_text, ms) in results.items():
        print(f"{name:>44} {ms:>9.1f} ms  {plan_text}")
    return results


def _backend_cpu(conn: psycopg.Connection[Any]) -> float:
    fields = Path(f"/proc/{conn.info.backend_pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_append(dsn: str, lo: int, n: int) -> float:
    """Server CPU us per row of appending ``n`` more records (same generator) to the full
    table: what index maintenance costs once the indexes are large."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        c0 = _backend_cpu(conn)
        conn.execute(FILL, {"base": BASE, "lo": lo, "hi": lo + n})
        return (_backend_cpu(conn) - c0) / n * 1e6


def migrate_upto(dsn: str, version: int | None) -> None:
    """Apply the audit migrations up to ``version`` (all when None)."""
    with tempfile.TemporaryDirectory() as folder:
        for m in available_migrations():
            if version is None or m.version <= version:
                (Path(folder) / f"{m.label}.sql").write_text(m.sql)
        migrations.migrate(dsn, dataclasses.replace(AUDIT_MIGRATIONS, source=Path(folder)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--schema-upto", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="50,000 records (smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.records = 50_000
    server = start_postgres()
    try:
        dsn = server.dsn("postgres")
        migrate_upto(dsn, args.schema_upto)
        with psycopg.connect(dsn, autocommit=True) as conn:
            for month in (BASE, BASE + timedelta(days=31)):
                conn.execute("SELECT haltgate.audit_ensure_partition(%s)", (month,))
            t0 = time.perf_counter()
            step = 200_000
            for lo in range(0, args.records, step):
                conn.execute(FILL, {"base": BASE, "lo": lo, "hi": min(lo + step, args.records)})
            conn.execute("VACUUM ANALYZE haltgate.audit_records")
            print(f"filled {args.records:,} records in {time.perf_counter() - t0:.0f} s")
        before = run_queries(dsn, f"schema up to {args.schema_upto or 'latest'}")
        append = max(args.records // 10, 1)
        cpu_before = timed_append(dsn, args.records, append)
        print(f"appending {append:,} more records: {cpu_before:.1f} server CPU-us/record")
        if args.schema_upto is not None:
            t0 = time.perf_counter()
            migrate_upto(dsn, None)
            took = time.perf_counter() - t0
            print(f"later migrations applied to {args.records + append:,} records in {took:.1f} s")
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE haltgate.audit_records")
            cpu_after = timed_append(dsn, args.records + append, append)
            print(
                f"latest schema, appending {append:,} more: {cpu_after:.1f} server CPU-us/record"
                f" (was {cpu_before:.1f})"
            )
            after = run_queries(dsn, "latest schema")
            print("-- before -> after (ms; plan shown where it changed)")
            for name, (plan, ms) in after.items():
                old_plan, old_ms = before[name]
                changed = "" if plan == old_plan else f"  was: {old_plan}"
                print(f"{name:>44} {old_ms:>9.1f} -> {ms:>9.1f}{changed}")
    finally:
        remove(server)


if __name__ == "__main__":
    main()
