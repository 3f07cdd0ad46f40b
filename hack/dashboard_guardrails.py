"""The guardrails dashboard: findings, blocks and detector cost."""

from __future__ import annotations

from typing import Any

from dashboard_build import RI, SEL, Layout, dashboard, panel, target


def guardrails() -> dict[str, Any]:
    """Guardrails, OPA decisions and fail-open events."""
    L = Layout()
    p = [
        panel(
            L,
            "timeseries",
            "Guardrail findings by detector and action",
            [
                target(
                    f"sum by (detector, action) (rate(haltgate_guardrail_findings_total{{{SEL}}}[{RI}]))",  # noqa: E501
                    "{{detector}} {{action}}",
                )
            ],
            unit="short",
        ),
        panel(
            L,
            "bargauge",
            "Findings in range by detector",
            [
                target(
                    "sort_desc(sum by (detector) "
                    f"(increase(haltgate_guardrail_findings_total{{{SEL}}}[$__range])))",
                    "{{detector}}",
                    instant=True,
                )
            ],
        ),
        panel(
            L,
            "timeseries",
            "Calls blocked by guardrails",
            [
                target(
                    f'sum by (code) (rate(haltgate_requests_total{{{SEL}, code=~"guardrail.*"}}[{RI}]))',  # noqa: E501
                    "{{code}}",
                )
            ],
            unit="reqps",
        ),
        panel(
            L,
            "timeseries",
            "OPA decisions by result",
            [
                target(
                    f"sum by (result) (rate(haltgate_opa_decisions_total{{{SEL}}}[{RI}]))",
                    "{{result}}",
                )
            ],
            unit="reqps",
        ),
        panel(
            L,
            "stat",
            "Fail-open events in range",
            [target(f"sum(increase(haltgate_fail_open_total{{{SEL}}}[$__range])) or vector(0)")],
            w=8,
            h=6,
        ),
        panel(
            L,
            "timeseries",
            "Fail-open events by control",
            [
                target(
                    f"sum by (control) (increase(haltgate_fail_open_total{{{SEL}}}[{RI}]))",
                    "{{control}}",
                )
            ],
            w=16,
            h=6,
        ),
        panel(
            L,
            "timeseries",
            "Streams cut by reason",
            [
                target(
                    f"sum by (reason) (increase(haltgate_streams_cut_total{{{SEL}}}[{RI}]))",
                    "{{reason}}",
                )
            ],
        ),
        panel(
            L,
            "timeseries",
            "Transparent connections by outcome",
            [
                target(
                    f"sum by (outcome) (rate(haltgate_transparent_connections_total{{{SEL}}}[{RI}]))",  # noqa: E501
                    "{{outcome}}",
                )
            ],
            unit="cps",
        ),
    ]
    return dashboard(
        "haltgate-guardrails",
        "haltgate / Guardrails and policy",
        "Guardrail findings, OPA decisions, fail-open events.",
        p,
    )
