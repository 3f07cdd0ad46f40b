"""Record factories and the ``haltgate`` command, shared by the audit tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import psycopg

from haltgate.governance.audit import AuditRecord
from haltgate.governance.audit.binary_copy import copy_frames
from haltgate.governance.audit.spool import Frame

REPO = Path(__file__).resolve().parents[2]
HALTGATE = [sys.executable, "-c", "from haltgate.cli.main import main; main()"]
"""The ``haltgate`` command with this interpreter."""


def haltgate_cli(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``haltgate ARGS`` to completion (bounded by ``timeout``); its exit code and text
    output, not checked."""
    return subprocess.run(
        [*HALTGATE, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


BASE_TIME = 1_790_000_000.0  # 2026-09-21, fixed so partitions and filters are predictable


def make_record(
    i: int = 0,
    *,
    run: str = "run-1",
    pod: str = "agent-0",
    phase: str = "intent",
    **overrides: object,
) -> AuditRecord:
    """A plausible record; ``i`` varies time, target and decision."""
    fields: dict[str, object] = dict(
        decision_id=f"d-{run}-{i}",
        time=BASE_TIME + i * 0.001,
        phase=phase,
        namespace="team-a",
        workload="researcher",
        pod=pod,
        run_id=run,
        kind="mcp" if i % 3 == 0 else "llm",
        target="POST https://api.example.test/v1/chat/completions",
        model="gpt-4o-mini",
        tool="search" if i % 3 == 0 else None,
        args_digest="ab" * 32,
        decision="deny" if i % 10 == 9 else "allow",
        failure_type="EXHAUSTION" if i % 10 == 9 else None,
        code="tokens_exhausted" if i % 10 == 9 else None,
        budget_before={"tokens": {"used": float(i), "reserved": 0.0, "limit": 1e6}},
        usage={"input_tokens": 12, "output_tokens": 30},
        cost_usd=0.00042,
        findings=({"detector": "pii", "entity": "EMAIL", "action": "redact"},)
        if i % 7 == 0
        else (),
        latency_ms=1.5,
    )
    fields.update(overrides)
    return AuditRecord(**fields)  # type: ignore[arg-type]


def insert_lines(conn: psycopg.Connection[Any], lines: list[bytes]) -> int:
    """Insert sealed record lines the way the shipper does (COPY + INSERT .. ON CONFLICT)."""
    frames = [Frame(1, 0, 0, float(orjson.loads(line)["time"]), line) for line in lines]
    for when in {f.time for f in frames}:
        conn.execute("SELECT haltgate.audit_ensure_partition(to_timestamp(%s))", (when,))
    return copy_frames(conn, frames)
