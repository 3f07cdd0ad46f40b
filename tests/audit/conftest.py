"""Fixtures of the audit tests: a fresh, migrated database per test on the session server."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from haltgate.governance.audit.migrate import migrate
from haltgate.testbed.process import free_port, port_open, wait_until

WRITER_LOGIN = "haltgate_test_shipper"
READER_LOGIN = "haltgate_test_reader"


@dataclass(frozen=True)
class AuditDatabase:
    """A migrated database: ``admin`` is the superuser DSN, ``writer``/``reader`` are login
    roles holding only the writer/reader grants of the migration."""

    name: str
    admin: str
    writer: str
    reader: str

    def count(self) -> int:
        with psycopg.connect(self.admin) as conn:
            row = conn.execute("SELECT count(*) FROM haltgate.audit_records").fetchone()
            assert row is not None
            return int(row[0])


def _with_db(dsn: str, dbname: str, user: str | None = None) -> str:
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    info["dbname"] = dbname
    if user is not None:
        info["user"] = user
    return psycopg.conninfo.make_conninfo(**info)


@pytest.fixture
def audit_db(postgres_dsn: str) -> Iterator[AuditDatabase]:
    """A new database with the audit schema, dropped after the test."""
    name = f"audit_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    admin = _with_db(postgres_dsn, name)
    migrate(admin)
    with psycopg.connect(admin, autocommit=True) as conn:
        for login, group in (
            (WRITER_LOGIN, "haltgate_audit_writer"),
            (READER_LOGIN, "haltgate_audit_reader"),
        ):
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,)).fetchone()
            if not exists:
                conn.execute(f"CREATE ROLE {login} LOGIN IN ROLE {group}")
    try:
        yield AuditDatabase(
            name,
            admin,
            _with_db(postgres_dsn, name, WRITER_LOGIN),
            _with_db(postgres_dsn, name, READER_LOGIN),
        )
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3-compatible HTTP server: moto in server mode, as a subprocess."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: port_open("127.0.0.1", port),
            timeout=30,
            what="moto server",
            log=log,
            alive=lambda: proc.poll() is None,
        )
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Credentials and endpoint for boto3 (here and in CLI subprocesses)."""
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": s3_endpoint,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env
