"""``haltgate pool`` commands against a real PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from haltgate.cli.main import main

pytestmark = pytest.mark.postgres


def test_apply_status_halt_lift(pool_dsn: str, tmp_path: Path) -> None:
    runner = CliRunner()
    doc = {
        "apiVersion": "haltgate.dev/v1alpha1",
        "kind": "BudgetPool",
        "metadata": {"name": "cli", "namespace": "ops"},
        "spec": {"calls": {"limit": 7}, "costUSD": {"limit": 2.5}},
    }
    path = tmp_path / "pool.yaml"
    path.write_text(yaml.safe_dump(doc))
    dsn = ["--dsn", pool_dsn]
    assert runner.invoke(main, ["pool", "migrate", *dsn]).output.startswith("applied: nothing")
    done = runner.invoke(main, ["pool", "apply", *dsn, "-f", str(path)])
    assert done.exit_code == 0, done.output
    status = runner.invoke(main, ["pool", "status", *dsn, "-n", "ops", "cli"])
    data = json.loads(status.output)
    assert data["state"] == "Active"
    assert data["dimensions"]["calls"]["limit"] == 7
    assert data["dimensions"]["cost_pico"]["limit"] == 2_500_000_000_000
    not_halted = runner.invoke(
        main, ["pool", "lift", *dsn, "-n", "ops", "cli", "--reason", "x", "--as", "bob"]
    )
    assert not_halted.exit_code == 1 and "not halted" in not_halted.output
    halted = runner.invoke(
        main, ["pool", "halt", *dsn, "-n", "ops", "cli", "--reason", "budget review", "--as", "bob"]
    )
    assert halted.exit_code == 0 and "halted" in halted.output
    data = json.loads(runner.invoke(main, ["pool", "status", *dsn, "-n", "ops", "cli"]).output)
    assert data["state"] == "Halted" and data["code"] == "admin_halt"
    lifted = runner.invoke(
        main, ["pool", "lift", *dsn, "-n", "ops", "cli", "--reason", "reviewed", "--as", "bob"]
    )
    assert lifted.exit_code == 0, lifted.output
    missing = runner.invoke(main, ["pool", "status", *dsn, "-n", "ops", "nope"])
    assert missing.exit_code == 1 and "no pool ops/nope" in missing.output


def test_bad_document_is_refused(pool_dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "haltgate.dev/v1alpha1",
                "kind": "BudgetPool",
                "metadata": {"name": "x"},
                "spec": {"leaseFraction": 2},
            }
        )
    )
    done = CliRunner().invoke(main, ["pool", "apply", "--dsn", pool_dsn, "-f", str(path)])
    assert done.exit_code == 1 and "leaseFraction" in done.output


def test_repair_gives_back_what_stranded_leases_held(pool_dsn: str, tmp_path: Path) -> None:
    import psycopg

    runner = CliRunner()
    dsn = ["--dsn", pool_dsn]
    path = tmp_path / "pool.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "haltgate.dev/v1alpha1",
                "kind": "BudgetPool",
                "metadata": {"name": "drift", "namespace": "ops"},
                "spec": {"calls": {"limit": 40}},
            }
        )
    )
    assert runner.invoke(main, ["pool", "apply", *dsn, "-f", str(path)]).exit_code == 0
    # A pool as the old renewal left it: 13 calls counted as leased by no lease at all.
    with psycopg.connect(pool_dsn, autocommit=True) as conn:
        conn.execute("UPDATE haltgate.pools SET calls_leased = 13 WHERE pool = 'ops/drift'")
    done = runner.invoke(main, ["pool", "repair", *dsn, "-n", "ops", "drift", "--as", "alice"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output) == {"calls": {"before": 13, "after": 0}}
    data = json.loads(runner.invoke(main, ["pool", "status", *dsn, "-n", "ops", "drift"]).output)
    assert data["dimensions"]["calls"]["leased"] == 0
    again = runner.invoke(main, ["pool", "repair", *dsn, "-n", "ops", "drift", "--as", "alice"])
    assert again.exit_code == 0 and json.loads(again.output) == {}
    missing = runner.invoke(main, ["pool", "repair", *dsn, "-n", "ops", "nope", "--as", "a"])
    assert missing.exit_code == 1 and "no pool ops/nope" in missing.output
    # A member role (what sidecars connect as) may not repair.
    with psycopg.connect(pool_dsn, autocommit=True) as conn:
        conn.execute("CREATE ROLE pool_member_r LOGIN")
        conn.execute("GRANT haltgate_pool_member TO pool_member_r")
    try:
        member = ["--dsn", pool_dsn.replace("postgres@", "pool_member_r@")]
        refused = runner.invoke(
            main, ["pool", "repair", *member, "-n", "ops", "drift", "--as", "m"]
        )
        assert refused.exit_code == 1 and "haltgate_pool_admin" in refused.output
    finally:
        with psycopg.connect(pool_dsn, autocommit=True) as conn:
            conn.execute("DROP OWNED BY pool_member_r")
            conn.execute("DROP ROLE pool_member_r")
