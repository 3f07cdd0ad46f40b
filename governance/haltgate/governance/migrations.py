"""The SQL migration runner shared by the audit trail and the budget pools.

A component ships ``NNNN_name.sql`` files in a package (or folder). :func:`migrate` applies
those not yet applied, in version order, each in its own transaction, under a PostgreSQL
advisory lock (several replicas or hook Jobs may start together). Applied files are recorded
with their SHA-256 in the component's own history table; a file that changed after it was
applied is an error and is never re-run (ship a new migration instead).
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

import psycopg
from psycopg import sql

__all__ = ["Migration", "MigrationError", "MigrationSet", "available_migrations", "migrate"]

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

    @property
    def label(self) -> str:
        """``NNNN_name``, the file name without ``.sql``."""
        return f"{self.version:04d}_{self.name}"


@dataclass(frozen=True, slots=True)
class MigrationSet:
    """Where a component's migrations come from and where their history is kept."""

    source: str | Traversable
    """A package name (``haltgate.governance.audit.schema``) or a folder of SQL files."""
    table: str
    """History table, in ``schema`` (one per component, so their versions do not collide)."""
    lock_key: int
    """Advisory lock id; distinct per component so one's migration does not wait on
    another's."""
    what: str = "migration"
    """How errors name a migration (``audit migration``, ``pool migration``)."""
    schema: str = "haltgate"


def available_migrations(source: str | Traversable) -> list[Migration]:
    """The migrations in ``source`` (package name or folder), ascending by version."""
    folder = resources.files(source) if isinstance(source, str) else source
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    for before, after in itertools.pairwise(found):
        if before.version == after.version:  # two files would race for one history row
            raise MigrationError(
                f"two migrations with version {after.version:04d}: {before.label}, {after.label}"
            )
    return found


def migrate(dsn: str, migrations: MigrationSet) -> list[Migration]:
    """Bring the database at ``dsn`` up to date; return the migrations applied now.

    Needs a role that may create schemas, roles and tables (the database owner or an
    admin), not a component's runtime role.
    """
    shipped = available_migrations(migrations.source)
    table = sql.Identifier(migrations.schema, migrations.table)
    applied_now: list[Migration] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (migrations.lock_key,))
        try:
            conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(migrations.schema))
            )
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " version integer PRIMARY KEY, name text NOT NULL, sha256 text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                ).format(table)
            )
            rows = conn.execute(sql.SQL("SELECT version, sha256 FROM {}").format(table))
            done = {int(v): str(h) for v, h in rows.fetchall()}
            for migration in shipped:
                if migration.version in done:
                    if done[migration.version] != migration.sha256:
                        raise MigrationError(
                            f"{migrations.what} {migration.label} was changed after it was "
                            "applied; ship a new migration instead"
                        )
                    continue
                with conn.transaction():
                    # Bytes: the file is run as written, no client-side placeholder parsing.
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        sql.SQL(
                            "INSERT INTO {} (version, name, sha256) VALUES (%s, %s, %s)"
                        ).format(table),
                        (migration.version, migration.name, migration.sha256),
                    )
                applied_now.append(migration)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (migrations.lock_key,))
    return applied_now
