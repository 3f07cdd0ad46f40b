"""The operator's BudgetPool handlers: membership and status, the pool's halt delivered to
its members' pods, and the pool database's notifications."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import kopf

from haltgate.operator import (
    apierrors,
    cluster,
    events,
    halts,
    injection,
    pools,
)
from haltgate.operator.handler_shared import (
    GROUP,
    VERSION,
    HaltBook,
    handled_marker,
    short_error,
    status_changes,
)

logger = logging.getLogger("haltgate.operator")


def register(
    registry: kopf.OperatorRegistry,
    book: HaltBook,
    background: list[Callable[[], Coroutine[Any, Any, None]]],
) -> None:
    """The BudgetPool event handler into ``registry``; its resync and notification loops into
    ``background``."""
    rt, session_box = book.rt, book.session_box
    note_pending, post_delivery_errors, mark_stale = (
        book.note_pending,
        book.post_delivery_errors,
        book.mark_stale,
    )

    known_pools: dict[tuple[str, str], kopf.Memo] = {}

    async def sync_pool(body: Mapping[str, Any], memo: kopf.Memo) -> None:
        wanted, members = await pools.reconcile(rt, body)
        meta = body.get("metadata") or {}
        if rt.settings.pool_dsn:
            try:
                for ev in await pools.sync_database(rt.settings.pool_dsn, body, wanted):
                    await events.post(rt.cluster, body, ev.type, ev.reason, ev.message)
            except Exception as e:  # the database down must not stop the cluster-side halt
                logger.warning("pool database sync failed: %s", short_error(e))
        reason = (meta.get("annotations") or {}).get(halts.ANNOTATION_HALT) or None
        if members and (reason or memo.get("halted")):
            pods = await rt.cluster.list_pods(
                meta["namespace"], f"{injection.LABEL_POLICY} in ({','.join(members)})"
            )
            source = f"BudgetPool/{meta['name']}"
            result = await halts.sync(
                rt, session_box["session"], meta["namespace"], source, pods, reason
            )
            for err in result.errors:
                logger.warning("pool halt delivery: %s", err)
            note_pending(meta["namespace"], source, result, reason)
            mark_stale(meta["namespace"], pods)
            await post_delivery_errors(body, result.errors)
            memo["halted"] = bool(result.halted or result.pending)
        changed = status_changes(body.get("status") or {}, wanted)
        if changed:
            await rt.cluster.patch_status(
                cluster.POOL_PLURAL, meta["namespace"], meta["name"], changed
            )

    @kopf.on.event(GROUP, VERSION, "budgetpools", id="pool", registry=registry)
    async def pool_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        meta = body.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if type == "DELETED":
            known_pools.pop(key, None)
            return
        known_pools[key] = memo
        if memo.get("handled") == handled_marker(body):
            return
        await sync_pool(body, memo)
        memo["handled"] = handled_marker(body)

    async def resync_pools() -> None:
        # Membership changes with the policies, not with the pool: recount now and then;
        # while halted or being lifted, as often as policy halts.
        while True:
            await asyncio.sleep(rt.settings.halt_resync_seconds)
            for key, memo in list(known_pools.items()):
                try:
                    body = await rt.cluster.read_custom(cluster.POOL_PLURAL, *key)
                    halting = bool(handled_marker(body)[1]) or memo.get("halted")
                    due = (
                        time.monotonic() - memo.get("last_full_sync", 0.0)
                        >= rt.settings.status_resync_seconds
                    )
                    if not (halting or due):
                        continue
                    await sync_pool(body, memo)
                    memo["last_full_sync"] = time.monotonic()
                except apierrors.NotFound:
                    known_pools.pop(key, None)
                except Exception as e:
                    logger.warning("pool resync failed: %s", short_error(e))

    background.append(resync_pools)

    async def pool_notifications() -> None:
        # A pool halted or lifted in the database (a cascade, the CLI) shows in its status
        # and Events at once instead of at the next resync. Members are told by the
        # database itself; this is the operator's view only.
        dsn = rt.settings.pool_dsn
        if not dsn:
            return
        import json

        import psycopg

        from haltgate.governance.pool.store import CHANNEL

        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    async for note in conn.notifies():
                        key = str(json.loads(note.payload).get("pool", "")).partition("/")
                        memo = known_pools.get((key[0], key[2]))
                        if memo is None:
                            continue
                        body = await rt.cluster.read_custom(cluster.POOL_PLURAL, key[0], key[2])
                        await sync_pool(body, memo)
            except Exception as e:  # reconnect; the periodic resync covers the gap
                logger.warning("pool notifications: %s", short_error(e))
                await asyncio.sleep(rt.settings.halt_resync_seconds)

    background.append(pool_notifications)
