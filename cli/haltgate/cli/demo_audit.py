"""The demo's closing reads: the audit trail shipped, queried and verified, and the
sidecar's metrics."""

from __future__ import annotations

import json

from haltgate.cli.demo_shell import DemoError, clean_env, run_checked
from haltgate.cli.demo_state import Demo


def audit(d: Demo) -> None:
    d.console.step("The audit trail: ship the spool, read the run back, verify")
    d.sidecar_proc.stop()  # flushes the spool
    env = {**clean_env(), "HALTGATE_AUDIT_DSN": d.audit_dsn}
    spool = d.state_dir / "audit"
    shipped = run_checked(
        [d.haltgate, "audit", "ship", "--once", "--spool", str(spool)], env=env, timeout=120
    )
    d.console.ok(f"$ haltgate audit ship --once   {shipped.stdout.strip()[-120:]}")
    lines = run_checked(
        [d.haltgate, "audit", "query", "--all", "-o", "jsonl"], env=env
    ).stdout.splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    run_ids = sorted({r["run_id"] for r in records if r.get("run_id")})
    if not run_ids:
        raise DemoError("no audit record reached the database")
    d.console.info(f"$ haltgate audit history {run_ids[0]}")
    d.console.info(run_checked([d.haltgate, "audit", "history", run_ids[0]], env=env).stdout)
    d.console.info("$ haltgate audit cost")
    d.console.info(run_checked([d.haltgate, "audit", "cost"], env=env).stdout)
    verify = run_checked([d.haltgate, "audit", "verify"], env=env, check=False)
    d.console.info("$ haltgate audit verify")
    d.console.info((verify.stdout + verify.stderr).strip())
    if verify.returncode != 0:
        raise DemoError("audit verify failed")
    d.console.ok("audit verify: OK (every hash chain intact)")


def metrics(d: Demo) -> None:
    d.console.step("A few of the sidecar's metrics")
    wanted = [
        line
        for line in d.metrics_text.splitlines()
        if line.startswith("haltgate_")
        and line.split(" ")[-1] not in ("0", "0.0")
        and "_bucket" not in line
        and "_created" not in line
    ]
    for line in wanted[:14]:
        d.console.info(line)
    if not wanted:
        raise DemoError("the sidecar exposed no haltgate_ metrics")
