"""The test bed builds its own Go upstream (testbed/goupstream) on demand, cached by the
hash of its source: built once, reused while the source is unchanged, rebuilt when it
changes, and a broken source is a TestbedError with the compiler's words."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from haltgate.testbed import binaries
from haltgate.testbed.errors import TestbedError


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HALTGATE_BIN_CACHE", str(tmp_path / "cache"))
    copy = tmp_path / "goupstream"
    shutil.copytree(binaries.GO_UPSTREAM_SOURCE, copy)
    return copy


def test_built_once_and_rebuilt_when_the_source_changes(source: Path, tmp_path: Path) -> None:
    first = binaries.go_upstream(source)
    assert first.parent == tmp_path / "cache"
    assert first.name == f"goupstream-{binaries.source_digest(source)[:16]}"
    built = first.stat().st_mtime_ns
    assert binaries.go_upstream(source) == first
    assert first.stat().st_mtime_ns == built  # reused, not rebuilt

    main = source / "main.go"
    main.write_text(main.read_text() + "\n// a change\n")
    second = binaries.go_upstream(source)
    assert second != first and second.is_file()


def test_a_broken_source_is_a_testbed_error(source: Path) -> None:
    (source / "main.go").write_text("package main\n\nfunc main() { undefined() }\n")
    with pytest.raises(TestbedError, match=r"(?s)go build .* failed.*undefined"):
        binaries.go_upstream(source)
    assert not list((source.parent / "cache").glob("goupstream-*"))
