"""The seam between the request pipeline and the audit trail.

The sidecar calls ``await sink.intent(record)`` before it forwards a call and forwards only
when that returns: the record is then durable. A sink that cannot make a record durable
raises an :class:`AuditError`; the sidecar turns it into a refusal (fail closed).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol, runtime_checkable

from haltgate.governance.audit.record import GENESIS_HASH, AuditRecord, Chainer, ChainHead

__all__ = [
    "AuditError",
    "AuditSink",
    "AuditUnavailableError",
    "InvalidRecordError",
    "MemoryAuditSink",
    "SpoolFullError",
    "StatePersistError",
]


class AuditError(Exception):
    """A record could not be made durable. ``code`` is stable snake_case (JSON error body,
    audit column and metric label)."""

    code = "audit_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SpoolFullError(AuditError):
    """The local spool reached its size limit and the policy says block (the default)."""

    code = "audit_spool_full"


class InvalidRecordError(AuditError):
    """The record cannot be serialised (a value that is not JSON-ready)."""

    code = "audit_record_invalid"


class AuditUnavailableError(AuditError):
    """The spool cannot write (disk error, failed fsync, closed sink)."""

    code = "audit_unavailable"


class StatePersistError(AuditError):
    """The budget state carried by this commit could not be written (the records are
    durable; the calls waiting on them are refused: a reservation not on disk could be
    forgotten by a restart)."""

    code = "state_persist_failed"


@runtime_checkable
class AuditSink(Protocol):
    """Where the pipeline sends records. Chain fields are assigned by the sink."""

    async def intent(self, record: AuditRecord) -> None:
        """Make the intent record durable; return only then (raise ``AuditError`` if not)."""
        ...

    async def outcome(self, record: AuditRecord) -> None:
        """Make the outcome (or connection) record durable."""
        ...

    async def close(self) -> None:
        """Flush and release resources; later calls raise ``AuditUnavailableError``."""
        ...


class MemoryAuditSink:
    """Keeps sealed records in a list: for tests and when no spool is configured.

    Not durable across restarts; chains are sealed exactly as the spool does (the record's
    line, chain and hash made as the spool makes them when it is appended; the sealed
    ``AuditRecord`` itself built only when :attr:`records` is read).
    """

    def __init__(self) -> None:
        self._chainer = Chainer()
        self._records: list[AuditRecord] = []
        self._unbuilt: list[tuple[AuditRecord, str, ChainHead]] = []
        self._prev: dict[str, str] = {}
        self._closed = False

    @property
    def records(self) -> list[AuditRecord]:
        """Sealed records in append order (a copy)."""
        if self._unbuilt:
            prev = self._prev
            for record, chain, head in self._unbuilt:
                self._records.append(
                    replace(
                        record,
                        chain_id=chain,
                        seq=head.seq,
                        prev_hash=prev.get(chain, GENESIS_HASH),
                        hash=head.hash,
                    )
                )
                prev[chain] = head.hash
            self._unbuilt.clear()
        return list(self._records)

    def _append(self, record: AuditRecord) -> None:
        if self._closed:
            raise AuditUnavailableError("audit sink is closed")
        try:
            _, chain, head = self._chainer.seal_line(record)
        except (TypeError, ValueError) as e:
            raise InvalidRecordError(f"audit record is not JSON-serialisable: {e}") from e
        self._unbuilt.append((record, chain, head))

    async def intent(self, record: AuditRecord) -> None:
        """Seal and keep ``record``."""
        self._append(record)

    async def outcome(self, record: AuditRecord) -> None:
        """Seal and keep ``record``."""
        self._append(record)

    async def close(self) -> None:
        """Refuse further records."""
        self._closed = True
