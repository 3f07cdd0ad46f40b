"""Audit trail: durable-append latency and spool -> PostgreSQL shipping rate, vs baselines.

Run: ``.venv/bin/python bench/audit.py [--records N] [--quick]``

Printed, each next to a baseline measured in the same run:

1. ``intent()`` latency with the spool (write + fdatasync, group commit) at 1, 16 and 64
   concurrent callers, against ``MemoryAuditSink`` (same sealing, no I/O): the difference is
   the latency the durable append adds per call (target p50 <= 0.3 ms). The raw cost of one
   ``write`` + ``fdatasync`` of a record-sized buffer on the same disk is printed too.
2. Spool append throughput (records/s, fsync'd) with many records in flight.
3. Shipping: the ``Shipper`` draining a spool of N records into the partitioned, indexed,
   append-only table (binary COPY to a staging table + INSERT ... ON CONFLICT, JSON parsed
   by PostgreSQL), against the obvious hand-written loader: parse each record in Python and
   COPY its columns with psycopg into a plain unindexed table (target >= 50,000 records/s).

PostgreSQL is the embedded test server (``tests/testbed/postgres.py``), which runs with
fsync off: shipping numbers measure our path, not the disk under the database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "sidecar"), str(REPO)]

import orjson  # noqa: E402
import psycopg  # noqa: E402
from tests.audit.helpers import make_record  # noqa: E402
from tests.testbed.postgres import remove, start_postgres  # noqa: E402

from haltgate.governance.audit import MemoryAuditSink, SpoolAuditSink  # noqa: E402
from haltgate.governance.audit.migrate import migrate  # noqa: E402
from haltgate.governance.audit.shipper import Shipper, ShipperSettings  # noqa: E402
from haltgate.governance.audit.spool import iter_frames, list_segments, segment_path  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def latencies(sink: object, callers: int, per_caller: int) -> list[float]:
    """Per-call latency (s) of ``intent`` with ``callers`` concurrent agents."""
    out: list[float] = []

    async def agent(n: int) -> None:
        for i in range(per_caller):
            record = make_record(i, run=f"run-{n}")
            t0 = time.perf_counter()
            await sink.intent(record)  # type: ignore[attr-defined]
            out.append(time.perf_counter() - t0)

    await asyncio.gather(*(agent(n) for n in range(callers)))
    return out


def raw_fsync(directory: Path, n: int) -> list[float]:
    fd = os.open(directory / "raw.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    buf = b"x" * 700
    out = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            os.write(fd, buf)
            os.fdatasync(fd)
            out.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
    return out


def bench_latency(work: Path, per_caller: int) -> None:
    raw = raw_fsync(work, 500)
    print(f"baseline write+fdatasync of 700 B: p50 {pct(raw, .5) * 1e3:.3f} ms, "
          f"p99 {pct(raw, .99) * 1e3:.3f} ms")
    print(f"{'callers':>8} {'memory p50':>11} {'spool p50':>10} {'added p50':>10} "
          f"{'memory p99':>11} {'spool p99':>10} {'added p99':>10} {'recs/fsync':>10}")
    for callers in (1, 16, 64):
        memory = asyncio.run(latencies(MemoryAuditSink(), callers, per_caller))
        spool_dir = Path(tempfile.mkdtemp(dir=work))

        async def run_spool(d: Path = spool_dir, c: int = callers) -> tuple[list[float], float]:
            sink = SpoolAuditSink(d)
            lat = await latencies(sink, c, per_caller)
            reg = sink.metrics.registry
            commits = reg.get_sample_value("haltgate_audit_group_commit_records_count") or 1
            spooled = reg.get_sample_value("haltgate_audit_records_spooled_total") or 0
            await sink.close()
            return lat, spooled / commits

        spool, per_commit = asyncio.run(run_spool())
        m50, s50, m99, s99 = pct(memory, .5), pct(spool, .5), pct(memory, .99), pct(spool, .99)
        print(f"{callers:>8} {m50 * 1e3:>9.3f}ms {s50 * 1e3:>8.3f}ms {(s50 - m50) * 1e3:>8.3f}ms"
              f" {m99 * 1e3:>9.3f}ms {s99 * 1e3:>8.3f}ms {(s99 - m99) * 1e3:>8.3f}ms"
              f" {per_commit:>10.1f}")


def bench_spool_throughput(spool_dir: Path, n: int) -> float:
    sink = SpoolAuditSink(spool_dir, max_bytes=4 * 1024**3, segment_bytes=64 * 1024**2)
    records = [make_record(i, run=f"run-{i % 50}") for i in range(n)]
    t0 = time.perf_counter()
    futures = [sink.submit_nowait(r) for r in records]
    for f in futures:
        assert f is not None
        f.result(timeout=300)
    elapsed = time.perf_counter() - t0
    sink.close_blocking()
    rate = n / elapsed
    print(f"spool append (fdatasync group commit, {n} records in flight): {rate:,.0f} records/s")
    return rate


def bench_shipping(spool_dir: Path, n: int, dsn: str, batch: int) -> None:
    frames = []
    for number in list_segments(spool_dir):
        parsed, _, _ = iter_frames(segment_path(spool_dir, number).read_bytes(), number)
        frames.extend(parsed)
    # The baseline is what a hand-written loader would do with the same records: parse each
    # line and COPY its columns (psycopg's C row writer) into a plain table, no index.
    cols = ("record_id", "chain_id", "seq", "hash", "namespace", "workload", "decision",
            "ts_epoch", "record")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE raw_copy (record_id text, chain_id text, seq bigint, "
                     "hash text, namespace text, workload text, decision text, "
                     "ts_epoch double precision, record text)")
    t0 = time.perf_counter()
    with psycopg.connect(dsn) as conn:
        for start in range(0, len(frames), batch):
            with conn.transaction(), conn.cursor() as cur, cur.copy(
                f"COPY raw_copy ({', '.join(cols)}) FROM STDIN"
            ) as copy:
                for frame in frames[start:start + batch]:
                    d = orjson.loads(frame.data)
                    copy.write_row((d["record_id"], d["chain_id"], d["seq"], d["hash"],
                                    d["namespace"], d["workload"], d["decision"], d["time"],
                                    frame.data.decode()))
    raw = n / (time.perf_counter() - t0)

    shipper = Shipper(ShipperSettings(spool_dir, dsn, batch_records=batch))
    t0 = time.perf_counter()
    shipped = shipper.drain(timeout=600)
    ours = n / (time.perf_counter() - t0)
    shipper.close()
    assert shipped == n, (shipped, n)
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM haltgate.audit_records").fetchone()
        assert row is not None and row[0] == n
    print(f"baseline: parse + COPY of the same records (plain table, no index), batch {batch}: "
          f"{raw:,.0f} records/s")
    print(f"shipper (parse spool, COPY to stage, INSERT .. ON CONFLICT into partitioned "
          f"table, 7 indexes, ack): {ours:,.0f} records/s = {ours / raw:.2f} x baseline "
          f"(target >= 50,000/s: {'MET' if ours >= 50_000 else 'NOT MET'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--quick", action="store_true", help="small run for a smoke test")
    args = parser.parse_args()
    n = 10_000 if args.quick else args.records
    per_caller = 50 if args.quick else 300
    work = Path(tempfile.mkdtemp(prefix="haltgate-bench-audit-", dir=str(REPO / ".bench-tmp")
                                 if (REPO / ".bench-tmp").is_dir() else None))
    print("== durable append latency (intent) ==")
    bench_latency(work, per_caller)
    print("== spool throughput ==")
    spool_dir = work / "spool"
    bench_spool_throughput(spool_dir, n)
    print("== shipping to PostgreSQL ==")
    server = start_postgres()
    try:
        dsn = server.dsn()
        migrate(dsn)
        bench_shipping(spool_dir, n, dsn, args.batch)
    finally:
        remove(server)


if __name__ == "__main__":
    main()
