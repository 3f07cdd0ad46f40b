"""The embedded PostgreSQL of the test bed answers over TCP and keeps what it is given."""

from __future__ import annotations

import uuid

import psycopg
from psycopg.types.json import Jsonb


def test_create_insert_select(postgres_dsn: str) -> None:
    table = f"smoke_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_dsn, connect_timeout=10) as conn:
        conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, body jsonb NOT NULL)")
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {table} (id, body) VALUES (%s, %s)",
                [(i, Jsonb({"n": i})) for i in range(3)],
            )
        rows = conn.execute(f"SELECT id, body->>'n' FROM {table} ORDER BY id").fetchall()
        assert rows == [(0, "0"), (1, "1"), (2, "2")]
        conn.execute(f"DROP TABLE {table}")


def test_server_is_a_real_postgres_over_tcp(postgres_dsn: str) -> None:
    assert "@127.0.0.1:" in postgres_dsn
    with psycopg.connect(postgres_dsn, connect_timeout=10) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()
        assert version is not None and int(version[0]) >= 160000
        # A second connection sees committed data of the first: a real server, not a stub.
        conn.execute("CREATE TABLE IF NOT EXISTS visible (v text)")
        conn.execute("INSERT INTO visible VALUES ('x')")
        conn.commit()
        with psycopg.connect(postgres_dsn, connect_timeout=10) as other:
            seen = other.execute("SELECT count(*) FROM visible WHERE v = 'x'").fetchone()
            assert seen is not None and seen[0] >= 1
        conn.execute("DROP TABLE visible")
