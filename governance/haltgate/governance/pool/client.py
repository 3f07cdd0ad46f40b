"""The sidecar's side of a pool: spend locally from a lease, renew in the background.

Hot path (:meth:`PoolClient.reserve`, :meth:`settle`, :meth:`release`): plain arithmetic on
the current :class:`~haltgate.governance.pool.lease.LocalLease`, no database round trip
while the lease has room and time left. When half of it is used (or a share of its time has
passed) the maintenance task renews it: one statement returns the old lease with its spend
and takes a new one. A call that does not fit waits for one renewal (cold path).

Halts: a dedicated connection LISTENs on ``haltgate_pool``; a NOTIFY for this pool flips
the local state at once, so every member refuses new calls (EXTERNAL, ``pool_halted``)
within the notification latency. The maintenance task re-reads the state every
``poll_interval`` too, in case a notification was lost with its connection.

Database unreachable: the current lease is spent until its local deadline (it was granted,
the pool counts it as leased); past that, calls are refused with ``pool_unreachable`` (fail
closed, the default) or let through uncounted (fail open), and either is counted in
``haltgate_pool_fail_total`` and logged; the refused calls are audited by the pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, Counter

from haltgate.governance.errors import DeniedError, HaltgateError, UnavailableError
from haltgate.governance.policy_base import FailMode, FailureType
from haltgate.governance.pool.lease import DIMENSIONS, ZERO, Amounts, LocalLease, local_deadline
from haltgate.governance.pool.store import CHANNEL, LeaseGrant, PoolConfig, PoolStore

__all__ = ["PoolClient", "PoolMetrics", "PoolSettings"]

log = logging.getLogger("haltgate.pool")


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """How a member talks to its pool."""

    dsn: str
    """libpq URI of the pool database (a role in ``haltgate_pool_member``)."""
    pool: str
    """Pool key ``<namespace>/<name>``."""
    holder: str
    """This member's lease holder name (``<namespace>/<workload>/<pod>``)."""
    fail_mode: FailMode = FailMode.CLOSED
    """Database unreachable past the current lease: refuse (closed) or allow uncounted."""
    renew_share: float = 0.5
    """Renew in the background once this share of the allotment is spent or reserved."""
    renew_age: float = 0.4
    """... or once this share of ``lease_seconds`` has passed (heartbeat)."""
    poll_interval: float = 1.0
    """Seconds between maintenance rounds (state re-read, expiry sweep, error flush)."""
    op_timeout: float = 3.0
    """Seconds one database operation may take before it counts as unreachable."""
    connect_timeout: int = 3
    """Seconds to open a connection."""


