"""``haltgate audit query``, ``history`` and ``cost``: list records, and cost per agent."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click
import orjson

from haltgate.cli.audit_options import TIME, count_option, dsn_option

__all__ = ["cost", "history", "query"]


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


@click.command()
@dsn_option
@_filter_options
@count_option("--limit", default=100, most=1000, help="Records per page.")
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


@click.command()
@dsn_option
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


@click.command()
@dsn_option
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
