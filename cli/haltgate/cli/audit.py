"""``haltgate audit``: migrate, ship, verify, query, export and serve the audit trail.

Exit codes: 0 success; 1 the command ran and found a problem (a broken chain, a failed
export check); 2 usage error.
"""

from __future__ import annotations

import logging
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import orjson

DSN_ENV = "HALTGATE_AUDIT_DSN"
_dsn_option = click.option(
    "--dsn",
    envvar=DSN_ENV,
    required=True,
    metavar="DSN",
    help=f"PostgreSQL connection string (libpq URI or key=value). Env: {DSN_ENV}.",
)


def _parse_time(value: str | None) -> datetime | None:
    """ISO 8601 (``2026-11-01``, ``2026-11-01T12:00:00Z``) or epoch seconds; UTC if naive."""
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise click.BadParameter(f"not a time: {value!r} (ISO 8601 or epoch seconds)") from e
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class _Time(click.ParamType):
    name = "TIME"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        parsed = _parse_time(str(value))
        assert parsed is not None
        return parsed


TIME = _Time()


@click.group(name="audit")
def audit() -> None:
    """Query, verify and export the audit trail; ship the spool; migrate the database."""


@audit.command()
@_dsn_option
def migrate(dsn: str) -> None:
    """Create or upgrade the audit schema (needs an admin role, not the writer)."""
    from haltgate.governance.audit.migrate import MigrationError
    from haltgate.governance.audit.migrate import migrate as run

    try:
        applied = run(dsn)
    except MigrationError as e:
        raise click.ClickException(str(e)) from e
    for m in applied:
        click.echo(f"applied {m.version:04d}_{m.name}")
    if not applied:
        click.echo("audit schema is up to date")


@audit.command()
@click.option(
    "--spool",
    "spool_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Spool directory written by the sidecar.",
)
@_dsn_option
# 20_000 is shipper.DEFAULT_BATCH_RECORDS, written out so that `--help` imports no psycopg.
@click.option(
    "--batch",
    default=20_000,
    show_default=True,
    type=click.IntRange(1, 100000),
    help="Records per COPY transaction.",
)
@click.option("--once", is_flag=True, help="Ship what is spooled now, then exit.")
@click.option(
    "--metrics-port", type=int, default=None, help="Serve Prometheus metrics on this port."
)
@click.option(
    "--metrics-addr",
    default="127.0.0.1",
    show_default=True,
    help="Address of the metrics port (the injected shipper uses the pod IP).",
)
@click.option(
    "--drain-seconds",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0),
    help="On SIGTERM/SIGINT, keep shipping what is spooled for up to this long "
    "before exiting (a pod's spool is an emptyDir, gone with the pod).",
)
def ship(
    spool_dir: Path,
    dsn: str,
    batch: int,
    once: bool,
    metrics_port: int | None,
    metrics_addr: str,
    drain_seconds: float,
) -> None:
    """Ship spooled records to PostgreSQL until stopped (SIGTERM/SIGINT)."""
    import psycopg

    from haltgate.governance.audit.shipper import Shipper, ShipperSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    shipper = Shipper(ShipperSettings(directory=spool_dir, dsn=dsn, batch_records=batch))
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=metrics_addr, registry=shipper.metrics.registry)
    try:
        if once:
            shipped = shipper.drain(timeout=3600)
            click.echo(f"shipped {shipped} records")
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: shipper.stop())
        shipper.run()
        if drain_seconds > 0:
            try:
                shipped = shipper.drain(timeout=drain_seconds)
                logging.info("audit shipper: drained %d records before exit", shipped)
            except (psycopg.Error, OSError, TimeoutError) as e:
                logging.warning("audit shipper: records left in the spool at exit: %s", e)
    finally:
        shipper.close()


