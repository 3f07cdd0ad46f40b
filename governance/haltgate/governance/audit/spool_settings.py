"""The audit spool's settings (size limits, full-spool policy, commit timing), validated."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from haltgate.governance.audit.spool import MAX_FRAME

__all__ = ["SpoolSettings"]


@dataclass(frozen=True, slots=True)
class SpoolSettings:
    """How the spool behaves. Validated at construction."""

    directory: Path
    """Spool directory on a volume that survives container restarts."""
    max_bytes: int = 256 * 1024 * 1024
    """Upper bound of all segments together (bytes). Past it, ``on_full`` applies."""
    segment_bytes: int = 16 * 1024 * 1024
    """A segment is closed and a new one started past this size (bytes)."""
    on_full: Literal["block", "continue"] = "block"
    """``block``: raise SpoolFullError (the sidecar refuses the call). ``continue``: drop the
    record, count it in ``haltgate_audit_records_dropped_total`` and log an error."""
    fsync: bool = True
    """fdatasync every commit. Off only in benchmarks of the rest of the path."""
    lock_wait_seconds: float = 5.0
    """How long a starting writer waits for ``writer.lock`` (a shipper settling an orphaned
    spool holds it briefly) before it reports another writer (seconds)."""
    max_payload_bytes: int = 1024 * 1024
    """Largest ``payload`` kept in a record (bytes of its JSON); a larger one is replaced
    by a truncation marker (size, SHA-256, preview; see audit/fit.py) when written."""
    retry_seconds: float = 1.0
    """While the spool cannot write (failed write, full volume), how often the writer
    tries to recover (seconds)."""
    min_free_bytes: int = 256 * 1024
    """Free bytes the volume must have for the spool to be healthy: below it ``/readyz``
    says ``disk_full`` and a failed spool does not resume yet."""
    linger_seconds: float = 0.02
    """Longest a record queued with ``submit_nowait`` (an outcome: nobody waits for it)
    waits for a commit (seconds). It goes with the next awaited record's commit (an
    intent) if one comes sooner: one write and one fdatasync per call, not two."""
    lazy_sync_seconds: float = 1.0
    """Records nobody waits for that no awaited record took along within
    ``linger_seconds`` (sparse traffic) are written then, so a killed process loses none
    of them, and synced with the next awaited record's commit, or after this long at the
    latest (seconds): one fdatasync per call instead of two. Until that sync a power loss
    (not a killed process) can lose them; the shipper never ships them before it. 0 syncs
    them when written."""
    inline_max_seconds: float = 0.01
    """``commit_now`` (a lone record committed on the caller's thread, no hand-off to the
    writer thread) is used while commits take at most this long on average (seconds);
    slower, every commit goes to the writer thread so a slow volume never holds the
    caller's event loop for long. 0 turns commits on the caller's thread off."""
    before_write: Callable[[], None] | None = None
    """Fault injection for tests, never set in production: called on the committing
    thread before each batch of records is written. It may block (hold the commit) or
    raise ``OSError`` (the write fails: the batch is refused, the spool heals)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "directory", Path(self.directory))
        if not 0 <= self.lazy_sync_seconds <= 60:
            raise ValueError("spool lazy_sync_seconds must be in [0, 60]")
        if not 0 <= self.inline_max_seconds <= 1:
            raise ValueError("spool inline_max_seconds must be in [0, 1]")
        if not 0 < self.linger_seconds <= 1:
            raise ValueError("spool linger_seconds must be in (0, 1]")
        if self.segment_bytes < 4096:
            raise ValueError("spool segment_bytes must be at least 4096")
        if self.max_bytes < 2 * self.segment_bytes:
            raise ValueError("spool max_bytes must be at least twice segment_bytes")
        if self.on_full not in ("block", "continue"):
            raise ValueError("spool on_full must be 'block' or 'continue'")
        if not 1024 <= self.max_payload_bytes <= MAX_FRAME // 2:
            raise ValueError(f"spool max_payload_bytes must be in [1024, {MAX_FRAME // 2}]")
