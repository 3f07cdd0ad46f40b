"""Fixtures of the observability tests: a fleet under load, scraped by a real Prometheus.

The fleet and its load run once per module (about 20 s): three sidecars, their audit
shippers into the session's PostgreSQL, the stand-in LLM and Debian's Prometheus with the
chart's alert rules. Tests then read what Prometheus and PostgreSQL hold.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from haltgate.governance.audit.migrate import migrate
from haltgate.testbed.process import wait_until
from tests.observability import loadbed

LOAD_SECONDS = 10.0
HALT_CYCLES = 7
"""Halts of the capped agent: enough for the halt-storm alert (>= 5 in 10 minutes)."""


@dataclass
class LoadedFleet:
    fleet: loadbed.Fleet
    report: loadbed.LoadReport
    eval_time: float
    """When every sample of the load is in Prometheus: instant queries are made at it."""
    dsn: str


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    """Debian's prometheus (``apt-get install prometheus``, which brings promtool)."""
    path = loadbed.prometheus_binary()
    if path is None or shutil.which("promtool") is None:
        pytest.fail("prometheus/promtool not installed: apt-get install prometheus")
    return path


@pytest.fixture(scope="module")
def audit_dsn(postgres_dsn: str) -> Iterator[str]:
    """A fresh, migrated audit database for the module."""
    name = f"obs_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    info = psycopg.conninfo.conninfo_to_dict(postgres_dsn)
    info["dbname"] = name
    dsn = psycopg.conninfo.make_conninfo("", **info)
    migrate(dsn)
    yield dsn
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def loaded(
    prometheus_binary: str, audit_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LoadedFleet]:
    """The fleet after its load run, every sample scraped, every record shipped."""
    workdir: Path = tmp_path_factory.mktemp("observability")
    with loadbed.running_fleet(workdir, dsn=audit_dsn, prometheus=prometheus_binary) as fleet:
        report = loadbed.drive(fleet, seconds=LOAD_SECONDS, halt_cycles=HALT_CYCLES)
        loadbed.wait_scraped(fleet)

        def shipped() -> bool:
            lag = loadbed.api(fleet, "/api/v1/query", query="max(haltgate_audit_ship_lag_seconds)")[
                "result"
            ]
            backlog = loadbed.api(
                fleet, "/api/v1/query", query="sum(haltgate_audit_ship_backlog_bytes)"
            )["result"]
            return (
                bool(lag)
                and float(lag[0]["value"][1]) == 0
                and bool(backlog)
                and float(backlog[0]["value"][1]) == 0
            )

        wait_until(shipped, timeout=30, what="audit shippers caught up")
        time.sleep(2.5)  # two more scrapes: rates see the final values
        yield LoadedFleet(fleet, report, time.time(), audit_dsn)
