"""The pool's PostgreSQL store: schema, leases, settlement, expiry, halts, lifts, storms.

Every member operation is one statement (or one server-side function call), so one round trip and
atomic: a lease is taken by a single ``UPDATE ... RETURNING`` that checks what remains and
inserts the lease row in the same statement; a halt updates the state and ``NOTIFY``s the
members in one transaction. psycopg 3, async.

Schema: ``schema/NNNN_*.sql`` in the ``haltgate`` schema, applied by :func:`migrate` with the
shared runner (:mod:`haltgate.governance.migrations`; recorded in
``haltgate.pool_migrations``, under an advisory lock).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from haltgate.governance import migrations
from haltgate.governance.migrations import MigrationError, MigrationSet
from haltgate.governance.policy import BudgetPoolSpec
from haltgate.governance.policy_base import Period
from haltgate.governance.pool.lease import DIMENSIONS, ZERO, Amounts, fraction_ppm

__all__ = [
    "CHANNEL",
    "POOL_MIGRATIONS",
    "LeaseGrant",
    "PoolConfig",
    "PoolStore",
    "PoolStoreError",
    "migrate",
    "pool_key",
    "spec_row",
]

CHANNEL = "haltgate_pool"
"""LISTEN/NOTIFY channel of pool state changes (payload: JSON with pool, state, code)."""

POOL_MIGRATIONS = MigrationSet(
    source="haltgate.governance.pool.schema",
    table="pool_migrations",
    lock_key=0x6861_6C75,  # the pool schema's advisory lock id (audit uses ...74)
    what="pool migration",
)
_USD_PICO = 10**12


class PoolStoreError(Exception):
    """The pool database refused or failed an operation."""


def pool_key(namespace: str, name: str) -> str:
    """The pool's primary key: ``<namespace>/<name>`` of the BudgetPool."""
    return f"{namespace}/{name}"


def migrate(dsn: str) -> list[str]:
    """Apply the shipped pool migrations not yet applied; return their names."""
    try:
        return [m.label for m in migrations.migrate(dsn, POOL_MIGRATIONS)]
    except MigrationError as e:
        raise PoolStoreError(str(e)) from e


def spec_row(spec: BudgetPoolSpec) -> dict[str, Any]:
    """The ``haltgate.pools`` columns a BudgetPool spec sets (limits, lease, cascade)."""
    row: dict[str, Any] = {f"{d}_limit": None for d in DIMENSIONS}
    row.update({f"{d}_period": Period.RUN.value for d in DIMENSIONS})
    if spec.calls is not None:
        row["calls_limit"] = spec.calls.limit
        row["calls_period"] = spec.calls.period.value
    if spec.tokens is not None:
        row["tokens_limit"] = spec.tokens.limit
        row["input_tokens_limit"] = spec.tokens.input
        row["output_tokens_limit"] = spec.tokens.output
        for d in ("tokens", "input_tokens", "output_tokens"):
            row[f"{d}_period"] = spec.tokens.period.value
    if spec.cost_usd is not None:
        row["cost_pico_limit"] = round(spec.cost_usd.limit * _USD_PICO)
        row["cost_pico_period"] = spec.cost_usd.period.value
    cascade = spec.cascade
    storm = cascade.halt_storm
    errors = getattr(cascade, "error_storm", None)
    row.update(
        lease_ppm=fraction_ppm(spec.lease_fraction),
        lease_seconds=spec.lease_seconds,
        max_chain_depth=cascade.max_chain_depth,
        detect_loops=cascade.detect_loops,
        storm_halts=storm.halts if storm else None,
        storm_window_seconds=storm.window_seconds if storm else None,
        error_storm_errors=errors.errors if errors else None,
        error_storm_window_seconds=errors.window_seconds if errors else None,
    )
    return row


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """What a member needs to know of its pool (read at start and on every lease)."""

    pool: str
    limited: tuple[bool, ...]
    """Per dimension (``DIMENSIONS`` order): whether the pool limits it."""
    lease_seconds: float
    max_chain_depth: int | None
    detect_loops: bool
    state: str
    halt_code: str | None
    halt_reason: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> PoolConfig:
        return cls(
            pool=row["pool"],
            limited=tuple(row[f"{d}_limit"] is not None for d in DIMENSIONS),
            lease_seconds=float(row["lease_seconds"]),
            max_chain_depth=row["max_chain_depth"],
            detect_loops=bool(row["detect_loops"]),
            state=row["state"],
            halt_code=row["halt_code"],
            halt_reason=row["halt_reason"],
        )

    @property
    def halted(self) -> bool:
        return self.state == "Halted"


@dataclass(frozen=True, slots=True)
class LeaseGrant:
    """A lease the database granted."""

    lease_id: int
    allotment: Amounts
    expires_at: datetime


