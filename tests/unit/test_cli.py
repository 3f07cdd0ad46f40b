"""The ``haltgate`` CLI: help everywhere, documented exit codes, policy validate output."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from haltgate.cli.main import main

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(str(p) for p in (REPO / "docs" / "examples").glob("*.yaml"))
BROKEN = str(Path(__file__).parent / "testdata" / "policy-broken.yaml")
REQUIRED = {"operator", "sidecar", "audit", "guard", "policy", "demo", "iptables"}


def _commands(group: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    if isinstance(group, click.Group):
        ctx = click.Context(group)
        for name in group.list_commands(ctx):
            sub = group.get_command(ctx, name)
            assert sub is not None
            yield from _commands(sub, (*path, name))


ALL_COMMANDS = list(_commands(main))


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_every_planned_subcommand_exists() -> None:
    top = {path[0] for path in ALL_COMMANDS if path}
    assert REQUIRED <= top, f"missing: {REQUIRED - top}"


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "haltgate")
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_works_everywhere(path: tuple[str, ...], flag: str) -> None:
    code, out, _ = run(*path, flag)
    assert code == 0
    assert out.startswith("Usage: ")
    assert " ".join(("main", *path)).strip() in out.splitlines()[0] or path == ()


@pytest.mark.parametrize("group", [(), ("policy",)], ids=["haltgate", "policy"])
def test_bare_group_prints_usage_and_exits_2(group: tuple[str, ...]) -> None:
    code, _, err = run(*group)
    assert code == 2  # a usage error, as documented in haltgate.cli.main
    assert err.startswith("Usage: ")


def test_version() -> None:
    code, out, _ = run("--version")
    assert code == 0 and "version" in out


def test_unknown_command_is_a_usage_error() -> None:
    code, _, err = run("no-such-command")
    assert code == 2
    assert "No such command" in err


def test_policy_validate_examples_exit_0() -> None:
    code, out, err = run("policy", "validate", *EXAMPLES)
    assert code == 0, err
    assert out.count(": valid") == len(EXAMPLES)
    assert "error" not in err


def test_policy_validate_broken_exits_1_with_field_paths() -> None:
    code, out, err = run("policy", "validate", BROKEN)
    assert code == 1
    assert "valid" not in out
    for expected in (
        "spec.budgets.tokens.limit: must be >= 0",
        "spec.budgets.costUSD.period: must be one of",
        "spec.tools.default: must be one of",
        "spec.colour: unknown field",
    ):
        assert expected in err, err


def test_policy_validate_mixed_files_fails_but_reports_all() -> None:
    code, out, err = run("policy", "validate", EXAMPLES[0], BROKEN)
    assert code == 1
    assert "valid" in out and "spec.colour" in err


def test_policy_validate_quiet_prints_only_errors() -> None:
    code, out, _ = run("policy", "validate", "--quiet", *EXAMPLES)
    assert code == 0 and out == ""


def test_policy_validate_semantic_error_and_warning(tmp_path: Path) -> None:
    doc = tmp_path / "p.yaml"
    doc.write_text(
        "apiVersion: haltgate.dev/v1alpha1\nkind: GovernancePolicy\n"
        "metadata: {name: p}\nspec:\n  engine: {type: emocore}\n"
    )
    code, _, err = run("policy", "validate", str(doc))
    assert code == 1
    assert "error: spec.engine.profile: required when type is 'emocore'" in err
    assert "warning: spec.selector: empty selector" in err


def test_policy_validate_unreadable_and_bad_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("spec: [unclosed\n")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    code, _, err = run("policy", "validate", str(bad), str(empty), str(tmp_path / "missing.yaml"))
    assert code == 1
    assert "invalid YAML" in err
    assert "no documents" in err
    assert "cannot read" in err


def test_policy_validate_needs_a_file() -> None:
    code, _, err = run("policy", "validate")
    assert code == 2 and "Missing argument" in err
