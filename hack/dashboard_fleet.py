"""The fleet dashboard: every governed agent at a glance (spend, refusals, halts, drift)."""

from __future__ import annotations

from typing import Any

from dashboard_build import RI, SEL, Layout, dashboard, panel, target


def fleet() -> dict[str, Any]:
    """Fleet overview: spend, halts, denials, overhead."""
    L = Layout()
    p = [
        panel(
            L,
            "stat",
            "Spend in range",
            [target(f"sum(increase(haltgate_cost_usd_total{{{SEL}}}[$__range]))")],
            unit="currencyUSD",
            w=4,
            h=4,
        ),
        panel(
            L,
            "stat",
            "Governed calls in range",
            [target(f"sum(increase(haltgate_requests_total{{{SEL}}}[$__range]))")],
            w=4,
            h=4,
        ),
        panel(
            L,
            "stat",
            "Halts in range",
            [target(f"sum(increase(haltgate_halts_total{{{SEL}}}[$__range]))")],
            w=4,
            h=4,
        ),
        panel(L, "stat", "Agents halted now", [target(f"sum(haltgate_halted{{{SEL}}})")], w=4, h=4),
        panel(
            L,
            "stat",
            "Refused share",
            [
                target(
                    f'sum(rate(haltgate_requests_total{{{SEL}, decision!="allow"}}[{RI}]))'
                    f" / sum(rate(haltgate_requests_total{{{SEL}}}[{RI}]))"
                )
            ],
            unit="percentunit",
            w=4,
            h=4,
        ),
        panel(
            L,
            "stat",
            "Added latency p99",
            [
                target(
                    "histogram_quantile(0.99, sum by (le) "
                    f"(rate(haltgate_added_latency_seconds_bucket{{{SEL}}}[{RI}])))"
                )
            ],
            unit="s",
            w=4,
            h=4,
        ),
        panel(
            L,
            "timeseries",
            "Spend rate by agent (USD/hour)",
            [
                target(
                    f"3600 * sum by (namespace, workload) (rate(haltgate_cost_usd_total{{{SEL}}}[{RI}]))",  # noqa: E501
                    "{{namespace}}/{{workload}}",
                )
            ],
            unit="currencyUSD",
        ),
        panel(
            L,
            "bargauge",
            "Cost per agent in range (Prometheus; exact: haltgate audit cost)",
            [
                target(
                    "sort_desc(sum by (namespace, workload) "
                    f"(increase(haltgate_cost_usd_total{{{SEL}}}[$__range])))",
                    "{{namespace}}/{{workload}}",
                    instant=True,
                )
            ],
            unit="currencyUSD",
            description="Rates from Prometheus (approximate at range edges). The exact "
            "figure per agent comes from PostgreSQL: haltgate audit cost.",
        ),
        panel(
            L,
            "timeseries",
            "Calls by decision",
            [
                target(
                    f"sum by (decision) (rate(haltgate_requests_total{{{SEL}}}[{RI}]))",
                    "{{decision}}",
                )
            ],
            unit="reqps",
        ),
        panel(
            L,
            "timeseries",
            "Refusals by reason",
            [
                target(
                    f'sum by (code) (rate(haltgate_requests_total{{{SEL}, decision!="allow"}}[{RI}]))',  # noqa: E501
                    "{{code}}",
                )
            ],
            unit="reqps",
        ),
        panel(
            L,
            "timeseries",
            "Halts by failure type and reason",
            [
                target(
                    f"sum by (failure, code) (increase(haltgate_halts_total{{{SEL}}}[{RI}]))",
                    "{{failure}} {{code}}",
                )
            ],
        ),
        panel(
            L,
            "timeseries",
            "Added latency (sidecar's own time)",
            [
                target(
                    "histogram_quantile(0.5, sum by (le) "
                    f"(rate(haltgate_added_latency_seconds_bucket{{{SEL}}}[{RI}])))",
                    "p50",
                ),
                target(
                    "histogram_quantile(0.99, sum by (le) "
                    f"(rate(haltgate_added_latency_seconds_bucket{{{SEL}}}[{RI}])))",
                    "p99",
                ),
            ],
            unit="s",
        ),
        panel(
            L,
            "timeseries",
            "Tokens by model",
            [
                target(
                    f"sum by (model, type) (rate(haltgate_tokens_total{{{SEL}}}[{RI}]))",
                    "{{model}} {{type}}",
                )
            ],
            unit="short",
        ),
        panel(
            L,
            "timeseries",
            "Upstream latency p90 by kind",
            [
                target(
                    "histogram_quantile(0.9, sum by (le, kind) "
                    f"(rate(haltgate_upstream_latency_seconds_bucket{{{SEL}}}[{RI}])))",
                    "{{kind}}",
                )
            ],
            unit="s",
        ),
        panel(
            L,
            "table",
            "Agents in sustained behaviour drift",
            [
                target(
                    "max by (namespace, workload, dimension) "
                    f"(haltgate_drift_sustained{{{SEL}}}) == 1",
                    instant=True,
                )
            ],
            w=24,
            h=6,
            description="Agents whose behaviour moved from their own baseline (spec.drift; "
            "docs/drift.md). Several in one dimension: look for a shared cause.",
        ),
    ]
    return dashboard(
        "haltgate-fleet",
        "haltgate / Fleet overview",
        "Spend, halts, refusals and overhead of every governed agent.",
        p,
    )
