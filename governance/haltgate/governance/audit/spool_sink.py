"""The production audit sink: every record durable in the local spool before it returns."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from pathlib import Path
from typing import Any

from haltgate.governance.audit.metrics import AuditMetrics
from haltgate.governance.audit.record import AuditRecord, ChainHead
from haltgate.governance.audit.sink import AuditError
from haltgate.governance.audit.spool_settings import SpoolSettings
from haltgate.governance.audit.spool_writer import SpoolWriter, Waiter

__all__ = ["SpoolAuditSink"]


class SpoolAuditSink:
    """The production :class:`AuditSink`: every record durable in the local spool.

    ``intent`` and ``outcome`` return once the record's group commit reached the disk.
    Errors: :class:`SpoolFullError` (spool full, policy ``block``) and
    :class:`AuditUnavailableError` (write or fsync failed, or closed): refuse the call.
    """

    def __init__(
        self,
        directory: Path | str | None = None,
        *,
        settings: SpoolSettings | None = None,
        metrics: AuditMetrics | None = None,
        **options: Any,
    ) -> None:
        if settings is None:
            if directory is None:
                raise ValueError("SpoolAuditSink needs a directory or settings")
            settings = SpoolSettings(directory=Path(directory), **options)
        self.settings = settings
        self._writer = SpoolWriter(settings, metrics)
        self.metrics = self._writer.metrics

    @property
    def chain_heads(self) -> dict[str, ChainHead]:
        """Last sealed record per chain (includes records being committed)."""
        return self._writer.chainer.heads()

    async def _append(self, record: AuditRecord) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if self._writer.submit(record, Waiter(loop, fut)):
            await fut

    async def intent(self, record: AuditRecord) -> None:
        """Durably append the intent record (see class docstring for errors)."""
        await self._append(record)

    def commit_now(self, record: AuditRecord) -> bool:
        """Make ``record`` durable on this thread, now, if no commit is in flight (no
        hand-off to the writer thread: for a caller with nothing else to do meanwhile).
        ``True`` when done (or dropped: spool full, ``continue``); ``False`` when it was
        not taken (a commit in flight, or commits are slow): ``await intent()`` instead.
        Errors as :meth:`intent`. Blocks the calling thread for one commit."""
        return self._writer.commit_now(record) is not None

    def begin_intent(self, record: AuditRecord) -> asyncio.Future[None] | None:
        """Queue the intent record for the next commit and return at once: the future
        completes when it is durable (or fails with the commit's ``AuditError``); ``None``
        when the record was dropped (spool full, ``continue``). Refusals known before the
        commit (spool full, invalid record, spool failed) raise here. For
        ``spec.audit.durability: overlapped``: the caller overlaps the commit with other
        work and awaits the future before anything it depends on is released."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if not self._writer.submit(record, Waiter(loop, fut)):
            return None
        # A caller that is cancelled meanwhile never awaits it: no "never retrieved" noise.
        fut.add_done_callback(_retrieve)
        return fut

    async def outcome(self, record: AuditRecord) -> None:
        """Durably append the outcome or connection record."""
        await self._append(record)

    def append_blocking(self, record: AuditRecord, timeout: float = 30.0) -> None:
        """Synchronous append for code without an event loop (CLI tools, benchmarks)."""
        cf: concurrent.futures.Future[None] = concurrent.futures.Future()
        if self._writer.submit(record, Waiter(None, cf)):
            cf.result(timeout=timeout)

    def health(self) -> str | None:
        """``None`` when records are accepted, else the reason code (see
        :meth:`SpoolWriter.health`): the sidecar's ``/readyz`` reports it."""
        return self._writer.health()

    def carry_state(self, flush: Callable[[], None]) -> Callable[[], bool]:
        """See :meth:`SpoolWriter.carry_state` (the Governor's state in the group commit)."""
        return self._writer.carry_state(flush)

    def submit_nowait(self, record: AuditRecord) -> concurrent.futures.Future[None] | None:
        """Queue ``record`` without waiting (outcomes); the returned future completes when
        it is durable: with the next awaited record's commit, or after at most
        ``linger_seconds``."""
        cf: concurrent.futures.Future[None] = concurrent.futures.Future()
        return cf if self._writer.submit(record, Waiter(None, cf), urgent=False) else None

    def queue_outcome(self, record: AuditRecord, on_error: Callable[[AuditError], None]) -> bool:
        """``submit_nowait`` without a future (none to build, complete and call back per
        call): ``on_error`` is called, on the committing thread, if the record is refused
        at its commit. ``False`` when dropped (spool full, ``continue``); errors known at
        once raise, as ``submit_nowait``."""
        return self._writer.submit(record, Waiter(None, None, on_error), urgent=False)

    async def close(self) -> None:
        """Commit queued records and release the spool."""
        await asyncio.get_running_loop().run_in_executor(None, self._writer.close)

    def close_blocking(self) -> None:
        """``close`` without an event loop."""
        self._writer.close()


def _retrieve(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.exception()
