"""The audit schema's migrations.

Applies ``schema/NNNN_*.sql`` with the shared runner (:mod:`haltgate.governance.migrations`:
in order, one transaction each, under an advisory lock). Applied files are recorded with
their SHA-256 in ``haltgate.schema_migrations``; an applied file that changed is an error,
never re-run.
"""

from __future__ import annotations

from haltgate.governance import migrations
from haltgate.governance.migrations import Migration, MigrationError, MigrationSet

__all__ = ["AUDIT_MIGRATIONS", "Migration", "MigrationError", "available_migrations", "migrate"]

AUDIT_MIGRATIONS = MigrationSet(
    source="haltgate.governance.audit.schema",
    table="schema_migrations",
    lock_key=0x6861_6C74,  # "halt": the audit schema's advisory lock id (pools use ...75)
    what="audit migration",
)


def available_migrations() -> list[Migration]:
    """The audit migrations shipped with this version, ascending."""
    return migrations.available_migrations(AUDIT_MIGRATIONS.source)


def migrate(dsn: str) -> list[Migration]:
    """Bring the audit schema at ``dsn`` up to date; return the migrations applied now.

    Needs a role that may create schemas, roles and tables (the database owner or an
    admin), not the writer role.
    """
    return migrations.migrate(dsn, AUDIT_MIGRATIONS)
