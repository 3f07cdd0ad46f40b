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
    "--dsn", envvar=DSN_ENV, required=True, metavar="DSN",
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

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> datetime:
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
@click.option("--spool", "spool_dir", required=True, type=click.Path(path_type=Path),
              help="Spool directory written by the sidecar.")
@_dsn_option
@click.option("--batch", default=5000, show_default=True, type=click.IntRange(1, 100000),
              help="Records per COPY transaction.")
@click.option("--once", is_flag=True, help="Ship what is spooled now, then exit.")
@click.option("--metrics-port", type=int, default=None,
              help="Serve Prometheus metrics on this port.")
def ship(spool_dir: Path, dsn: str, batch: int, once: bool, metrics_port: int | None) -> None:
    """Ship spooled records to PostgreSQL until stopped (SIGTERM/SIGINT)."""
    from haltgate.governance.audit.shipper import Shipper, ShipperSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    shipper = Shipper(ShipperSettings(directory=spool_dir, dsn=dsn, batch_records=batch))
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, registry=shipper.metrics.registry)
    try:
        if once:
            shipped = shipper.drain(timeout=3600)
            click.echo(f"shipped {shipped} records")
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: shipper.stop())
        shipper.run()
    finally:
        shipper.close()


@audit.command()
@click.option("--dsn", envvar=DSN_ENV, default=None, metavar="DSN",
              help=f"Verify the chains in PostgreSQL. Env: {DSN_ENV}.")
@click.option("--export", "export_url", default=None, metavar="URL",
              help="Verify an export instead: s3://bucket/prefix or a local directory.")
@click.option("--endpoint-url", default=None, help="S3-compatible endpoint (with --export).")
@click.option("--chain", "chain_id", default=None, help="Only this chain.")
@click.option("--since", type=TIME, default=None, help="Only records at or after (ISO/epoch).")
@click.option("--until", type=TIME, default=None, help="Only records before (ISO/epoch).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(dsn: str | None, export_url: str | None, endpoint_url: str | None,
           chain_id: str | None, since: datetime | None, until: datetime | None,
           as_json: bool) -> None:
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