# ----------------------------------------------------------------------- SQL


def _eff_used(d: str) -> str:
    # Spend of the current period: a period that rolled over starts again from zero.
    return (
        f"(CASE WHEN {d}_period_start < haltgate.pool_period_start({d}_period) "
        f"THEN 0 ELSE {d}_used END)"
    )


def _remaining(d: str) -> str:
    # What is left once the renewing member's old allotment is back and its spend counted.
    return (
        f"({d}_limit - {_eff_used(d)} - %(spent_{d})s - ({d}_leased - "
        f"coalesce((SELECT {d} FROM prior), 0)))"
    )


def _grant(d: str) -> str:
    # lease.allotment() in SQL: min(rem, max(need, hold, ceil(rem * ppm / 1e6))); 0 unlimited.
    rem = _remaining(d)
    return (
        f"(CASE WHEN {d}_limit IS NULL THEN 0 ELSE LEAST({rem}, GREATEST(%(need_{d})s, "
        f"%(hold_{d})s, ceil({rem}::numeric * lease_ppm / 1000000)::bigint)) END)"
    )


def _renew_sql() -> str:
    sets = []
    checks = []
    for d in DIMENSIONS:
        sets.append(f"{d}_used = {_eff_used(d)} + %(spent_{d})s")
        sets.append(
            f"{d}_period_start = CASE WHEN {d}_period_start < "
            f"haltgate.pool_period_start({d}_period) THEN now() AT TIME ZONE 'UTC' "
            f"ELSE {d}_period_start END"
        )
        sets.append(f"{d}_leased = {d}_leased - coalesce((SELECT {d} FROM prior), 0) + {_grant(d)}")
        checks.append(f"({d}_limit IS NULL OR {_remaining(d)} >= %(hold_{d})s)")
    grants = ", ".join(
        f"new.{d}_leased - old.{d}_leased + coalesce((SELECT {d} FROM prior), 0) AS {d}"
        for d in DIMENSIONS
    )
    dims = ", ".join(DIMENSIONS)
    return (
        # The old lease (if any) goes back: its allotment leaves `leased`, its spend joins
        # `used` (below, whether or not it had expired meanwhile: the spend is real).
        # `prior` locks the lease row, so a concurrent expiry either returned it first (then
        # `prior` is empty) or waits for this statement. The row is deleted only when the
        # pool UPDATE matched: a refused renewal (pool halted, too little left) changes
        # nothing at all, and the lease and its allotment in `leased` stay together.
        # (Every sub-statement of a WITH runs to completion whether or not it is read, so
        # a DELETE that did not depend on `p` would run even when `p` matched nothing.)
        "WITH prior AS (SELECT id, " + dims + " FROM haltgate.pool_leases WHERE id = %(old)s "
        "AND pool = %(pool)s FOR UPDATE), "
        f"p AS (UPDATE haltgate.pools SET {', '.join(sets)}, updated_at = now() "
        f"WHERE pool = %(pool)s AND state = 'Active' AND {' AND '.join(checks)} "
        f"RETURNING pool, lease_seconds, {grants}), "
        "gone AS (DELETE FROM haltgate.pool_leases WHERE id IN (SELECT id FROM prior) "
        "AND EXISTS (SELECT 1 FROM p) RETURNING id), "
        f"l AS (INSERT INTO haltgate.pool_leases (pool, holder, {dims}, expires_at) "
        f"SELECT pool, %(holder)s, {dims}, clock_timestamp() + make_interval(secs => "
        f"lease_seconds) FROM p RETURNING id, {dims}, expires_at) "
        "SELECT * FROM l"
    )


def _settle_sql() -> str:
    sets = ", ".join(
        f"{d}_used = {_eff_used(d)} + %(spent_{d})s, "
        f"{d}_leased = {d}_leased - coalesce((SELECT {d} FROM gone), 0)"
        for d in DIMENSIONS
    )
    return (
        f"WITH gone AS (DELETE FROM haltgate.pool_leases WHERE id = %(old)s AND pool = "
        f"%(pool)s RETURNING {', '.join(DIMENSIONS)}) "
        f"UPDATE haltgate.pools SET {sets}, updated_at = now() WHERE pool = %(pool)s "
        "RETURNING state"
    )


