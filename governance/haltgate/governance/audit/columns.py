"""The columns of ``haltgate.audit_records`` that hold a record field of the same name.

After the key columns (record_id, ts, seq, chain_id), in table order: the shipper writes
them (audit/binary_copy.py) and verification compares them with the record text
(audit/verify.py).
"""

from __future__ import annotations

__all__ = ["FIELD_COLUMNS"]

FIELD_COLUMNS = (
    "prev_hash",
    "hash",
    "decision_id",
    "phase",
    "namespace",
    "workload",
    "pod",
    "run_id",
    "kind",
    "target",
    "model",
    "tool",
    "decision",
    "failure_type",
    "code",
    "cost_usd",
    "latency_ms",
    "status",
)
"""Record fields copied into indexed columns, after the key columns."""
