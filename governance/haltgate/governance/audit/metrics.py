"""Prometheus metrics of the audit trail, declared in one place.

Every metric takes the registry it is given, so tests and several sinks in one process use
their own. Labels are bounded (reason codes, never record or agent ids).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["AuditMetrics"]

_FSYNC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


class AuditMetrics:
    """Spool and shipper metrics (``haltgate_audit_*``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.registry = reg
        self.records_spooled = Counter(
            "haltgate_audit_records_spooled_total",
            "Records made durable in the local spool.",
            registry=reg,
        )
        self.records_dropped = Counter(
            "haltgate_audit_records_dropped_total",
            "Records NOT kept, by reason (spool_full with onSpoolFull=continue). Alert on > 0.",
            ["reason"],
            registry=reg,
        )
        self.refusals = Counter(
            "haltgate_audit_refusals_total",
            "Appends refused with an error the sidecar turns into a refused call, by code.",
            ["code"],
            registry=reg,
        )
        self.fsync_seconds = Histogram(
            "haltgate_audit_fsync_seconds",
            "Duration of one group commit (write + fdatasync).",
            buckets=_FSYNC_BUCKETS,
            registry=reg,
        )
        self.group_size = Histogram(
            "haltgate_audit_group_commit_records",
            "Records made durable by one fdatasync.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024),
            registry=reg,
        )
        self.spool_bytes = Gauge(
            "haltgate_audit_spool_bytes",
            "Bytes in the local spool (shipped segments are removed).",
            registry=reg,
        )
        self.torn_frames = Counter(
            "haltgate_audit_spool_torn_frames_total",
            "Segments found with a torn or corrupt tail at recovery (tail moved aside).",
            registry=reg,
        )
        self.records_shipped = Counter(
            "haltgate_audit_records_shipped_total",
            "Records committed to PostgreSQL by the shipper (re-shipped duplicates included).",
            registry=reg,
        )
        self.ship_errors = Counter(
            "haltgate_audit_ship_errors_total",
            "Failed shipping attempts (PostgreSQL unreachable or refusing), retried.",
            registry=reg,
        )
        self.ship_lag_seconds = Gauge(
            "haltgate_audit_ship_lag_seconds",
            "Age of the oldest record not yet shipped (0 when caught up).",
            registry=reg,
        )
        self.ship_backlog_bytes = Gauge(
            "haltgate_audit_ship_backlog_bytes",
            "Spooled bytes not yet shipped.",
            registry=reg,
        )
