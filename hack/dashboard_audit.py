"""The audit pipeline dashboard: spool depth, shipping throughput and lag, dropped records."""

from __future__ import annotations

from typing import Any

from dashboard_build import RI, SEL, Layout, dashboard, panel, target


def audit() -> dict[str, Any]:
    """Audit pipeline health: spool, shipping, lag."""
    L = Layout()
    p = [
        panel(
            L,
            "stat",
            "Shipping lag",
            [target("max(haltgate_audit_ship_lag_seconds)")],
            unit="s",
            w=6,
            h=4,
        ),
        panel(
            L,
            "stat",
            "Fullest spool",
            [
                target(
                    f"max(haltgate_audit_spool_bytes{{{SEL}}}"
                    f" / haltgate_audit_spool_limit_bytes{{{SEL}}})"
                )
            ],
            unit="percentunit",
            w=6,
            h=4,
        ),
        panel(
            L,
            "stat",
            "Records dropped in range",
            [
                target(
                    f"sum(increase(haltgate_audit_records_dropped_total{{{SEL}}}[$__range])) "
                    "or vector(0)"
                )
            ],
            w=6,
            h=4,
        ),
        panel(
            L,
            "stat",
            "Ship errors in range",
            [target("sum(increase(haltgate_audit_ship_errors_total[$__range]))")],
            w=6,
            h=4,
        ),
        panel(
            L,
            "timeseries",
            "Records spooled and shipped",
            [
                target(
                    f"sum(rate(haltgate_audit_records_spooled_total{{{SEL}}}[{RI}]))", "spooled"
                ),
                target(f"sum(rate(haltgate_audit_records_shipped_total[{RI}]))", "shipped"),
            ],
            unit="ops",
        ),
        panel(
            L,
            "timeseries",
            "Shipping lag (oldest unshipped record)",
            [
                target("max(haltgate_audit_ship_lag_seconds)", "lag (s)"),
            ],
            unit="s",
        ),
        panel(
            L,
            "timeseries",
            "Spool fill by agent",
            [
                target(
                    f"max by (namespace, workload) (haltgate_audit_spool_bytes{{{SEL}}} "
                    f"/ haltgate_audit_spool_limit_bytes{{{SEL}}})",
                    "{{namespace}}/{{workload}}",
                )
            ],
            unit="percentunit",
        ),
        panel(
            L,
            "timeseries",
            "Unshipped backlog",
            [target("sum(haltgate_audit_ship_backlog_bytes)", "backlog")],
            unit="bytes",
        ),
        panel(
            L,
            "timeseries",
            "Group commit (fsync) p99",
            [
                target(
                    "histogram_quantile(0.99, sum by (le) "
                    f"(rate(haltgate_audit_fsync_seconds_bucket{{{SEL}}}[{RI}])))",
                    "p99",
                )
            ],
            unit="s",
        ),
        panel(
            L,
            "timeseries",
            "Audit refusals and drops",
            [
                target(
                    f"sum by (code) (increase(haltgate_audit_refusals_total{{{SEL}}}[{RI}]))",
                    "refused {{code}}",
                ),
                target(
                    f"sum by (reason) (increase(haltgate_audit_records_dropped_total{{{SEL}}}"
                    f"[{RI}]))",
                    "dropped {{reason}}",
                ),
            ],
        ),
    ]
    return dashboard(
        "haltgate-audit",
        "haltgate / Audit pipeline",
        "Spool depth, shipping throughput and lag, dropped records.",
        p,
    )
