"""The agent dashboard: one workload in detail (budgets, calls, latency, tools, drift)."""

from __future__ import annotations

from typing import Any

from dashboard_build import RI, SEL, Layout, dashboard, panel, target


def agent() -> dict[str, Any]:
    """One agent: budgets over time, halts with reasons, calls, cost."""
    L = Layout()
    p = [
        panel(
            L,
            "stat",
            "Halted",
            [target(f"max(haltgate_halted{{{SEL}}})")],
            w=6,
            h=4,
            extra={
                "fieldConfig": {
                    "defaults": {
                        "unit": "short",
                        "mappings": [
                            {
                                "type": "value",
                                "options": {
                                    "0": {"text": "running", "color": "green"},
                                    "1": {"text": "HALTED", "color": "red"},
                                },
                            }
                        ],
                    },
                    "overrides": [],
                }
            },
        ),
        panel(
            L,
            "stat",
            "Spend in range",
            [target(f"sum(increase(haltgate_cost_usd_total{{{SEL}}}[$__range]))")],
            unit="currencyUSD",
            w=6,
            h=4,
        ),
        panel(
            L,
            "stat",
            "Calls in range",
            [target(f"sum(increase(haltgate_requests_total{{{SEL}}}[$__range]))")],
            w=6,
            h=4,
        ),
        panel(
            L,
            "stat",
            "Policy reload ok",
            [target(f"min(haltgate_policy_last_reload_ok{{{SEL}}})")],
            w=6,
            h=4,
        ),
        panel(
            L,
            "timeseries",
            "Budget used by dimension",
            [target(f"max by (dimension) (haltgate_budget_used_ratio{{{SEL}}})", "{{dimension}}")],
            unit="percentunit",
            w=24,
            extra={
                "fieldConfig": {
                    "defaults": {
                        "unit": "percentunit",
                        "max": 1,
                        "min": 0,
                        "custom": {"drawStyle": "line", "lineWidth": 2, "fillOpacity": 0},
                    },
                    "overrides": [],
                }
            },
        ),
        panel(
            L,
            "table",
            "Halts with reasons (in range)",
            [
                target(
                    "sum by (failure, code) "
                    f"(increase(haltgate_halts_total{{{SEL}}}[$__range])) > 0",
                    instant=True,
                )
            ],
        ),
        panel(
            L,
            "table",
            "Current halt",
            [target(f"max by (failure, code) (haltgate_halted{{{SEL}}}) == 1", instant=True)],
        ),
        panel(
            L,
            "timeseries",
            "Calls by kind and decision",
            [
                target(
                    f"sum by (kind, decision) (rate(haltgate_requests_total{{{SEL}}}[{RI}]))",
                    "{{kind}} {{decision}}",
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
                    f'sum by (code) (increase(haltgate_requests_total{{{SEL}, decision!="allow"}}[{RI}]))',  # noqa: E501
                    "{{code}}",
                )
            ],
        ),
        panel(
            L,
            "timeseries",
            "Cost over time by model (USD per interval)",
            [
                target(
                    f"sum by (model) (increase(haltgate_cost_usd_total{{{SEL}}}[{RI}]))",
                    "{{model}}",
                )
            ],
            unit="currencyUSD",
        ),
        panel(
            L,
            "bargauge",
            "Cost by model in range",
            [
                target(
                    f"sort_desc(sum by (model) (increase(haltgate_cost_usd_total{{{SEL}}}[$__range])))",  # noqa: E501
                    "{{model}}",
                    instant=True,
                )
            ],
            unit="currencyUSD",
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
            "timeseries",
            "Added latency p99 by kind",
            [
                target(
                    "histogram_quantile(0.99, sum by (le, kind) "
                    f"(rate(haltgate_added_latency_seconds_bucket{{{SEL}}}[{RI}])))",
                    "{{kind}}",
                )
            ],
            unit="s",
        ),
    ]
    p += [
        panel(
            L,
            "timeseries",
            "Behaviour drift score by dimension",
            [
                target(f"max by (dimension) (haltgate_drift_score{{{SEL}}})", "{{dimension}}"),
                target(
                    f"min by (dimension) (haltgate_drift_threshold{{{SEL}}})",
                    "threshold {{dimension}}",
                ),
            ],
            w=16,
            description="Shift of the last window from the agent's baseline, in per-call "
            "standard deviations (spec.drift; docs/policies.md#drift).",
        ),
        panel(
            L,
            "table",
            "Dimensions in sustained drift",
            [
                target(
                    f"max by (dimension) (haltgate_drift_sustained{{{SEL}}}) == 1",
                    instant=True,
                )
            ],
            w=8,
        ),
    ]
    return dashboard(
        "haltgate-agent",
        "haltgate / Agent",
        "One agent: budgets over time, halts with reasons, calls and cost. "
        "Per-tool history is in the audit trail (haltgate audit query).",
        p,
        single_workload=True,
    )
