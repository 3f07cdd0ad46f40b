"""Helpers shared by the pool tests and the operator's pool-database tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import yaml

from haltgate.governance.pool.store import migrate
from haltgate.testbed.cli_processes import member_sidecar_argv
from haltgate.testbed.process import ManagedProcess, free_port

REPO = Path(__file__).resolve().parents[2]
DEFAULT_LOOP_ENV = {k: v for k, v in os.environ.items() if k != "HALTGATE_NO_UVLOOP"}
"""The sidecars run on their default event loop (uvloop), as in production: never the
asyncio fallback, even when the caller's environment asks for it."""


@contextmanager
def fresh_pool_database(postgres_dsn: str, prefix: str) -> Iterator[str]:
    """A new database (named ``<prefix><random>``) with the pool schema; dropped on exit."""
    name = prefix + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        dsn = postgres_dsn.rsplit("/", 1)[0] + "/" + name
        migrate(dsn)
        yield dsn
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def start_member_sidecar(
    tmp: Path, policy: dict[str, Any], *, pool_dsn: str | None, metrics_port: int | None = None
) -> tuple[ManagedProcess, int, Path]:
    """``haltgate sidecar`` for the GovernancePolicy ``policy`` (its name is the workload,
    pod ``<name>-0`` in its namespace), started, not yet waited for: the process, its
    explicit port and its log."""
    meta = policy["metadata"]
    workload = meta["name"]
    path = tmp / f"{workload}.yaml"
    path.write_text(yaml.safe_dump(policy))
    port = free_port()
    log = tmp / f"{workload}.log"
    argv = member_sidecar_argv(
        path,
        port,
        namespace=meta["namespace"],
        workload=workload,
        pod=f"{workload}-0",
        pool_dsn=pool_dsn,
        metrics_port=metrics_port,
    )
    proc = ManagedProcess(f"sidecar-{workload}", argv, log, env=DEFAULT_LOOP_ENV, cwd=REPO)
    return proc.start(), port, log
