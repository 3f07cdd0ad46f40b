"""``haltgate policy``: work with GovernancePolicy and BudgetPool documents."""

from __future__ import annotations

import click

from haltgate.governance.validation import PolicyFileError, load_documents, validate_document


@click.group()
def policy() -> None:
    """Validate and test GovernancePolicy / BudgetPool documents."""


@policy.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--quiet", "-q", is_flag=True, help="Print errors only.")
def validate(files: tuple[str, ...], quiet: bool) -> None:
    """Check FILES (YAML, as for kubectl apply) against the schema and semantic rules.

    Prints every problem with its field path. Exits 1 if any document is invalid.
    """
    failed = False
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                docs = load_documents(f.read(), path)
        except OSError as e:
            click.echo(f"{path}: cannot read: {e.strerror}", err=True)
            failed = True
            continue
        except PolicyFileError as e:
            for issue in e.issues:
                click.echo(f"{path}: {issue}", err=True)
            failed = True
            continue
        if not docs:
            click.echo(f"{path}: no documents", err=True)
            failed = True
        for index, doc in enumerate(docs):
            result = validate_document(doc)
            name = doc.get("metadata", {}).get("name", "?") if isinstance(doc, dict) else "?"
            kind = doc.get("kind", "?") if isinstance(doc, dict) else "?"
            where = f"{path}[{index}] {kind}/{name}" if len(docs) > 1 else f"{path} {kind}/{name}"
            for issue in result.issues:
                label = "warning" if issue.warning else "error"
                click.echo(f"{where}: {label}: {issue}", err=True)
            if result.ok:
                if not quiet:
                    click.echo(f"{where}: valid")
            else:
                failed = True
    raise SystemExit(1 if failed else 0)
