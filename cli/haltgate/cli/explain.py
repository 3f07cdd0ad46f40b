"""``haltgate audit explain`` and ``haltgate audit replay``: re-derive decisions offline.

Both read the records from a spool directory (``--spool DIR``: no database) or from
PostgreSQL (``--dsn``), and the policy files the sidecar ran with (``--policy FILE``,
repeatable: each record names its policy by digest). Exit codes: 0 every decision is
re-derived exactly; 1 a mismatch (an edited record, or an engine bug); 2 usage error or a
decision that cannot be replayed (unknown id, policy not given).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import orjson

from haltgate.cli.audit_options import DSN_ENV


def source_options(f: Any) -> Any:
    """``--spool``/``--dsn``/``--policy``/``--prices``, shared with ``policy simulate``."""
    for option in reversed(
        (
            click.option(
                "--spool",
                "spool_dir",
                type=click.Path(path_type=Path),
                default=None,
                help="Read the records from this spool directory (offline).",
            ),
            click.option(
                "--dsn",
                envvar=DSN_ENV,
                default=None,
                metavar="DSN",
                help=f"Read the records from PostgreSQL. Env: {DSN_ENV}.",
            ),
            click.option(
                "--prices",
                "prices_file",
                default=None,
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help="Price table the sidecar used, when not the shipped one.",
            ),
        )
    ):
        f = option(f)
    return f


def policy_option(f: Any) -> Any:
    return click.option(
        "--policy",
        "policy_files",
        multiple=True,
        required=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Policy file the sidecar ran with (repeatable; matched by digest).",
    )(f)


def load_store(policy_files: tuple[Path, ...], prices_file: Path | None) -> Any:
    from haltgate.governance.audit.policies import PolicyStore
    from haltgate.governance.engine.pricing import PriceTableError, load_table_file
    from haltgate.governance.validation import PolicyFileError

    try:
        prices = load_table_file(prices_file) if prices_file is not None else None
        return PolicyStore.from_files(policy_files, prices)
    except PolicyFileError as e:
        raise click.UsageError("; ".join(f"{e.source}: {i}" for i in e.issues)) from e
    except PriceTableError as e:
        raise click.UsageError(f"--prices {prices_file}: {e}") from e


def read_records(spool_dir: Path | None, dsn: str | None, **filters: Any) -> list[Any]:
    from haltgate.governance.audit.sources import (
        RecordSourceError,
        database_records,
        spool_records,
    )

    if (spool_dir is None) == (dsn is None):
        raise click.UsageError(f"give exactly one of --spool DIR or --dsn (or {DSN_ENV})")
    try:
        if spool_dir is not None:
            return spool_records(spool_dir, **filters)
        assert dsn is not None
        return database_records(dsn, **filters)
    except RecordSourceError as e:
        raise click.UsageError(str(e)) from e


@click.command()
@click.argument("decision_id")
@source_options
@policy_option
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print a JSON document ("decision", "replayed", "match", ...).',
)
def explain(
    decision_id: str,
    spool_dir: Path | None,
    dsn: str | None,
    prices_file: Path | None,
    policy_files: tuple[Path, ...],
    as_json: bool,
) -> None:
    """Why DECISION_ID was allowed or refused: the stages it went through, the rule or
    budget that decided, the numbers, and the decision re-derived from the record.

    Exit 0 when the re-derived decision matches the record, 1 when it does not."""
    from haltgate.governance.audit.explain import ExplainError, explain, render_text

    store = load_store(policy_files, prices_file)
    records = read_records(spool_dir, dsn, decision_id=decision_id)
    try:
        doc = explain(records, store)
    except ExplainError as e:
        click.echo(f"error: {e.code}: {e.message}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(render_text(doc))
    sys.exit(0 if doc["match"] else 1)


@click.command()
@click.argument("run_id")
@source_options
@policy_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def replay(
    run_id: str,
    spool_dir: Path | None,
    dsn: str | None,
    prices_file: Path | None,
    policy_files: tuple[Path, ...],
    as_json: bool,
) -> None:
    """Replay every decision of agent run RUN_ID through the engine; report the first
    record whose decision is not re-derived exactly.

    Exit 0 when every decision matches, 1 on a mismatch (tamper or bug alarm), 2 when
    the run has no records or cannot be replayed here (policy not given, ...)."""
    from haltgate.governance.audit.replay import replay_run

    store = load_store(policy_files, prices_file)
    records = read_records(spool_dir, dsn, run_id=run_id)
    if not records:
        click.echo(f"error: no audit record for run {run_id!r}", err=True)
        sys.exit(2)
    report = replay_run(records, store)
    error = report.get("error")
    if error is not None and not as_json:
        click.echo(
            f"error: {error['code']}: decision {error['decision_id']}: {error['message']}", err=True
        )
        sys.exit(2)
    if as_json:
        click.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        first = report["first_mismatch"]
        if first is None:
            click.echo(
                f"OK: run {run_id}: {report['replayed']} records replayed "
                f"({report['budget_steps']} budget decisions re-run), all match"
            )
        else:
            click.echo(
                f"MISMATCH: run {run_id}: decision {first['decision_id']} "
                f"({first['phase']}, chain {first['chain_id']} seq {first['seq']}):"
            )
            for m in first["mismatches"]:
                click.echo(f"  {m}")
    sys.exit(0 if report["match"] else 2 if error is not None else 1)
