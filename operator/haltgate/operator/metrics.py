"""Prometheus metrics of the operator, in one place, with an injectable registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass(frozen=True, slots=True)
class OperatorMetrics:
    admission: Counter
    admission_seconds: Histogram
    halt_deliveries: Counter
    reconciles: Counter
    registry: CollectorRegistry

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> OperatorMetrics:
        reg = registry if registry is not None else CollectorRegistry()
        return cls(
            admission=Counter(
                "haltgate_operator_admission_total",
                "Admission reviews answered, by webhook and outcome "
                "(injected, skipped, refused, valid, invalid, error).",
                ["webhook", "outcome"],
                registry=reg,
            ),
            admission_seconds=Histogram(
                "haltgate_operator_admission_duration_seconds",
                "Time to answer one admission review inside the operator.",
                ["webhook"],
                registry=reg,
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1, 2.5, 10),
            ),
            halt_deliveries=Counter(
                "haltgate_operator_halt_deliveries_total",
                "Calls to sidecar admin APIs, by action (halt, lift) and result (ok, failed).",
                ["action", "result"],
                registry=reg,
            ),
            reconciles=Counter(
                "haltgate_operator_reconciles_total",
                "GovernancePolicy/BudgetPool reconciliations, by kind and result "
                "(ready, invalid, error).",
                ["kind", "result"],
                registry=reg,
            ),
            registry=reg,
        )
