"""Dashboards and alerts against a real Prometheus scraping real sidecars under load.

Every expression of every dashboard panel and of every alert rule is sent to Prometheus's
HTTP API; each must return data, except the few whose metrics the load leaves untouched
on purpose (nothing failed open, nothing was dropped), which must return nothing (or 0).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from haltgate.testbed.process import wait_until
from tests.observability import loadbed
from tests.observability.conftest import HALT_CYCLES, LoadedFleet

pytestmark = [pytest.mark.postgres, pytest.mark.prometheus]

DASHBOARD_FILES = sorted(loadbed.DASHBOARDS.glob("*.json"))

QUIET_METRICS = (
    "haltgate_fail_open_total",
    "haltgate_opa_decisions_total",
    "haltgate_streams_cut_total",
    "haltgate_transparent_connections_total",
    "haltgate_audit_refusals_total",
    "haltgate_audit_records_dropped_total",
    "haltgate_drift_sustained",
)
"""Metrics the load does not move (no OPA, no transparent listener, nothing fails, no
drift): their panels must answer with nothing or with zeros, never with an error."""

ALERTS_EXPECTED = {
    "HaltgateHaltStorm": True,  # the capped agent halted HALT_CYCLES times
    "HaltgateBudgetNearExhaustion": True,  # its calls budget is used up
    "HaltgateFailOpen": False,
    "HaltgateSidecarDown": False,
    "HaltgateBehaviourDrift": False,  # research watches its tool mix, which stays steady
    "HaltgateFleetDrift": False,
    "HaltgateDriftHalt": False,
    "HaltgateAuditLag": False,
    "HaltgateAuditSpoolNearFull": False,
    "HaltgateAuditRecordsDropped": False,
    "HaltgateWebhookErrors": False,  # no operator in this test: its metrics are absent
    "HaltgateHaltDeliveryFailing": False,
    "HaltgateOperatorDown": False,
}


def _query(loaded: LoadedFleet, expr: str) -> list[dict[str, Any]]:
    data = loadbed.api(loaded.fleet, "/api/v1/query", query=expr, time=f"{loaded.eval_time:.3f}")
    assert data["resultType"] == "vector", (expr, data["resultType"])
    return list(data["result"])


def _alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(loadbed.RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def _panel_cases() -> list[Any]:
    cases = []
    for path in DASHBOARD_FILES:
        for title, expr, _ in loadbed.dashboard_queries(path):
            cases.append(pytest.param(expr, id=f"{path.stem}:{title}"))
    return cases


@pytest.mark.parametrize("expr", _panel_cases())
def test_dashboard_expression_returns_data(loaded: LoadedFleet, expr: str) -> None:
    result = _query(loaded, loadbed.substitute(expr, rate_interval="30s", range_="5m"))
    values = [float(s["value"][1]) for s in result]
    if any(m in expr for m in QUIET_METRICS):
        assert all(v == 0 for v in values), (expr, result)
        return
    assert result, f"no data for {expr}"
    assert not any(math.isnan(v) for v in values), (expr, result)


@pytest.mark.parametrize("rule", _alert_rules(), ids=lambda r: r["alert"])
def test_alert_expression(loaded: LoadedFleet, rule: dict[str, Any]) -> None:
    result = _query(loaded, rule["expr"])
    assert bool(result) is ALERTS_EXPECTED[rule["alert"]], (rule["alert"], result)
    if rule["alert"] == "HaltgateHaltStorm":
        assert [s["metric"]["namespace"] for s in result] == ["team-b"]
    if rule["alert"] == "HaltgateBudgetNearExhaustion":
        assert {(s["metric"]["workload"], s["metric"]["dimension"]) for s in result} == {
            ("batch", "calls")
        }


def test_every_alert_is_expected_and_loaded(loaded: LoadedFleet) -> None:
    assert {r["alert"] for r in _alert_rules()} == set(ALERTS_EXPECTED)
    groups = loadbed.api(loaded.fleet, "/api/v1/rules")["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(rules) == set(ALERTS_EXPECTED)
    assert {r["health"] for r in rules.values()} == {"ok"}, rules
    # Prometheus evaluates them itself: the storm fires at once (no `for`), the budget
    # alert waits out its `for: 2m`.
    wait_until(
        lambda: _alert_state(loaded, "HaltgateHaltStorm") == "firing",
        timeout=10,
        what="halt storm alert firing",
    )
    assert _alert_state(loaded, "HaltgateBudgetNearExhaustion") == "pending"
    assert _alert_state(loaded, "HaltgateFailOpen") is None


def _alert_state(loaded: LoadedFleet, name: str) -> str | None:
    alerts = loadbed.api(loaded.fleet, "/api/v1/alerts")["alerts"]
    states = {a["state"] for a in alerts if a["labels"]["alertname"] == name}
    return "firing" if "firing" in states else states.pop() if states else None


def test_sidecar_metrics_carry_identity_and_counts(loaded: LoadedFleet) -> None:
    research = loaded.fleet.agent("research")
    with urllib.request.urlopen(f"http://{research.metrics}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    ident = 'namespace="team-a",policy="research-policy",workload="research"'
    assert f'haltgate_requests_total{{code="",decision="allow",kind="llm",{ident}}}' in text
    assert 'haltgate_requests_total{code="tool_not_allowed",decision="deny"' in text
    for name in (
        "haltgate_cost_usd_total",
        "haltgate_tokens_total",
        "haltgate_added_latency_seconds_bucket",
        "haltgate_budget_used_ratio",
        "haltgate_guardrail_findings_total",
        "haltgate_audit_spool_bytes",
        "haltgate_audit_spool_limit_bytes",
        "haltgate_halted",
    ):
        assert any(
            line.startswith(name + "{") and all(i in line for i in ident.split(","))
            for line in text.splitlines()
        ), name
    # spec.drift (research only): scored after its warm-up, steady, nothing sustained.
    drift = {
        s["metric"]["__name__"]: float(s["value"][1])
        for s in _query(loaded, '{__name__=~"haltgate_drift_.*",dimension="tool_mix"}')
        if s["metric"]["workload"] == "research"
    }
    assert drift["haltgate_drift_score"] == 0
    assert drift["haltgate_drift_threshold"] == 0.5
    assert drift["haltgate_drift_sustained"] == 0
    assert drift["haltgate_drift_baseline_samples"] >= 10
    assert {s["metric"]["workload"] for s in _query(loaded, "haltgate_drift_score")} == {"research"}
    reload_ok = _query(loaded, "min(haltgate_policy_last_reload_ok)")
    assert float(reload_ok[0]["value"][1]) == 1
    halts = _query(loaded, 'sum(haltgate_halts_total{workload="batch"})')
    assert float(halts[0]["value"][1]) == HALT_CYCLES
    sent = sum(loaded.report.sent.values())
    total = _query(loaded, "sum(haltgate_requests_total)")
    assert float(total[0]["value"][1]) == sent


def test_cost_per_agent_postgres_matches_prometheus(loaded: LoadedFleet) -> None:
    """``haltgate audit cost`` (exact, PostgreSQL) and the dashboard's Prometheus figure."""
    prom = {
        (s["metric"]["namespace"], s["metric"]["workload"]): float(s["value"][1])
        for s in _query(loaded, "sum by (namespace, workload) (haltgate_cost_usd_total)")
    }
    calls = {
        (s["metric"]["namespace"], s["metric"]["workload"]): float(s["value"][1])
        for s in _query(loaded, "sum by (namespace, workload) (haltgate_requests_total)")
    }
    denied = {
        (s["metric"]["namespace"], s["metric"]["workload"]): float(s["value"][1])
        for s in _query(
            loaded, 'sum by (namespace, workload) (haltgate_requests_total{decision="deny"})'
        )
    }

    def outcomes() -> int:
        with psycopg.connect(loaded.dsn) as conn:
            row = conn.execute(
                "SELECT count(*) FROM haltgate.audit_records WHERE phase = 'outcome'"
            ).fetchone()
        return int(row[0]) if row else 0

    wait_until(
        lambda: outcomes() == sum(calls.values()), timeout=30, what="every outcome record shipped"
    )
    out = subprocess.run(
        [str(Path(sys.executable).parent / "haltgate"), "audit", "query", "--cost", "-o", "json"],
        env={"HALTGATE_AUDIT_DSN": loaded.dsn, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    exact = {(a["namespace"], a["workload"]): a for a in json.loads(out.stdout)["agents"]}
    assert (
        set(exact)
        == set(prom)
        == {("team-a", "research"), ("team-a", "support"), ("team-b", "batch")}
    )
    for agent, cost in prom.items():
        assert exact[agent]["cost_usd"] == pytest.approx(cost, rel=1e-9), agent
        assert cost > 0
        assert exact[agent]["calls"] == calls[agent], agent
        assert exact[agent]["denied"] == denied.get(agent, 0), agent


def test_sidecar_down_alert_expression_sees_a_stopped_sidecar(loaded: LoadedFleet) -> None:
    """Runs last in this module: it stops the capped agent's sidecar."""
    proc = next(p for p in loaded.fleet.processes if p.name == "sidecar-team-b-batch")
    proc.stop()
    expr = next(r["expr"] for r in _alert_rules() if r["alert"] == "HaltgateSidecarDown")

    def down() -> list[dict[str, Any]]:
        return list(loadbed.api(loaded.fleet, "/api/v1/query", query=expr)["result"])

    wait_until(lambda: bool(down()), timeout=15, what="up == 0 for the stopped sidecar")
    assert [s["metric"]["pod"] for s in down()] == ["batch-7d9f8-abcde"]
