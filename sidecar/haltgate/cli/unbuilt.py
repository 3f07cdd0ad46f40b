"""Subcommands that later work fills in. Each says so and exits 2."""

from __future__ import annotations

import click

_PLANNED: dict[str, str] = {}


def _make(name: str, summary: str) -> click.Command:
    @click.command(
        name=name,
        help=f"{summary}\n\nNot built yet in this version: exits 2.",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )
    def command() -> None:
        click.echo(f"haltgate {name}: not built yet in this version", err=True)
        raise SystemExit(2)

    return command


COMMANDS: list[click.Command] = [_make(n, s) for n, s in _PLANNED.items()]
