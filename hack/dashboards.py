"""Generate the Grafana dashboards of the chart (charts/haltgate/dashboards/*.json).

    .venv/bin/python hack/dashboards.py            # write the JSON files
    .venv/bin/python hack/dashboards.py --check    # exit 1 if a file is out of date

The JSON files are what the chart ships (ConfigMaps labelled ``grafana_dashboard``); this
script keeps the four dashboards consistent (same variables, same selector, same layout
rules). Every dashboard is templated by ``datasource``, ``namespace`` and ``workload``.
Every expression is checked against a real Prometheus by tests/observability.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "charts" / "haltgate" / "dashboards"

SEL = 'namespace=~"$namespace", workload=~"$workload"'
"""The selector every sidecar query uses (identity labels of the sidecar's samples)."""
DS = {"type": "prometheus", "uid": "${datasource}"}
RI = "$__rate_interval"


def _templating(single_workload: bool = False) -> dict[str, Any]:
    def var(name: str, query: str, multi: bool) -> dict[str, Any]:
        return {
            "name": name,
            "label": name.capitalize(),
            "type": "query",
            "datasource": DS,
            "query": {"query": query, "refId": f"{name}-var"},
            "definition": query,
            "refresh": 2,
            "sort": 1,
            "multi": multi,
            "includeAll": multi,
            "allValue": ".*" if multi else None,
            "current": {"selected": True, "text": "All", "value": "$__all"} if multi else {},
        }

    return {
        "list": [
            {
                "name": "datasource",
                "label": "Data source",
                "type": "datasource",
                "query": "prometheus",
                "current": {},
                "hide": 0,
            },
            var("namespace", "label_values(haltgate_requests_total, namespace)", True),
            var(
                "workload",
                'label_values(haltgate_requests_total{namespace=~"$namespace"}, workload)',
                not single_workload,
            ),
        ]
    }


class _Layout:
    """Places panels left to right on Grafana's 24-column grid."""

    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.row_h = 0
        self.next_id = 1

    def place(self, w: int, h: int) -> dict[str, int]:
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        pos = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos


def _target(
    expr: str, legend: str = "", *, instant: bool = False, ref: str = "A"
) -> dict[str, Any]:
    t: dict[str, Any] = {
        "refId": ref,
        "datasource": DS,
        "expr": expr,
        "legendFormat": legend or "__auto",
    }
    if instant:
        t.update({"instant": True, "range": False, "format": "table"})
    else:
        t.update({"instant": False, "range": True})
    return t


def _panel(
    layout: _Layout,
    kind: str,
    title: str,
    targets: list[dict[str, Any]],
    *,
    unit: str = "short",
    w: int = 12,
    h: int = 8,
    description: str = "",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    for i, t in enumerate(targets):
        t["refId"] = chr(ord("A") + i)
    panel: dict[str, Any] = {
        "id": layout.next_id,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": layout.place(w, h),
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
    }
    layout.next_id += 1
    if kind == "timeseries":
        panel["fieldConfig"]["defaults"]["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
        }
        panel["options"] = {
            "legend": {"displayMode": "list", "placement": "bottom"},
            "tooltip": {"mode": "multi"},
        }
    elif kind == "stat":
        panel["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"]},
            "colorMode": "value",
            "graphMode": "none",
        }
    if extra:
        panel.update(extra)
    return panel


