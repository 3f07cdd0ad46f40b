"""A tiny migration runner for the audit schema.

Applies ``schema/NNNN_*.sql`` in order, each in its own transaction, under an advisory lock
(several replicas may start together). Applied files are recorded with their SHA-256 in
``haltgate.schema_migrations``; an applied file that changed is an error, never re-run.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

__all__ = ["Migration", "MigrationError", "available_migrations", "migrate"]

_LOCK_KEY = 0x6861_6C74  # "halt": one advisory lock id for haltgate schema changes
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(Exception):
    """The database's migration history does not match the shipped files."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One SQL file."""

    version: int
    name: str
    sql: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available_migrations() -> list[Migration]:
    """The migrations shipped with this version, ascending."""
    found = []
    for entry in resources.files("haltgate.governance.audit.schema").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


def migrate(dsn: str) -> list[Migration]:
    """Bring the database at ``dsn`` up to date; return the migrations applied now.

    Needs a role that may create schemas, roles and tables (the database owner or an
    admin), not the writer role.
    """
    applied_now: list[Migration] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute("CREATE SCHEMA IF NOT EXISTS haltgate")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS haltgate.schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL, sha256 text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            rows = conn.execute("SELECT version, sha256 FROM haltgate.schema_migrations")
            done = {int(v): str(h) for v, h in rows.fetchall()}
            for migration in available_migrations():
                if migration.version in done:
                    if done[migration.version] != migration.sha256:
                        raise MigrationError(
                            f"migration {migration.version:04d}_{migration.name} was changed "
                            "after it was applied; ship a new migration instead"
                        )
                    continue
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        "INSERT INTO haltgate.schema_migrations (version, name, sha256)"
                        " VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.sha256),
                    )
                applied_now.append(migration)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now
