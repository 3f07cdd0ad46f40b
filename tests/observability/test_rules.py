"""Alert rules and dashboards as files: promtool checks, promtool unit tests, JSON shape."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.observability import loadbed

HERE = Path(__file__).resolve().parent
RUNBOOKS = loadbed.REPO / "docs" / "runbooks.md"


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not installed: apt-get install prometheus")
    return path


@pytest.mark.prometheus
def test_promtool_check_rules() -> None:
    out = subprocess.run(
        [_promtool(), "check", "rules", str(loadbed.RULES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 13 rules found" in out.stdout


@pytest.mark.prometheus
def test_alerts_fire_in_promtool_unit_tests() -> None:
    out = subprocess.run(
        [_promtool(), "test", "rules", "haltgate-alerts.test.yaml"],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_has_a_unit_test_and_a_runbook_section() -> None:
    rules = [r for g in yaml.safe_load(loadbed.RULES.read_text())["groups"] for r in g["rules"]]
    tests = yaml.safe_load((HERE / "haltgate-alerts.test.yaml").read_text())["tests"]
    tested = {
        t["alertname"]
        for case in tests
        for t in case.get("alert_rule_test", [])
        if t.get("exp_alerts")
    }
    headings = {
        re.sub(r"[^a-z0-9-]", "", line[3:].strip().lower().replace(" ", "-"))
        for line in RUNBOOKS.read_text().splitlines()
        if line.startswith("## ")
    }
    for rule in rules:
        assert rule["alert"] in tested, f"{rule['alert']} never fires in a unit test"
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor == rule["alert"].lower()
        assert anchor in headings, f"docs/runbooks.md has no section for {rule['alert']}"
        assert rule["labels"]["severity"] in ("warning", "critical")


def test_dashboards_are_generated() -> None:
    out = subprocess.run(
        [sys.executable, str(loadbed.REPO / "hack" / "dashboards.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("path", sorted(loadbed.DASHBOARDS.glob("*.json")), ids=lambda p: p.stem)
def test_dashboard_is_templated(path: Path) -> None:
    doc = json.loads(path.read_text())
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert set(variables) == {"datasource", "namespace", "workload"}
    assert variables["datasource"]["type"] == "datasource"
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    for panel in doc["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24
        for title, expr, target in loadbed.dashboard_queries(path):
            assert target["datasource"]["uid"] == "${datasource}", title
            # Sidecar metrics follow the dashboard's namespace and workload; the shipper's
            # (one per spool, not per agent identity) do not carry those labels.
            if "haltgate_audit_ship" not in expr and "records_shipped" not in expr:
                assert "$namespace" in expr and "$workload" in expr, (title, expr)