@audit.command()
@click.option(
    "--dsn",
    envvar=DSN_ENV,
    default=None,
    metavar="DSN",
    help=f"Verify the chains in PostgreSQL. Env: {DSN_ENV}.",
)
@click.option(
    "--export",
    "export_url",
    default=None,
    metavar="URL",
    help="Verify an export instead: s3://bucket/prefix or a local directory.",
)
@click.option("--endpoint-url", default=None, help="S3-compatible endpoint (with --export).")
@click.option("--chain", "chain_id", default=None, help="Only this chain.")
@click.option("--since", type=TIME, default=None, help="Only records at or after (ISO/epoch).")
@click.option("--until", type=TIME, default=None, help="Only records before (ISO/epoch).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(
    dsn: str | None,
    export_url: str | None,
    endpoint_url: str | None,
    chain_id: str | None,
    since: datetime | None,
    until: datetime | None,
    as_json: bool,
) -> None:
    """Walk the hash chains; report edited, removed, inserted or reordered records.

    Exit 0 when every chain is intact, 1 when anything is broken."""
    from haltgate.governance.audit.verify import VerifyReport, verify_database

    report: VerifyReport
    if export_url is not None:
        from haltgate.governance.audit.export import verify_export

        report = verify_export(export_url, endpoint_url=endpoint_url)
    elif dsn is not None:
        report = verify_database(dsn, chain_id=chain_id, since=since, until=until)
    else:
        raise click.UsageError(f"give --dsn (or {DSN_ENV}) or --export")
    if as_json:
        click.echo(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        for p in report.problems:
            where = f"position {p.position}" if p.position is not None else "?"
            click.echo(f"BROKEN {p.kind}: chain {p.chain_id} seq {p.seq} ({where}): {p.detail}")
        state = "OK" if report.ok else f"BROKEN ({len(report.problems)} problems)"
        click.echo(f"{state}: {report.chains} chains, {report.records} records checked")
    sys.exit(0 if report.ok else 1)


_TABLE_COLUMNS = (
    ("time", 26),
    ("agent", 28),
    ("run", 12),
    ("seq", 6),
    ("phase", 10),
    ("kind", 6),
    ("decision", 8),
    ("failure", 11),
    ("code", 22),
    ("tool", 16),
    ("cost_usd", 10),
    ("target", 0),
)


def _row_cells(doc: dict[str, Any]) -> list[str]:
    when = datetime.fromtimestamp(float(doc["time"]), UTC).isoformat(timespec="microseconds")
    cost = doc.get("cost_usd")
    return [
        when.replace("+00:00", "Z"),
        f"{doc.get('namespace')}/{doc.get('workload')}",
        str(doc.get("run_id") or ""),
        str(doc.get("seq")),
        str(doc.get("phase")),
        str(doc.get("kind") or "-"),
        str(doc.get("decision")),
        str(doc.get("failure_type") or "-"),
        str(doc.get("code") or "-"),
        str(doc.get("tool") or "-"),
        "-" if cost is None else f"{cost:.6f}",
        str(doc.get("target") or ""),
    ]


def _print_table(docs: list[dict[str, Any]], header: bool) -> None:
    def line(cells: list[str]) -> str:
        parts = []
        for (_, width), cell in zip(_TABLE_COLUMNS, cells, strict=True):
            parts.append(cell if width == 0 else cell[:width].ljust(width))
        return " ".join(parts).rstrip()

    if header:
        click.echo(line([name.upper() for name, _ in _TABLE_COLUMNS]))
    for doc in docs:
        click.echo(line(_row_cells(doc)))


def _filter_options(f: Any) -> Any:
    options = [
        click.option("--namespace", "-n", default=None, help="Agent namespace."),
        click.option("--workload", "-w", default=None, help="Agent workload."),
        click.option("--pod", default=None, help="Pod name."),
        click.option("--run", "run_id", default=None, help="Agent run id."),
        click.option("--chain", "chain_id", default=None, help="Chain id."),
        click.option("--decision", type=click.Choice(["allow", "deny"]), default=None),
        click.option(
            "--failure-type",
            default=None,
            type=click.Choice(["EXHAUSTION", "STAGNATION", "OVERRISK", "SAFETY", "EXTERNAL"]),
        ),
        click.option("--code", default=None, help="Reason code, e.g. tokens_exhausted."),
        click.option("--tool", default=None, help="Tool name."),
        click.option("--kind", default=None, help="llm, mcp, http or connection."),
        click.option(
            "--phase", type=click.Choice(["intent", "outcome", "connection"]), default=None
        ),
        click.option("--since", type=TIME, default=None, help="At or after (ISO/epoch)."),
        click.option("--until", type=TIME, default=None, help="Before (ISO/epoch)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _record_filter(values: dict[str, Any]) -> Any:
    from haltgate.governance.audit.query import RecordFilter

    return RecordFilter(**{k: values[k] for k in RecordFilter.names()})


@audit.command()
@_dsn_option
@_filter_options
@click.option(
    "--limit",
    default=100,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Records per page.",
)
@click.option("--cursor", default=None, help="Continue after this cursor (from a JSON page).")
@click.option(
    "--order",
    type=click.Choice(["asc", "desc", "chain"]),
    default="asc",
    show_default=True,
    help="By time (asc, desc) or chain: each chain in sequence order.",
)
@click.option("--all", "all_pages", is_flag=True, help="Follow cursors to the last page.")
@click.option(
    "--output",
    "-o",
    type=click.Choice(["table", "json", "jsonl"]),
    default="table",
    show_default=True,
)
@click.option(
    "--cost",
    "cost_report",
    is_flag=True,
    help="Report cost, calls, refusals and tokens per agent for the matching "
    "records instead of listing them (same as `haltgate audit cost`).",
)
def query(
    dsn: str,
    limit: int,
    cursor: str | None,
    order: str,
    all_pages: bool,
    output: str,
    cost_report: bool,
    **filters: Any,
) -> None:
    """List audit records matching the filters (oldest first).

    Execution history of a run: ``haltgate audit query --run RUN --all``. Cost per agent
    over a range: ``haltgate audit query --cost --since 2026-11-01 --until 2026-12-01``."""
    from haltgate.governance.audit.query import CursorError, query_records

    flt = _record_filter(filters)
    if cost_report:
        _print_cost(dsn, flt, "json" if output != "table" else "table")
        return
    first = True
    while True:
        try:
            page = query_records(dsn, flt, limit=limit, cursor=cursor, order=order)  # type: ignore[arg-type]
        except CursorError as e:
            raise click.BadParameter(str(e), param_hint="--cursor") from e
        if output == "json" and not all_pages:
            click.echo(
                orjson.dumps(
                    {"records": page.records, "next_cursor": page.next_cursor},
                    option=orjson.OPT_INDENT_2,
                ).decode()
            )
        elif output in ("json", "jsonl"):
            for doc in page.records:
                click.echo(orjson.dumps(doc).decode())
        else:
            _print_table(page.records, header=first)
        first = False
        cursor = page.next_cursor
        if not all_pages or cursor is None:
            if output == "table" and cursor is not None:
                click.echo(f"-- more: --cursor {cursor}", err=True)
            return


@audit.command()
@_dsn_option
@click.argument("run_id")
@click.option(
    "--output", "-o", type=click.Choice(["table", "jsonl"]), default="table", show_default=True
)
@click.pass_context
def history(ctx: click.Context, dsn: str, run_id: str, output: str) -> None:
    """Execution history of one agent run, every record in chain order (sequence
    numbers), which is the order the sidecar committed them in."""
    ctx.invoke(
        query,
        dsn=dsn,
        limit=1000,
        cursor=None,
        order="chain",
        all_pages=True,
        output=output,
        cost_report=False,
        **{**dict.fromkeys(_filter_names(), None), "run_id": run_id},
    )


def _filter_names() -> tuple[str, ...]:
    from haltgate.governance.audit.query import RecordFilter

    return RecordFilter.names()


@audit.command()
@_dsn_option
@_filter_options
@click.option(
    "--output", "-o", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def cost(dsn: str, output: str, **filters: Any) -> None:
    """Cost, calls, refusals and tokens per agent (exact: from the audit records)."""
    _print_cost(dsn, _record_filter(filters), output)


def _print_cost(dsn: str, flt: Any, output: str) -> None:
    from haltgate.governance.audit.query import cost_by_agent

    agents = cost_by_agent(dsn, flt)
    if output == "json":
        click.echo(orjson.dumps({"agents": agents}, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(
        f"{'AGENT':40} {'CALLS':>8} {'DENIED':>8} {'COST_USD':>12} {'TOKENS_IN':>10} "
        f"{'TOKENS_OUT':>10}"
    )
    for a in agents:
        click.echo(
            f"{a['namespace'] + '/' + a['workload']:40} {a['calls']:>8} {a['denied']:>8}"
            f" {a['cost_usd']:>12.6f} {a['input_tokens']:>10} {a['output_tokens']:>10}"
        )


@audit.command()
@_dsn_option
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=8090, show_default=True, type=int)
@click.option(
    "--token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="HALTGATE_AUDIT_TOKEN_FILE",
    required=True,
    help="File holding the bearer token clients must send (>= 16 characters). "
    "Env: HALTGATE_AUDIT_TOKEN_FILE.",
)
@click.option(
    "--policy",
    "policy_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Policy file decisions may be explained with (repeatable; by digest).",
)
@click.option(
    "--prices",
    "prices_file",
    default=None,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Price table the sidecars used, when not the shipped one.",
)
def serve(
    dsn: str,
    host: str,
    port: int,
    token_file: Path,
    policy_files: tuple[Path, ...],
    prices_file: Path | None,
) -> None:
    """Serve the authenticated HTTP query API (OpenAPI at /openapi.json)."""
    from aiohttp import web

    from haltgate.cli.explain import load_store
    from haltgate.governance.audit.api import create_app

    token = token_file.read_text().strip()
    store = load_store(policy_files, prices_file)
    try:
        app = create_app(dsn, token, policies=store)
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    web.run_app(app, host=host, port=port, print=None)


@audit.command(name="export")
@_dsn_option
@click.option(
    "--to", "url", required=True, metavar="URL", help="s3://bucket/prefix (or a local directory)."
)
@click.option("--since", type=TIME, required=True, help="Window start, inclusive (ISO/epoch).")
@click.option(
    "--until",
    type=TIME,
    required=True,
    help="Window end, exclusive (ISO/epoch). Older than the shipping lag.",
)
@click.option(
    "--endpoint-url",
    default=None,
    envvar="AWS_ENDPOINT_URL_S3",
    help="S3-compatible endpoint (MinIO, Ceph, ...). Env: AWS_ENDPOINT_URL_S3.",
)
@click.option(
    "--records-per-object", default=50000, show_default=True, type=click.IntRange(1, 10_000_000)
)
def export_cmd(
    dsn: str,
    url: str,
    since: datetime,
    until: datetime,
    endpoint_url: str | None,
    records_per_object: int,
) -> None:
    """Export a time window as gzip JSONL objects plus a verifiable manifest (resumable).

    Credentials come from the usual AWS sources (env, profile, IRSA)."""
    from haltgate.governance.audit.export import ExportError, export

    try:
        result = export(
            dsn,
            url,
            since=since,
            until=until,
            endpoint_url=endpoint_url,
            records_per_object=records_per_object,
        )
    except ExportError as e:
        raise click.ClickException(str(e)) from e
    m = result.manifest
    state = (
        "already complete"
        if result.already_complete
        else "resumed and completed"
        if result.resumed
        else "completed"
    )
    click.echo(
        f"export {state}: {m['records']} records, {len(m['objects'])} objects, "
        f"{len(m['chains'])} chains -> {url}"
    )


@audit.command()
@_dsn_option
@click.option(
    "--keep-months",
    default=12,
    show_default=True,
    type=click.IntRange(1, 1200),
    help="Whole months to keep before the current one.",
)
@click.option("--dry-run", is_flag=True, help="List what would be dropped.")
def retention(dsn: str, keep_months: int, dry_run: bool) -> None:
    """Drop monthly partitions older than --keep-months (owner role; run monthly)."""
    import psycopg

    cutoff_sql = (
        "date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
        " - make_interval(months => %s)"
    )
    with psycopg.connect(dsn) as conn:
        if dry_run:
            rows = conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'haltgate.audit_records'::regclass"
                " AND c.relname ~ '^audit_records_[0-9]{6}$'"
                " AND to_date(substr(c.relname, 15), 'YYYYMM') + interval '1 month'"
                f" <= ({cutoff_sql}) AT TIME ZONE 'UTC' ORDER BY 1",
                (keep_months,),
            ).fetchall()
        else:
            rows = conn.execute(
                f"SELECT haltgate.audit_drop_partitions_before({cutoff_sql})", (keep_months,)
            ).fetchall()
    verb = "would drop" if dry_run else "dropped"
    for (name,) in rows:
        click.echo(f"{verb} haltgate.{name}")
    if not rows:
        click.echo("nothing to drop")


def _add_replay_commands() -> None:
    from haltgate.cli.explain import explain, replay

    audit.add_command(explain)
    audit.add_command(replay)


_add_replay_commands()
