"""Fixtures of the pool tests: a fresh database per test module with the pool schema."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from haltgate.governance.pool.store import migrate


@pytest.fixture(scope="module")
def pool_dsn(postgres_dsn: str) -> Iterator[str]:
    """A new database with the pool schema applied (dropped afterwards)."""
    name = "pool_" + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = postgres_dsn.rsplit("/", 1)[0] + "/" + name
    migrate(dsn)
    yield dsn
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def pool_name() -> str:
    """A pool key unique to the test."""
    return "ns/pool-" + uuid.uuid4().hex[:8]