def _expire_sql() -> str:
    sums = ", ".join(f"sum({d}) AS {d}" for d in DIMENSIONS)
    sets = ", ".join(f"{d}_leased = {d}_leased - s.{d}" for d in DIMENSIONS)
    return (
        "WITH gone AS (DELETE FROM haltgate.pool_leases WHERE pool = %(pool)s AND "
        f"expires_at < clock_timestamp() RETURNING *), s AS (SELECT {sums} FROM gone), "
        f"u AS (UPDATE haltgate.pools p SET {sets} FROM s WHERE p.pool = %(pool)s AND "
        "EXISTS (SELECT 1 FROM gone) RETURNING 1), "
        "e AS (INSERT INTO haltgate.pool_events (pool, kind, actor, code, detail) "
        "SELECT pool, 'lease_expired', holder, 'lease_expired', jsonb_build_object('lease', id, "
        "'expired_at', expires_at) FROM gone RETURNING 1) "
        "SELECT count(*) AS n FROM gone"
    )


_RENEW = _renew_sql()
_SETTLE = _settle_sql()
_EXPIRE = _expire_sql()


def _params(
    pool: str,
    *,
    old: int | None,
    spent: Amounts,
    hold: Amounts = ZERO,
    need: Amounts = ZERO,
    holder: str = "",
) -> dict[str, Any]:
    p: dict[str, Any] = {"pool": pool, "old": old, "holder": holder}
    for d, s, h, n in zip(DIMENSIONS, spent.values(), hold.values(), need.values(), strict=True):
        p[f"spent_{d}"] = s
        p[f"hold_{d}"] = h
        p[f"need_{d}"] = n
    return p


