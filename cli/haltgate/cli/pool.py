"""``haltgate pool``: BudgetPool database administration (schema, limits, status, halt, lift,
repair).

Every command talks to the pool database given by ``--dsn`` (or ``HALTGATE_POOL_DSN``).
Lifting is authenticated by PostgreSQL itself: the connecting role must be a member of
``haltgate_pool_admin`` (sidecars connect as ``haltgate_pool_member`` roles and cannot
lift). Each halt and lift is recorded in ``haltgate.pool_events`` with the database role
and the ``--as`` name, and NOTIFYed to every member.

Exit codes: 0 done; 1 refused or failed (message on stderr); 2 usage.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import psycopg

from haltgate.governance.pool.store import PoolStore, PoolStoreError, migrate, pool_key
from haltgate.governance.validation import PolicyFileError

T = TypeVar("T")

_dsn = click.option(
    "--dsn", envvar="HALTGATE_POOL_DSN", required=True, help="PostgreSQL URI of the pool database."
)
_ns = click.option(
    "--namespace", "-n", default="default", show_default=True, help="Namespace of the BudgetPool."
)


def _run(dsn: str, op: Callable[[PoolStore], Awaitable[T]]) -> T:
    async def main() -> T:
        store = await PoolStore.connect(dsn)
        try:
            return await op(store)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except (PoolStoreError, psycopg.Error, OSError) as e:
        raise click.ClickException(str(e).strip()) from e


@click.group(name="pool")
def pool() -> None:
    """Shared budget pools: schema, limits, status, halt, lift and repair."""


@pool.command(name="migrate")
@_dsn
def migrate_cmd(dsn: str) -> None:
    """Create or upgrade the pool schema (needs a role that may create tables and roles)."""
    try:
        applied = migrate(dsn)
    except (PoolStoreError, psycopg.Error) as e:
        raise click.ClickException(str(e).strip()) from e
    click.echo(f"applied: {', '.join(applied) or 'nothing (up to date)'}")


@pool.command(name="apply")
@_dsn
@click.option(
    "-f",
    "--file",
    "path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="BudgetPool YAML.",
)
def apply_cmd(dsn: str, path: Path) -> None:
    """Create a pool or update its limits and rules from a BudgetPool document."""
    import yaml

    from haltgate.governance.policy import BudgetPool

    try:
        doc = BudgetPool.model_validate(yaml.safe_load(path.read_text()))
    except (ValueError, PolicyFileError) as e:
        raise click.ClickException(f"{path}: {e}") from e
    key = pool_key(doc.metadata.namespace or "default", doc.metadata.name)
    _run(dsn, lambda s: s.upsert(key, doc.spec))
    click.echo(f"pool {key} applied")


@pool.command(name="status")
@_dsn
@_ns
@click.argument("name")
def status_cmd(dsn: str, namespace: str, name: str) -> None:
    """Print a pool's state, limits, spend and leases as JSON."""
    found: dict[str, Any] | None = _run(dsn, lambda s: s.status(pool_key(namespace, name)))
    if found is None:
        raise click.ClickException(f"no pool {namespace}/{name}")
    click.echo(json.dumps(found, indent=2, default=str))


@pool.command(name="halt")
@_dsn
@_ns
@click.argument("name")
@click.option("--reason", required=True, help="Why (recorded and shown to every member).")
@click.option("--as", "actor", required=True, help="Who halts (recorded with the DB role).")
def halt_cmd(dsn: str, namespace: str, name: str, reason: str, actor: str) -> None:
    """Halt a pool: every member refuses new calls (EXTERNAL, pool_halted)."""
    done = _run(dsn, lambda s: s.halt(pool_key(namespace, name), "admin_halt", reason, actor))
    click.echo("halted" if done else "not halted (unknown pool or already halted)")


@pool.command(name="lift")
@_dsn
@_ns
@click.argument("name")
@click.option("--reason", required=True, help="Why the pool may resume (recorded).")
@click.option("--as", "actor", required=True, help="Who lifts (recorded with the DB role).")
def lift_cmd(dsn: str, namespace: str, name: str, reason: str, actor: str) -> None:
    """Lift a halted pool (the role must be in haltgate_pool_admin)."""
    done = _run(dsn, lambda s: s.lift(pool_key(namespace, name), actor, reason))
    if not done:
        raise click.ClickException(f"pool {namespace}/{name} is not halted (or unknown)")
    click.echo("lifted")


@pool.command(name="repair")
@_dsn
@_ns
@click.argument("name")
@click.option("--as", "actor", required=True, help="Who repairs (recorded with the DB role).")
def repair_cmd(dsn: str, namespace: str, name: str, actor: str) -> None:
    """Recompute a pool's leased amounts from its live leases (the role must be in
    haltgate_pool_admin).

    For pools that lost capacity to halts before issue 16's fix: a refused lease renewal
    deleted its lease but left the allotment counted as leased. Safe while
    members run: the pool row is locked while the leases are summed. Prints what changed as
    JSON ({} when nothing did); the change is recorded as a "repair" pool event.
    """
    key = pool_key(namespace, name)
    changed = _run(dsn, lambda s: s.repair(key, actor))
    if changed is None:
        raise click.ClickException(f"no pool {key}")
    click.echo(json.dumps(changed, indent=2))
