"""Helpers shared by the pool tests and the operator's pool-database tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from haltgate.governance.pool.store import migrate


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
