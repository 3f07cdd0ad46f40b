"""The audit trail: sealed records, a durable local spool, shipping to PostgreSQL, verify,
query, export.

The request pipeline needs only :class:`AuditRecord` and an :class:`AuditSink`
(:class:`SpoolAuditSink` in production, :class:`MemoryAuditSink` in tests).
"""

from haltgate.governance.audit.record import (
    GENESIS_HASH,
    AuditRecord,
    ChainHead,
    canonical_json,
    chain_id_for,
    record_hash,
)
from haltgate.governance.audit.sink import (
    AuditError,
    AuditSink,
    AuditUnavailableError,
    InvalidRecordError,
    MemoryAuditSink,
    SpoolFullError,
)
from haltgate.governance.audit.spool_settings import SpoolSettings
from haltgate.governance.audit.spool_sink import SpoolAuditSink

__all__ = [
    "GENESIS_HASH",
    "AuditError",
    "AuditRecord",
    "AuditSink",
    "AuditUnavailableError",
    "ChainHead",
    "InvalidRecordError",
    "MemoryAuditSink",
    "SpoolAuditSink",
    "SpoolFullError",
    "SpoolSettings",
    "canonical_json",
    "chain_id_for",
    "record_hash",
]
