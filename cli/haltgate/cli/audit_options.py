"""Options shared by the ``haltgate audit`` commands: the DSN, times, counts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import click

__all__ = ["DSN_ENV", "TIME", "count_option", "dsn_option", "parse_time"]

DSN_ENV = "HALTGATE_AUDIT_DSN"
dsn_option = click.option(
    "--dsn",
    envvar=DSN_ENV,
    required=True,
    metavar="DSN",
    help=f"PostgreSQL connection string (libpq URI or key=value). Env: {DSN_ENV}.",
)


def count_option(
    *names: str, default: int, most: int, help: str | None = None
) -> Callable[[Any], Any]:
    """A whole-number option in ``[1, most]`` that shows its default in ``--help``."""
    return click.option(
        *names, default=default, show_default=True, type=click.IntRange(1, most), help=help
    )


def parse_time(value: str | None) -> datetime | None:
    """ISO 8601 (``2026-11-01``, ``2026-11-01T12:00:00Z``) or epoch seconds; UTC if naive."""
    from haltgate.governance.audit.query import parse_time as parse

    if value is None:
        return None
    try:
        return parse(value)
    except ValueError as e:
        raise click.BadParameter(f"not a time: {value!r} (ISO 8601 or epoch seconds)") from e


class _Time(click.ParamType):
    name = "TIME"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        parsed = parse_time(str(value))
        assert parsed is not None
        return parsed


TIME = _Time()
