"""docs/reference.md is generated from crds/ by hack/gen_reference.py and must be current."""

from __future__ import annotations

import subprocess
import sys

from tests.chart.conftest import REPO


def test_reference_is_up_to_date() -> None:
    res = subprocess.run(
        [sys.executable, str(REPO / "hack" / "gen_reference.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, (
        "docs/reference.md is stale: run `.venv/bin/python hack/gen_reference.py`"
    )


def test_reference_lists_every_spec_field() -> None:
    text = (REPO / "docs" / "reference.md").read_text()
    for field in (
        "spec.budgets.costUSD.limit",
        "spec.tools.rules[].mcpTools",
        "spec.guardrails.secrets.action",
        "spec.opa.rego",
        "spec.onHalt",
    ):
        assert f"| `{field}` |" in text, field


def test_exclusive_bounds_read_as_exclusive() -> None:
    """minimum 0 + exclusiveMinimum true in the CRD is "> 0" in the reference, not "≥ 0"."""
    text = (REPO / "docs" / "reference.md").read_text()
    for field in (
        "spec.budgets.wallTime.limitSeconds",
        "spec.leaseSeconds",
        "spec.cascade.haltStorm.windowSeconds",
    ):
        row = next(line for line in text.splitlines() if line.startswith(f"| `{field}` |"))
        assert "> 0" in row and "≥ 0" not in row, row
