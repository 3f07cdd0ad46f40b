"""``haltgate audit``: migrate, ship, verify, query, export and serve the audit trail.

Exit codes: 0 success; 1 the command ran and found a problem (a broken chain, a failed
export check); 2 usage error.
"""

from __future__ import annotations

import logging
import signal
import sys
from datetime import datetime
from pathlib import Path

import click
import orjson

from haltgate.cli.audit_options import DSN_ENV, TIME, count_option, dsn_option
from haltgate.cli.audit_query import cost, history, query


@click.group(name="audit")
def audit() -> None:
    """Query, verify and export the audit trail; ship the spool; migrate the database."""


@audit.command()
@dsn_option
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
@dsn_option
# 20_000 is shipper.DEFAULT_BATCH_RECORDS, written out so that `--help` imports no psycopg.
@count_option("--batch", default=20_000, most=100000, help="Records per COPY transaction.")
@count_option(
    "--lanes",
    default=2,
    most=2,
    help="Batches in flight, each on its own connection, while there is a backlog (in "
    "spool order, exactly once; the second connection closes once caught up; 1: one "
    "connection always).",
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
    lanes: int,
    once: bool,
    metrics_port: int | None,
    metrics_addr: str,
    drain_seconds: float,
) -> None:
    """Ship spooled records to PostgreSQL until stopped (SIGTERM/SIGINT)."""
    import psycopg

    from haltgate.governance.audit.shipper import Shipper, ShipperSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    shipper = Shipper(
        ShipperSettings(directory=spool_dir, dsn=dsn, batch_records=batch, lanes=lanes)
    )
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


@audit.command()
@dsn_option
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
@dsn_option
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
@count_option("--records-per-object", default=50000, most=10_000_000)
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
@dsn_option
@count_option(
    "--keep-months", default=12, most=1200, help="Whole months to keep before the current one."
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


def _add_commands() -> None:
    from haltgate.cli.explain import explain, replay

    for command in (query, history, cost, explain, replay):
        audit.add_command(command)


_add_commands()