def _dashboard(
    uid: str,
    title: str,
    description: str,
    panels: list[dict[str, Any]],
    *,
    single_workload: bool = False,
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["haltgate"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "timezone": "",
        "graphTooltip": 1,
        "templating": _templating(single_workload),
        "annotations": {"list": []},
        "links": [
            {
                "title": "haltgate dashboards",
                "type": "dashboards",
                "tags": ["haltgate"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "panels": panels,
    }


def fleet() -> dict[str, Any]:
    """Fleet overview: spend, halts, denials, overhead."""
    L = _Layout()
    p = [
        _panel(
            L,
            "stat",
            "Spend in range",
            [_target(f"sum(increase(haltgate_cost_usd_total{{{SEL}}}[$__range]))")],
            unit="currencyUSD",
            w=4,
            h=4,
        ),
        _panel(
            L,
            "stat",
            "Governed calls in range",
            [_target(f"sum(increase(haltgate_requests_total{{{SEL}}}[$__range]))")],
            w=4,
            h=4,
        ),
        _panel(
            L,
            "stat",
            "Halts in range",
            [_target(f"sum(increase(haltgate_halts_total{{{SEL}}}[$__range]))")],
            w=4,
            h=4,
        ),
        _panel(
            L, "stat", "Agents halted now", [_target(f"sum(haltgate_halted{{{SEL}}})")], w=4, h=4
        ),
        _panel(
            L,
            "stat",
            "Refused share",
            [
                _target(
                    f'sum(rate(haltgate_requests_total{{{SEL}, decision!="allow"}}[{RI}]))'
                    f" / sum(rate(haltgate_requests_total{{{SEL}}}[{RI}]))"
                )
            ],
            unit="percentunit",
            w=4,
            h=4,
        ),
        _panel(
            L,
            "stat",
            "Added latency p99",
            [
                _target(
                    "histogram_quantile(0.99, sum by (le) "
                    f"(rate(haltgate_added_latency_seconds_bucket{{{SEL}}}[{RI}])))"
                )
            ],
            unit="s",
            w=4,
            h=4,
        ),
        _panel(
            L,
            "timeseries",
            "Spend rate by agent (USD/hour)",
            [
                _target(
                    f"3600 * sum by (namespace, workload) (rate(haltgate_cost_usd_total{{{SEL}}}[{RI}]))",  # noqa: E501
                    "{{namespace}}/{{workload}}",
                )
            ],
            unit="currencyUSD",
        ),
        _panel(
            L,
            "bargauge",
            "Cost per agent in range (Prometheus; exact: haltgate audit cost)",
            [
                _target(
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
        _panel(
            L,
            "timeseries",
            "Calls by decision",
            [
                _target(
                    f"sum by (decision) (rate(haltgate_requests_total{{{SEL}}}[{RI}]))",
                    "{{decision}}",
                )
            ],
            unit="reqps",
        ),
        _panel(
            L,
            "timeseries",
            "Refusals by reason",
            [
                _target(
                    f'sum by (code) (rate(haltgate_requests_total{{{SEL}, decision!="allow"}}[{RI}]))',  # noqa: E501
                    "{{code}}",
                )
            ],
            unit="reqps",
        ),
        _panel(
            L,
            "timeseries",
            "Halts by failure type and reason",
            [
                _target(
                    f"sum by (failure, code) (increase(haltgate_halts_total{{{SEL}}}[{RI}]))",
                    "{{failure}} {{code}}",
                )
            ],
        ),
        _panel(
            L,
            "timeseries",
            "Added latency (sidecar's own time)",
            [
                _target(
                    "histogram_quantile(0.5, sum by (le) "
                    f"(rate(haltgate_added_latency_seconds_bucket{{{SEL}}}[{RI}])))",
                    "p50",
                ),
                _target(
                    "histogram_quantile(0.99, sum by (le) "
                    f"(rate(haltgate_added_latency_seconds_bucket{{{SEL}}}[{RI}])))",
                    "p99",
                ),
            ],
            unit="s",
        ),
        _panel(
            L,
            "timeseries",
            "Tokens by model",
            [
                _target(
                    f"sum by (model, type) (rate(haltgate_tokens_total{{{SEL}}}[{RI}]))",
                    "{{model}} {{type}}",
                )
            ],
            unit="short",
        ),
        _panel(
            L,
            "timeseries",
            "Upstream latency p90 by kind",
            [
                _target(
                    "histogram_quantile(0.9, sum by (le, kind) "
                    f"(rate(haltgate_upstream_latency_seconds_bucket{{{SEL}}}[{RI}])))",
                    "{{kind}}",
                )
            ],
            unit="s",
        ),
        _panel(
            L,
            "table",
            "Agents in sustained behaviour drift",
            [
                _target(
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
    return _dashboard(
        "haltgate-fleet",
        "haltgate / Fleet overview",
        "Spend, halts, refusals and overhead of every governed agent.",
        p,
    )


def agent() -> dict[str, Any]:
    """One agent: budgets over time, halts with reasons, calls, cost."""
    L = _Layout()
    p = [
        _panel(
            L,
            "stat",
            "Halted",
            [_target(f"max(haltgate_halted{{{SEL}}})")],
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
        _panel(
            L,
            "stat",
            "Spend in range",
            [_target(f"sum(increase(haltgate_cost_usd_total{{{SEL}}}[$__range]))")],
            unit="currencyUSD",
            w=6,
            h=4,
        ),
        _panel(
            L,
            "stat",
            "Calls in range",
            [_target(f"sum(increase(haltgate_requests_total{{{SEL}}}[$__range]))")],
            w=6,
            h=4,
        ),
        _panel(
            L,
            "stat",
            "Policy reload ok",
            [_target(f"min(haltgate_policy_last_reload_ok{{{SEL}}})")],
            w=6,
            h=4,
        ),
        _panel(
            L,
            "timeseries",
            "Budget used by dimension",
            [_target(f"max by (dimension) (haltgate_budget_used_ratio{{{SEL}}})", "{{dimension}}")],
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
        _panel(
            L,
            "table",
            "Halts with reasons (in range)",
            [
                _target(
                    "sum by (failure, code) "
                    f"(increase(haltgate_halts_total{{{SEL}}}[$__range])) > 0",
                    instant=True,
                )
            ],
        ),
        _panel(
            L,
            "table",
            "Current halt",
            [_target(f"max by (failure, code) (haltgate_halted{{{SEL}}}) == 1", instant=True)],
        ),
        _panel(
            L,
            "timeseries",
            "Calls by kind and decision",
            [
                _target(
                    f"sum by (kind, decision) (rate(haltgate_requests_total{{{SEL}}}[{RI}]))",
                    "{{kind}} {{decision}}",
                )
            ],
            unit="reqps",
        ),
        _panel(
            L,
            "timeseries",
            "Refusals by reason",
            [
                _target(
                    f'sum by (code) (increase(haltgate_requests_total{{{SEL}, decision!="allow"}}[{RI}]))',  # noqa: E501
                    "{{code}}",
                )
            ],
        ),
        _panel(
            L,
            "timeseries",
            "Cost over time by model (USD per interval)",
            [
                _target(
                    f"sum by (model) (increase(haltgate_cost_usd_total{{{SEL}}}[{RI}]))",
                    "{{model}}",
                )
            ],
            unit="currencyUSD",
        ),
        _panel(
            L,
            "bargauge",
            "Cost by model in range",
            [
                _target(
                    f"sort_desc(sum by (model) (increase(haltgate_cost_usd_total{{{SEL}}}[$__range])))",  # noqa: E501
                    "{{model}}",
                    instant=True,
                )
            ],
            unit="currencyUSD",
        ),
        _panel(
            L,
            "timeseries",
            "Upstream latency p90 by kind",
            [
                _target(
                    "histogram_quantile(0.9, sum by (le, kind) "
                    f"(rate(haltgate_upstream_latency_seconds_bucket{{{SEL}}}[{RI}])))",
                    "{{kind}}",
                )
            ],
            unit="s",
        ),
        _panel(
            L,
            "timeseries",
            "Added latency p99 by kind",
            [
                _target(
                    "histogram_quantile(0.99, sum by (le, kind) "
                    f"(rate(haltgate_added_latency_seconds_bucket{{{SEL}}}[{RI}])))",
                    "{{kind}}",
                )
            ],
            unit="s",
        ),
    ]
    p += [
        _panel(
            L,
            "timeseries",
            "Behaviour drift score by dimension",
            [
                _target(f"max by (dimension) (haltgate_drift_score{{{SEL}}})", "{{dimension}}"),
                _target(
                    f"min by (dimension) (haltgate_drift_threshold{{{SEL}}})",
                    "threshold {{dimension}}",
                ),
            ],
            w=16,
            description="Shift of the last window from the agent's baseline, in per-call "
            "standard deviations (spec.drift; docs/policies.md#drift).",
        ),
        _panel(
            L,
            "table",
            "Dimensions in sustained drift",
            [
                _target(
                    f"max by (dimension) (haltgate_drift_sustained{{{SEL}}}) == 1",
                    instant=True,
                )
            ],
            w=8,
        ),
    ]
    return _dashboard(
        "haltgate-agent",
        "haltgate / Agent",
        "One agent: budgets over time, halts with reasons, calls and cost. "
        "Per-tool history is in the audit trail (haltgate audit query).",
        p,
        single_workload=True,
    )


def guardrails() -> dict[str, Any]:
    """Guardrails, OPA decisions and fail-open events."""
    L = _Layout()
    p = [
        _panel(
            L,
            "timeseries",
            "Guardrail findings by detector and action",
            [
                _target(
                    f"sum by (detector, action) (rate(haltgate_guardrail_findings_total{{{SEL}}}[{RI}]))",  # noqa: E501
                    "{{detector}} {{action}}",
                )
            ],
            unit="short",
        ),
        _panel(
            L,
            "bargauge",
            "Findings in range by detector",
            [
                _target(
                    "sort_desc(sum by (detector) "
                    f"(increase(haltgate_guardrail_findings_total{{{SEL}}}[$__range])))",
                    "{{detector}}",
                    instant=True,
                )
            ],
        ),
        _panel(
            L,
            "timeseries",
            "Calls blocked by guardrails",
            [
                _target(
                    f'sum by (code) (rate(haltgate_requests_total{{{SEL}, code=~"guardrail.*"}}[{RI}]))',  # noqa: E501
                    "{{code}}",
                )
            ],
            unit="reqps",
        ),
        _panel(
            L,
            "timeseries",
            "OPA decisions by result",
            [
                _target(
                    f"sum by (result) (rate(haltgate_opa_decisions_total{{{SEL}}}[{RI}]))",
                    "{{result}}",
                )
            ],
            unit="reqps",
        ),
        _panel(
            L,
            "stat",
            "Fail-open events in range",
            [_target(f"sum(increase(haltgate_fail_open_total{{{SEL}}}[$__range])) or vector(0)")],
            w=8,
            h=6,
        ),
        _panel(
            L,
            "timeseries",
            "Fail-open events by control",
            [
                _target(
                    f"sum by (control) (increase(haltgate_fail_open_total{{{SEL}}}[{RI}]))",
                    "{{control}}",
                )
            ],
            w=16,
            h=6,
        ),
        _panel(
            L,
            "timeseries",
            "Streams cut by reason",
            [
                _target(
                    f"sum by (reason) (increase(haltgate_streams_cut_total{{{SEL}}}[{RI}]))",
                    "{{reason}}",
                )
            ],
        ),
        _panel(
            L,
            "timeseries",
            "Transparent connections by outcome",
            [
                _target(
                    f"sum by (outcome) (rate(haltgate_transparent_connections_total{{{SEL}}}[{RI}]))",  # noqa: E501
                    "{{outcome}}",
                )
            ],
            unit="cps",
        ),
    ]
    return _dashboard(
        "haltgate-guardrails",
        "haltgate / Guardrails and policy",
        "Guardrail findings, OPA decisions, fail-open events.",
        p,
    )


def audit() -> dict[str, Any]:
    """Audit pipeline health: spool, shipping, lag."""
    L = _Layout()
    p = [
        _panel(
            L,
            "stat",
            "Shipping lag",
            [_target("max(haltgate_audit_ship_lag_seconds)")],
            unit="s",
            w=6,
            h=4,
        ),
        _panel(
            L,
            "stat",
            "Fullest spool",
            [
                _target(
                    f"max(haltgate_audit_spool_bytes{{{SEL}}}"
                    f" / haltgate_audit_spool_limit_bytes{{{SEL}}})"
                )
            ],
            unit="percentunit",
            w=6,
            h=4,
        ),
        _panel(
            L,
            "stat",
            "Records dropped in range",
            [
                _target(
                    f"sum(increase(haltgate_audit_records_dropped_total{{{SEL}}}[$__range])) "
                    "or vector(0)"
                )
            ],
            w=6,
            h=4,
        ),
        _panel(
            L,
            "stat",
            "Ship errors in range",
            [_target("sum(increase(haltgate_audit_ship_errors_total[$__range]))")],
            w=6,
            h=4,
        ),
        _panel(
            L,
            "timeseries",
            "Records spooled and shipped",
            [
                _target(
                    f"sum(rate(haltgate_audit_records_spooled_total{{{SEL}}}[{RI}]))", "spooled"
                ),
                _target(f"sum(rate(haltgate_audit_records_shipped_total[{RI}]))", "shipped"),
            ],
            unit="ops",
        ),
        _panel(
            L,
            "timeseries",
            "Shipping lag (oldest unshipped record)",
            [
                _target("max(haltgate_audit_ship_lag_seconds)", "lag (s)"),
            ],
            unit="s",
        ),
        _panel(
            L,
            "timeseries",
            "Spool fill by agent",
            [
                _target(
                    f"max by (namespace, workload) (haltgate_audit_spool_bytes{{{SEL}}} "
                    f"/ haltgate_audit_spool_limit_bytes{{{SEL}}})",
                    "{{namespace}}/{{workload}}",
                )
            ],
            unit="percentunit",
        ),
        _panel(
            L,
            "timeseries",
            "Unshipped backlog",
            [_target("sum(haltgate_audit_ship_backlog_bytes)", "backlog")],
            unit="bytes",
        ),
        _panel(
            L,
            "timeseries",
            "Group commit (fsync) p99",
            [
                _target(
                    "histogram_quantile(0.99, sum by (le) "
                    f"(rate(haltgate_audit_fsync_seconds_bucket{{{SEL}}}[{RI}])))",
                    "p99",
                )
            ],
            unit="s",
        ),
        _panel(
            L,
            "timeseries",
            "Audit refusals and drops",
            [
                _target(
                    f"sum by (code) (increase(haltgate_audit_refusals_total{{{SEL}}}[{RI}]))",
                    "refused {{code}}",
                ),
                _target(
                    f"sum by (reason) (increase(haltgate_audit_records_dropped_total{{{SEL}}}"
                    f"[{RI}]))",
                    "dropped {{reason}}",
                ),
            ],
        ),
    ]
    return _dashboard(
        "haltgate-audit",
        "haltgate / Audit pipeline",
        "Spool depth, shipping throughput and lag, dropped records.",
        p,
    )


DASHBOARDS = {
    "haltgate-fleet.json": fleet,
    "haltgate-agent.json": agent,
    "haltgate-guardrails.json": guardrails,
    "haltgate-audit.json": audit,
}


def render(name: str) -> str:
    """The JSON text of one dashboard file."""
    return json.dumps(DASHBOARDS[name](), indent=2, sort_keys=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    stale = []
    args.out.mkdir(parents=True, exist_ok=True)
    for name in DASHBOARDS:
        path = args.out / name
        text = render(name)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
    if stale:
        print("out of date (run hack/dashboards.py):", *stale, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