class PoolStore:
    """Pool operations on one async connection (autocommit: each call is a transaction).

    Not safe for concurrent use on one instance: callers serialize (the PoolClient holds a
    lock), or open one store per task.
    """

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    @classmethod
    async def connect(cls, dsn: str, *, connect_timeout: int = 5) -> PoolStore:
        """Open a connection (autocommit, bounded connect time)."""
        conn = await psycopg.AsyncConnection.connect(
            dsn, autocommit=True, connect_timeout=max(1, connect_timeout)
        )
        return cls(conn)

    async def close(self) -> None:
        await self.conn.close()

    async def _one(self, sql: str, params: Any = None) -> dict[str, Any] | None:
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, params, prepare=True)
            return await cur.fetchone()

    # --------------------------------------------------------------- pools

    async def upsert(self, pool: str, spec: BudgetPoolSpec) -> None:
        """Create the pool or update its limits and rules (spend and state are kept)."""
        row = spec_row(spec)
        cols = ", ".join(row)
        values = ", ".join(f"%({c})s" for c in row)
        updates = ", ".join(f"{c} = excluded.{c}" for c in row)
        await self.conn.execute(
            f"INSERT INTO haltgate.pools (pool, {cols}) VALUES (%(pool)s, {values}) "
            f"ON CONFLICT (pool) DO UPDATE SET {updates}, updated_at = now()",
            {"pool": pool, **row},
        )

    async def config(self, pool: str) -> PoolConfig | None:
        """The pool's rules and state, or ``None`` if it does not exist."""
        row = await self._one("SELECT * FROM haltgate.pools WHERE pool = %s", (pool,))
        return PoolConfig.from_row(row) if row is not None else None

    async def status(self, pool: str) -> dict[str, Any] | None:
        """State, limits, spend, outstanding leases and members (for status and CLI)."""
        row = await self._one("SELECT * FROM haltgate.pools WHERE pool = %s", (pool,))
        if row is None:
            return None
        leases = await self._one(
            "SELECT count(*) AS leases, count(DISTINCT holder) AS members FROM "
            "haltgate.pool_leases WHERE pool = %s",
            (pool,),
        )
        assert leases is not None
        dims = {
            d: {
                "limit": row[f"{d}_limit"],
                "used": row[f"{d}_used"],
                "leased": row[f"{d}_leased"],
                "period": row[f"{d}_period"],
            }
            for d in DIMENSIONS
        }
        return {
            "pool": pool,
            "state": row["state"],
            "code": row["halt_code"],
            "reason": row["halt_reason"],
            "haltedBy": row["halted_by"],
            "haltedAt": row["halted_at"].isoformat() if row["halted_at"] else None,
            "liftedBy": row["lifted_by"],
            "dimensions": dims,
            "leases": leases["leases"],
            "members": leases["members"],
        }

    # --------------------------------------------------------------- leases

    async def renew(
        self,
        pool: str,
        holder: str,
        *,
        old: int | None,
        spent: Amounts,
        hold: Amounts,
        need: Amounts,
    ) -> LeaseGrant | None:
        """Return lease ``old`` (if any) with its ``spent`` and take a new one, atomically.

        ``hold``: what the new lease must cover at least (calls in flight); ``need``: what
        it should cover (plus the next call). ``None``: refused (pool halted, unknown, or
        what remains is below ``hold``); then the old lease is *not* returned either
        (the statement changed nothing: the lease row and its allotment in ``leased`` stay
        together) - call :meth:`settle` to give it back, or let it expire.
        """
        row = await self._one(
            _RENEW, _params(pool, old=old, spent=spent, hold=hold, need=need, holder=holder)
        )
        if row is None:
            return None
        return LeaseGrant(int(row["id"]), Amounts.from_mapping(row), row["expires_at"])

    async def settle(self, pool: str, *, old: int | None, spent: Amounts) -> str | None:
        """Report ``spent`` and return lease ``old`` without taking a new one."""
        row = await self._one(_SETTLE, _params(pool, old=old, spent=spent))
        return row["state"] if row else None

    async def expire(self, pool: str) -> int:
        """Return the allotments of leases past their expiry (crashed members); count."""
        row = await self._one(_EXPIRE, {"pool": pool})
        return int(row["n"]) if row else 0

    async def repair(self, pool: str, actor: str) -> dict[str, dict[str, int]] | None:
        """Recompute ``leased`` from the live lease rows; ``None`` if the pool is unknown.

        For pools whose ``leased`` drifted from their leases (before the fix of issue 16 a
        refused renewal deleted its lease row without returning the allotment, so the pool
        shrank for good). The pool row is locked first; every lease operation updates that
        row in the same statement as its lease rows, so the sum read afterwards (a new
        snapshot) is exact. Needs the ``haltgate_pool_admin`` role. Returns
        ``{dimension: {"before": n, "after": m}}`` for the dimensions that changed, and
        records a ``repair`` event when something did.
        """
        dims = ", ".join(f"{d}_leased" for d in DIMENSIONS)
        sums = ", ".join(f"coalesce(sum({d}), 0)::bigint AS {d}" for d in DIMENSIONS)
        async with self.conn.transaction(), self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT pg_has_role(session_user, 'haltgate_pool_admin', 'MEMBER') AS admin"
            )
            role = await cur.fetchone()
            if not (role and role["admin"]):
                raise PoolStoreError(f"repairing pool {pool} needs the haltgate_pool_admin role")
            await cur.execute(
                f"SELECT {dims} FROM haltgate.pools WHERE pool = %s FOR UPDATE", (pool,)
            )
            before = await cur.fetchone()
            if before is None:
                return None
            await cur.execute(f"SELECT {sums} FROM haltgate.pool_leases WHERE pool = %s", (pool,))
            live = await cur.fetchone()
            assert live is not None
            changed = {
                d: {"before": int(before[f"{d}_leased"]), "after": int(live[d])}
                for d in DIMENSIONS
                if before[f"{d}_leased"] != live[d]
            }
            if changed:
                sets = ", ".join(f"{d}_leased = %({d})s" for d in changed)
                await cur.execute(
                    f"UPDATE haltgate.pools SET {sets}, updated_at = now() WHERE pool = %(pool)s",
                    {"pool": pool, **{d: v["after"] for d, v in changed.items()}},
                )
                await cur.execute(
                    "INSERT INTO haltgate.pool_events (pool, kind, actor, code, detail) "
                    "VALUES (%s, 'repair', %s, 'leased_recomputed', %s)",
                    (pool, actor, Jsonb(changed)),
                )
        return changed

    # --------------------------------------------------------------- halts

    async def halt(self, pool: str, code: str, reason: str, actor: str) -> bool:
        """Halt the pool (NOTIFY at commit). False if unknown or already halted."""
        row = await self._one(
            "SELECT haltgate.pool_halt(%s, %s, %s, %s) AS done", (pool, code, reason, actor)
        )
        return bool(row and row["done"])

    async def lift(self, pool: str, actor: str, reason: str) -> bool:
        """Lift a halted pool; needs the ``haltgate_pool_admin`` role (else raises)."""
        try:
            row = await self._one(
                "SELECT haltgate.pool_lift(%s, %s, %s) AS done", (pool, actor, reason)
            )
        except psycopg.errors.InsufficientPrivilege as e:
            raise PoolStoreError(str(e).strip()) from e
        return bool(row and row["done"])

    async def record(
        self, pool: str, kind: str, actor: str, code: str | None, count: int = 1
    ) -> str | None:
        """Record a member event (``member_halt``, ``errors``, ``fail_closed``, ...).

        Member halts and errors count towards the pool's storm rules; returns the pool
        state afterwards (``Halted`` when this event completed a storm)."""
        row = await self._one(
            "SELECT haltgate.pool_record(%s, %s, %s, %s, %s) AS state",
            (pool, kind, actor, code, count),
        )
        return row["state"] if row else None

    async def events(self, pool: str, limit: int = 100) -> list[dict[str, Any]]:
        """The pool's latest events, newest first."""
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT * FROM haltgate.pool_events WHERE pool = %s ORDER BY id DESC LIMIT %s",
                (pool, limit),
            )
            return await cur.fetchall()
