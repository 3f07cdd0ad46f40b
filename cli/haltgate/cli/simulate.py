"""``haltgate policy simulate``: what a new policy would have decided on recorded traffic.

Exit codes (for CI): 0 nothing would change; 1 some decision would change or cannot be
decided from the record; 2 usage error, or no recorded decision to re-run.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import orjson

from haltgate.cli.explain import load_store, read_records, source_options


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


@click.command()
@click.argument("new_policy", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@source_options
@click.option(
    "--policy",
    "policy_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Policy file the traffic was recorded under (repeatable; by digest). "
    "Without it the stages before the budget cannot be known unchanged.",
)
@click.option("--since", default=None, help="Records at or after (ISO 8601 or epoch).")
@click.option("--until", default=None, help="Records before (ISO 8601 or epoch).")
@click.option("--agent", "workload", default=None, help="Only this workload.")
@click.option("--run", "run_id", default=None, help="Only this agent run.")
@click.option(
    "--examples",
    default=20,
    show_default=True,
    type=click.IntRange(0, 10000),
    help="How many changed (and undecidable) decisions to list.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print a JSON document ("changed", "undecidable", "groups", "changes").',
)
def simulate(
    new_policy: Path,
    spool_dir: Path | None,
    dsn: str | None,
    prices_file: Path | None,
    policy_files: tuple[Path, ...],
    since: str | None,
    until: str | None,
    workload: str | None,
    run_id: str | None,
    examples: int,
    as_json: bool,
) -> None:
    """Re-run recorded traffic through NEW_POLICY; print the decisions that would change
    (allow -> deny and back), grouped by rule and agent.

    Exit 0 when nothing would change, 1 when something would (or cannot be decided from
    what the records keep)."""
    from haltgate.cli.audit_options import parse_time as _parse_time
    from haltgate.governance.simulate import simulate as run_simulation

    store = load_store(policy_files, prices_file)
    new = load_store((new_policy,), prices_file)
    loaded = new.get(new.digests[0])
    if loaded.spec.engine.type != "builtin":
        raise click.UsageError(
            f"{new_policy}: spec.engine.type {loaded.spec.engine.type!r}: "
            "only the builtin engine is simulated"
        )
    filters: dict[str, Any] = {
        "since": _epoch(_parse_time(since)),
        "until": _epoch(_parse_time(until)),
        "workload": workload,
        "run_id": run_id,
    }
    records = read_records(spool_dir, dsn, **filters)
    prices = None
    if prices_file is not None:
        from haltgate.governance.engine.pricing import load_table_file

        prices = load_table_file(prices_file)
    report = run_simulation(records, loaded, store, prices)
    if not report.decisions:
        # An empty selection proves nothing: a CI job pointed at the wrong place must fail.
        click.echo(
            "error: no recorded decision in the selection (records without replay "
            "inputs are skipped)",
            err=True,
        )
        sys.exit(2)
    doc = report.as_dict(examples)
    if as_json:
        click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(
            f"{doc['decisions']} decisions replayed through {new_policy}: "
            f"{doc['changed']} would change, {doc['undecidable']} undecidable"
        )
        for g in doc["groups"]:
            click.echo(f"  {g['count']:>6}  {g['change']:<40} rule {g['rule']}  agent {g['agent']}")
        for c in doc["changes"]:
            click.echo(
                f"  {c['decision_id']}  {c['recorded']} -> {c['simulated']}  "
                f"{c['kind']} {c['target']}"
            )
        for u in doc["undecidable_decisions"]:
            click.echo(f"  {u['decision_id']}  undecidable: {u['reason']}")
    sys.exit(1 if doc["changed"] or doc["undecidable"] else 0)
