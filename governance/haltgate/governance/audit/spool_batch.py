"""What a spool commit carries: the records queued for it and who waits for them.

A :class:`Batch` collects the frames sealed for one commit, with their chain heads and
their :class:`Waiter` s; :func:`resolve` completes the waiters once the commit is durable
(or failed), with one wake-up per event loop, none for the loop of the committing thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from haltgate.governance.audit.record import ChainHead
from haltgate.governance.audit.sink import AuditError

__all__ = ["Batch", "Waiter", "resolve"]


@dataclass(slots=True)
class Waiter:
    """Who waits for a record: an event loop's future, or (``loop`` None) a thread's."""

    loop: asyncio.AbstractEventLoop | None
    future: asyncio.Future[None] | concurrent.futures.Future[None] | None
    """``None``: nobody waits (``commit_now``: its caller reads the commit's error;
    ``queue_outcome``: ``on_error``)."""
    on_error: Callable[[AuditError], None] | None = None
    """Without a future: called (on the committing thread) when the record is refused."""


@dataclass(slots=True)
class Batch:
    frames: list[bytes] = field(default_factory=list)
    waiters: list[Waiter] = field(default_factory=list)
    heads: list[tuple[str, ChainHead]] = field(default_factory=list)
    nbytes: int = 0
    urgent: bool = False
    """A waiter awaits durability: commit now (else only lingering records)."""
    first_at: float = 0.0
    """monotonic() when the first record was queued (the linger starts there)."""
    timed: bool = False
    """A timer of the event loop that queued the first record looks at the linger's end
    (the writer thread looks too, later: a backstop for a loop that stopped)."""
    state: bool = False
    """The carried state (``carry_state``) changed: write it with this commit."""
    timer: asyncio.TimerHandle | None = None
    """That timer (``timed``), cancelled when its loop's thread takes the batch first."""
    timer_thread: int = 0
    """``threading.get_ident()`` of the thread running that timer's loop."""


def resolve(waiters: list[Waiter], error: AuditError | None) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for w in waiters:
        if w.future is None:
            if error is not None and w.on_error is not None:
                w.on_error(error)
            continue
        if w.loop is None:
            cf = w.future
            assert isinstance(cf, concurrent.futures.Future)
            if error is None:
                cf.set_result(None)
            else:
                cf.set_exception(error)
        else:
            af = w.future
            assert isinstance(af, asyncio.Future)
            by_loop.setdefault(w.loop, []).append(af)
    running = asyncio._get_running_loop()
    for loop, futures in by_loop.items():
        if loop is running:
            _settle(futures, error)  # committed on the loop's own thread: no wake-up
            continue
        # One wake-up per loop per commit, not one per record.
        with contextlib.suppress(RuntimeError):  # loop already closed: nobody waits
            loop.call_soon_threadsafe(_settle, futures, error)


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for fut in futures:
        if fut.done():
            continue
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(error)