class PoolMetrics:
    """The pool metrics of a member (``haltgate_pool_*``), on the caller's registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = registry if registry is not None else CollectorRegistry()
        self.leases = Counter(
            "haltgate_pool_lease_requests_total",
            "Lease requests (take or renew) by result.",
            ["result"],
            registry=reg,
        )
        self.refusals = Counter(
            "haltgate_pool_refusals_total",
            "Calls the pool refused, by code.",
            ["code"],
            registry=reg,
        )
        self.failures = Counter(
            "haltgate_pool_fail_total",
            "Calls decided without the pool database (lost coordination),"
            " by mode (closed: refused, open: allowed uncounted).",
            ["mode"],
            registry=reg,
        )
        self.db_errors = Counter(
            "haltgate_pool_db_errors_total",
            "Pool database operations that failed or timed out.",
            registry=reg,
        )


@dataclass(slots=True)
class _Renewal:
    """A renewal statement in flight: what it returns and reports."""

    task: asyncio.Task[LeaseGrant | None]
    old: LocalLease | None
    spent: Amounts
    sent: float


class PoolClient:
    """One member of one pool. ``await start()``, then reserve/settle/release per call."""

    def __init__(self, settings: PoolSettings, metrics: PoolMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or PoolMetrics()
        self.config: PoolConfig | None = None
        self.lease: LocalLease | None = None
        self._lease_sent = 0.0
        self._store: PoolStore | None = None
        self._listener: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._halt: tuple[str, str] | None = None
        """(code, reason) while the pool is halted."""
        self._reachable = False
        self._errors = 0
        self._member_halt: str | None = None
        self._member_halt_reported = False
        self._closed = False
        self._short_until = 0.0
        self._next_round = 0.0
        """Monotonic time until which a call that does not fit is refused without asking
        the database again (the pool was found too short for it a moment ago)."""
        self.lease_round_trips = 0
        self._pending: _Renewal | None = None
        """A renewal statement sent whose answer the sender stopped waiting for (it was
        cancelled or timed out): it may have committed, so it is adopted before the next
        lease operation rather than the old lease being reported again."""

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect, read the pool, LISTEN, take a first lease. Never raises for an
        unreachable database: the member then refuses calls (fail closed) until it is back."""
        await self._connect()
        if self._store is not None:
            async with self._lock:
                await self._renew(ZERO)
        self._tasks.append(asyncio.get_running_loop().create_task(self._maintain()))

    async def close(self) -> None:
        """Return the lease with what was spent; stop the tasks; close connections."""
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        try:
            async with self._lock, asyncio.timeout(self.settings.op_timeout * 2):
                # A renewal cut short by the cancellation may have committed: learn its
                # lease first, so the spend it reported is not reported again and the
                # lease the database holds is the one returned.
                if not await self._adopt_pending():
                    raise TimeoutError("a renewal is still under way")
                lease, store = self.lease, self._store
                if lease is not None and store is not None:
                    await store.settle(self.settings.pool, old=lease.lease_id, spent=lease.spent)
                    self.lease = None
        except (psycopg.Error, OSError, TimeoutError) as e:
            log.warning(
                "pool %s: lease not returned at shutdown (it expires): %s",
                self.settings.pool,
                e,
            )
        await self._disconnect()

    # ------------------------------------------------------------------ hot path

    @property
    def halted(self) -> bool:
        return self._halt is not None

    def check(self) -> HaltgateError | None:
        """The refusal every call gets while the pool is halted, else ``None``."""
        if self._halt is None:
            return None
        code, reason = self._halt
        self.metrics.refusals.labels("pool_halted").inc()
        return DeniedError(
            f"the budget pool {self.settings.pool} is halted ({code}): {reason}",
            code="pool_halted",
            failure_type=FailureType.EXTERNAL,
        )

    def try_reserve(self, call_id: str, need: Amounts) -> bool:
        """Reserve from the current lease without any I/O; False if it does not fit."""
        lease = self.lease
        if lease is None or self._halt is not None:
            return False
        if not lease.try_reserve(call_id, need, time.monotonic()):
            return False
        if lease.used_share() >= self.settings.renew_share:
            self._wake.set()  # renew in the background before it runs out
        return True

    async def reserve(self, call_id: str, need: Amounts) -> HaltgateError | None:
        """Reserve ``need`` for a call: ``None`` when granted, else the refusal."""
        refusal = self.check()
        if refusal is not None:
            return refusal
        if self.try_reserve(call_id, need):
            return None
        # Cold path: the lease is spent, expired or missing. One renewal, then decide.
        async with self._lock:
            if self.try_reserve(call_id, need):
                return None
            if time.monotonic() >= self._short_until:
                await self._renew(need)
                if self.try_reserve(call_id, need):
                    return None
                self._short_until = time.monotonic() + min(1.0, self.settings.poll_interval)
        refusal = self.check()
        if refusal is not None:
            return refusal
        lease = self.lease
        if lease is None or not self._reachable:
            # Past the current lease without the database: fail closed (or open).
            if self.settings.fail_mode is FailMode.OPEN:
                self.metrics.failures.labels("open").inc()
                log.warning(
                    "pool %s unreachable: call %s allowed uncounted (fail open)",
                    self.settings.pool,
                    call_id,
                )
                return None
            self.metrics.failures.labels("closed").inc()
            self.metrics.refusals.labels("pool_unreachable").inc()
            return UnavailableError(
                f"the budget pool {self.settings.pool} cannot be reached and this member "
                "holds no lease with room left (fail closed)",
                code="pool_unreachable",
            )
        # The database answered: the pool is too short for this call.
        room = lease.room() if time.monotonic() < lease.deadline else ZERO
        dims = [
            d
            for d, a, r, lim in zip(
                DIMENSIONS, need.values(), room.values(), lease.limited, strict=True
            )
            if lim and a > r
        ]
        code = f"pool_{dims[0].removesuffix('_pico')}_exhausted" if dims else "pool_exhausted"
        self.metrics.refusals.labels(code).inc()
        return DeniedError(
            f"the budget pool {self.settings.pool} has too little "
            f"{', '.join(dims) or 'budget'} left for this call",
            code=code,
            failure_type=FailureType.EXHAUSTION,
        )

    def settle(self, call_id: str, actual: Amounts) -> None:
        """Charge a call's actual spend (replacing its reservation)."""
        lease = self.lease
        if lease is not None:
            lease.settle(call_id, actual)

    def release(self, call_id: str) -> None:
        """Give back a reservation that never reached upstream."""
        lease = self.lease
        if lease is not None:
            lease.release(call_id)

    def note_error(self) -> None:
        """Count an upstream failure towards the pool's error-storm rule (flushed later)."""
        self._errors += 1

    def member_halted(self, code: str) -> None:
        """This member's own run halted: report it once (halt-storm rule)."""
        if self._member_halt is None:
            self._member_halt = code
            self._wake.set()

    def member_recovered(self) -> None:
        """The member's run was reset: a later halt is a new one."""
        self._member_halt = None
        self._member_halt_reported = False

    async def halt(self, code: str, reason: str, actor: str) -> None:
        """Halt the whole pool (cascade detected). Local refusal starts at once."""
        self._halt = (code, reason)
        store = self._store
        if store is None:
            log.error(
                "pool %s: halt %s not recorded (database unreachable)", self.settings.pool, code
            )
            return
        try:
            async with self._lock, asyncio.timeout(self.settings.op_timeout):
                await store.halt(self.settings.pool, code, reason, actor)
        except (psycopg.Error, OSError, TimeoutError) as e:
            self._lost(e)

    def snapshot(self) -> dict[str, Any]:
        """State, reachability and the current lease (JSON-able, for the admin API)."""
        lease = self.lease
        return {
            "pool": self.settings.pool,
            "state": "Halted" if self._halt else "Active",
            "halt": {"code": self._halt[0], "reason": self._halt[1]} if self._halt else None,
            "reachable": self._reachable,
            "lease_round_trips": self.lease_round_trips,
            "lease": None
            if lease is None
            else {
                "id": lease.lease_id,
                "allotment": lease.allotment.as_dict(),
                "spent": lease.spent.as_dict(),
                "reserved": lease.reserved.as_dict(),
                "seconds_left": round(lease.deadline - time.monotonic(), 3),
            },
        }

    # ------------------------------------------------------------------ database

    async def _connect(self) -> None:
        s = self.settings
        try:
            async with asyncio.timeout(s.connect_timeout + s.op_timeout):
                store = await PoolStore.connect(s.dsn, connect_timeout=s.connect_timeout)
                config = await store.config(s.pool)
                listener = await psycopg.AsyncConnection.connect(
                    s.dsn, autocommit=True, connect_timeout=s.connect_timeout
                )
                await listener.execute(f"LISTEN {CHANNEL}")
        except (psycopg.Error, OSError, TimeoutError) as e:
            self._lost(e)
            return
        self._store, self._listener = store, listener
        self._reachable = True
        self._apply_config(config)
        self._tasks.append(asyncio.get_running_loop().create_task(self._listen(listener)))

    async def _disconnect(self) -> None:
        for conn in (self._store.conn if self._store else None, self._listener):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
        self._store = self._listener = None

    def _lost(self, error: BaseException) -> None:
        if self._reachable or self._store is None:
            log.warning("pool %s: database unreachable: %s", self.settings.pool, error)
        self._reachable = False
        self.metrics.db_errors.inc()

    def _apply_config(self, config: PoolConfig | None) -> None:
        if config is None:
            self._halt = ("pool_unknown", "the pool does not exist in the pool database")
            return
        self.config = config
        self._halt = (
            (config.halt_code or "halted", config.halt_reason or "") if config.halted else None
        )

    async def _listen(self, conn: psycopg.AsyncConnection[Any]) -> None:
        try:
            async for note in conn.notifies():
                try:
                    data = json.loads(note.payload)
                except ValueError:
                    continue
                if data.get("pool") != self.settings.pool:
                    continue
                if data.get("state") == "Halted":
                    self._halt = (str(data.get("code") or "halted"), str(data.get("reason") or ""))
                    log.warning("pool %s halted: %s", self.settings.pool, data.get("code"))
                else:
                    self._halt = None
                    self._wake.set()  # take a fresh lease now
        except (psycopg.Error, OSError) as e:
            self._lost(e)
            if self._listener is conn:
                self._listener = None  # the next maintenance round reconnects
            self._wake.set()

    async def _renew(self, extra: Amounts) -> None:
        """Return the current lease and take a new one covering calls in flight + ``extra``.
        Caller holds ``self._lock``."""
        try:
            if not await self._adopt_pending():
                raise TimeoutError("an earlier renewal is still under way")
        except (psycopg.Error, OSError, TimeoutError) as e:
            self.metrics.leases.labels("error").inc()
            self._lost(e)
            return
        store, config = self._store, self.config
        if store is None or config is None:
            return
        old = self.lease
        spent = old.spent if old is not None else ZERO
        sent = time.monotonic()
        try:
            async with asyncio.timeout(self.settings.op_timeout):
                grant = None
                for attempt, hold in enumerate(self._holds(old, spent, sent)):
                    if attempt and old is not None:
                        old.deadline = float("-inf")  # what it held is gone: stop spending it
                    grant = await self._send_renewal(store, old, spent, hold, hold + extra, sent)
                    if grant is not None:
                        break
                    fresh = await store.config(self.settings.pool)
                    self._apply_config(fresh)
                    if fresh is None or fresh.halted:
                        break
        except (psycopg.Error, OSError, TimeoutError) as e:
            self.metrics.leases.labels("error").inc()
            self._lost(e)
            return
        self.lease_round_trips += 1
        self._reachable = True
        if grant is None:
            self.metrics.leases.labels("refused").inc()
            return
        self.metrics.leases.labels("granted").inc()
        self._install(grant, old, spent, sent, config)

    def _install(
        self,
        grant: LeaseGrant,
        old: LocalLease | None,
        spent: Amounts,
        sent: float,
        config: PoolConfig,
    ) -> None:
        """Make ``grant`` (which returned ``old`` with ``spent``) the current lease."""
        lease = LocalLease(
            grant.lease_id,
            grant.allotment,
            config.limited,
            local_deadline(sent, config.lease_seconds),
        )
        if old is not None:
            lease.carry_spent(old.spent - spent)  # settled during the round trip
            for call_id, need in old.in_flight.items():
                lease.adopt(call_id, need)
        self.lease = lease
        self._lease_sent = sent

    async def _send_renewal(
        self,
        store: PoolStore,
        old: LocalLease | None,
        spent: Amounts,
        hold: Amounts,
        need: Amounts,
        sent: float,
    ) -> LeaseGrant | None:
        """One renewal statement, shielded: once sent it runs to its end even if the caller
        is cancelled (shutdown) or times out; its answer is then adopted later
        (:meth:`_adopt_pending`), because the database may already hold the new lease."""
        task = asyncio.get_running_loop().create_task(
            store.renew(
                self.settings.pool,
                self.settings.holder,
                old=old.lease_id if old else None,
                spent=spent,
                hold=hold,
                need=need,
            )
        )
        renewal = _Renewal(task, old, spent, sent)
        self._pending = renewal
        grant = await asyncio.shield(task)
        if self._pending is renewal:
            self._pending = None
        return grant

    async def _adopt_pending(self) -> bool:
        """Wait (bounded) for a renewal whose sender gave up, and install its lease if it
        was granted. False if it is still under way (nothing may be sent meanwhile).
        Caller holds ``self._lock``."""
        renewal = self._pending
        if renewal is None:
            return True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.op_timeout):
                await asyncio.wait([renewal.task])
        if not renewal.task.done():
            return False
        self._pending = None
        if renewal.task.cancelled() or renewal.task.exception() is not None:
            return True  # the statement failed: the old lease is still the one held
        grant, config = renewal.task.result(), self.config
        if grant is None or config is None or self.lease is not renewal.old:
            return True
        self.lease_round_trips += 1
        self.metrics.leases.labels("granted").inc()
        self._install(grant, renewal.old, renewal.spent, renewal.sent, config)
        return True

    def _holds(self, old: LocalLease | None, spent: Amounts, now: float) -> list[Amounts]:
        """What a renewal must keep, most to least, tried in order.

        1. Calls go on spending a valid old lease while the round trip is under way (the
           hot path takes no lock), so the new lease must cover all the old one has not
           spent (what is spent meanwhile moves over): the pool never gets back an
           allotment that is still being spent.
        2. If the pool no longer has that (the database expired the lease and gave it
           away: this member was paused or cut off), stop spending the old lease and keep
           only the calls in flight.
        3. If not even those fit, take what there is: the calls in flight were spent from
           an expired lease (the documented over-spend bound counts them).
        """
        if old is None:
            return [ZERO]
        in_flight = old.reserved
        holds = [] if now >= old.deadline else [(old.allotment - spent).clamp_to(old.allotment)]
        holds += [in_flight, ZERO]
        return list(dict.fromkeys(holds))

    async def _maintain(self) -> None:
        """Renew, heartbeat, sweep expired leases, flush error counts, re-read the state."""
        s = self.settings
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(s.poll_interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._maintain_once()
            except Exception:  # never let the task die: the member would stop renewing
                log.exception("pool %s: maintenance failed", s.pool)

    async def _maintain_once(self) -> None:
        s = self.settings
        if self._store is None or self._listener is None:
            await self._disconnect()
            await self._connect()
        store, config = self._store, self.config
        if store is None or config is None:
            return
        async with self._lock:
            lease = self.lease
            if self._halt is None and (lease is None or lease.used_share() >= s.renew_share):
                await self._renew(ZERO)  # first: calls are spending this lease right now
            if self._pending is not None:
                return  # a renewal's answer is still due on this connection: adopt it first
            try:
                async with asyncio.timeout(s.op_timeout):
                    if time.monotonic() >= self._next_round:
                        # The hot path wakes this task often; the state re-read and the
                        # expiry sweep are due once per poll interval.
                        self._next_round = time.monotonic() + s.poll_interval
                        fresh = await store.config(s.pool)
                        self._apply_config(fresh)
                        if fresh is not None:
                            self.config = config = fresh
                        await store.expire(s.pool)
                    if self._errors:
                        n, self._errors = self._errors, 0
                        await store.record(s.pool, "errors", s.holder, "upstream_error", n)
                    if self._member_halt is not None and not self._member_halt_reported:
                        self._member_halt_reported = True
                        await store.record(s.pool, "member_halt", s.holder, self._member_halt)
                    if store.conn.closed:
                        raise psycopg.OperationalError("connection closed")
            except (psycopg.Error, OSError, TimeoutError) as e:
                self._lost(e)
                await self._disconnect()
                return
            self._reachable = True
            if (
                self._halt is None
                and self.lease is not None
                and time.monotonic() - self._lease_sent >= config.lease_seconds * s.renew_age
            ):
                await self._renew(ZERO)  # heartbeat: report spend, extend the lease
