"""The sealed loader of the public corpora (haltgate.testbed.guard_corpora): training code gets
train and validation splits, never a test split nor an evaluation-only set."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import pathlib
import sys

import pytest

from haltgate.testbed import guard_corpora
from haltgate.testbed.guard_corpora import (
    CorpusError,
    EvaluationSeal,
    SealedSplitError,
    load_sealed_test,
    load_training,
)

TRAINING = "haltgate.governance.guardrails.training"


@pytest.mark.parametrize("name", ["s-labs", "neuralchemy"])
def test_training_code_gets_no_test_split(name: str) -> None:
    with pytest.raises(SealedSplitError) as e:
        load_training(name, "test")
    assert e.value.field == "split"


@pytest.mark.parametrize("name", ["bastioncorpus", "spikee"])
def test_evaluation_only_sets_are_sealed_whole(name: str) -> None:
    for split in ("train", "validation", "test"):
        with pytest.raises(SealedSplitError) as e:
            load_training(name, split)
        assert e.value.field == "name"


def test_training_splits_are_served_from_the_package() -> None:
    rows = load_training("s-labs", "validation")
    assert len(rows) > 2000
    assert {r.label for r in rows} == {True, False}
    nc = load_training("neuralchemy", "validation")
    assert len(nc) > 900 and {r.label for r in nc} == {True, False}


def test_unknown_set_and_split_are_named() -> None:
    with pytest.raises(CorpusError) as e:
        load_training("garak", "train")
    assert e.value.field == "name"
    with pytest.raises(CorpusError) as e:
        load_training("s-labs", "dev")
    assert e.value.field == "split"


def test_seal_cannot_be_forged() -> None:
    with pytest.raises(SealedSplitError):
        EvaluationSeal("me")
    with pytest.raises(SealedSplitError):
        load_sealed_test("s-labs", object())  # type: ignore[arg-type]


def test_seal_refused_while_training_code_is_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, TRAINING, importlib.import_module(TRAINING))
    with pytest.raises(SealedSplitError) as e:
        EvaluationSeal.open("a training run")
    assert e.value.field == "seal"


def test_open_seal_refuses_once_training_code_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    for m in guard_corpora.TRAINING_MODULES:
        monkeypatch.delitem(sys.modules, m, raising=False)
    seal = EvaluationSeal.open("tests")
    rows = load_sealed_test("bastioncorpus", seal)
    assert {r.label for r in rows} == {True, False}
    monkeypatch.setitem(sys.modules, TRAINING, importlib.import_module(TRAINING))
    with pytest.raises(SealedSplitError):
        load_sealed_test("s-labs", seal)


def test_other_package_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    pinned = guard_corpora.SETS["s-labs"]
    monkeypatch.setitem(guard_corpora.SETS, "s-labs", dataclasses.replace(pinned, version="0.0.1"))
    with pytest.raises(CorpusError) as e:
        load_training("s-labs", "train")
    assert e.value.field == "version"


OWN_SETS = {
    "sealed4": guard_corpora.SEALED4,
    "sealed5": guard_corpora.SEALED5,
    "sealed6": guard_corpora.SEALED6,
    "sealed7": guard_corpora.SEALED7,
}


@pytest.mark.parametrize("name", sorted(OWN_SETS))
def test_own_sealed_set_is_refused_to_training_by_name(name: str) -> None:
    for split in ("train", "validation", "test"):
        with pytest.raises(SealedSplitError) as e:
            load_training(name, split)
        assert e.value.field == "name"
        assert name in str(e.value)


@pytest.mark.parametrize("name", sorted(OWN_SETS))
def test_own_sealed_set_parses_with_both_labels_in_both_channels(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for m in guard_corpora.TRAINING_MODULES:
        monkeypatch.delitem(sys.modules, m, raising=False)
    rows = load_sealed_test(name, EvaluationSeal.open("tests"))
    for channel in ("request", "document"):
        labels = [r.label for r in rows if r.channel == channel]
        assert sum(labels) >= 40 and labels.count(False) >= 40, channel
    assert all(r.text.strip() and r.family for r in rows)


@pytest.mark.parametrize("name", sorted(OWN_SETS))
def test_own_sealed_set_edited_file_is_refused(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    rel = OWN_SETS[name]
    src = guard_corpora.REPO / rel
    copy = tmp_path / rel
    copy.parent.mkdir(parents=True)
    copy.write_bytes(src.read_bytes() + b"\n")
    monkeypatch.setattr(guard_corpora, "REPO", tmp_path)
    for m in guard_corpora.TRAINING_MODULES:
        monkeypatch.delitem(sys.modules, m, raising=False)
    with pytest.raises(CorpusError) as e:
        load_sealed_test(name, EvaluationSeal.open("tests"))
    assert e.value.field == "version"


@pytest.mark.parametrize("name", ["sealed5", "sealed6", "sealed7"])
def test_own_sealed_set_pin_is_the_file_sha256(name: str) -> None:
    s = guard_corpora.SETS[name]
    assert s.eval_only and s.path == OWN_SETS[name]
    data = (guard_corpora.REPO / OWN_SETS[name]).read_bytes()
    assert hashlib.sha256(data).hexdigest()[:16] == s.version


def test_sealed6_holds_150_attacks_and_150_lookalikes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Counts only: no text is printed or compared."""
    for m in guard_corpora.TRAINING_MODULES:
        monkeypatch.delitem(sys.modules, m, raising=False)
    rows = load_sealed_test("sealed6", EvaluationSeal.open("tests"))
    assert sum(r.label for r in rows) >= 150
    assert sum(not r.label for r in rows) >= 150


def test_sealed7_counts_per_channel_and_label(monkeypatch: pytest.MonkeyPatch) -> None:
    """Counts only: no text is printed or compared."""
    for m in guard_corpora.TRAINING_MODULES:
        monkeypatch.delitem(sys.modules, m, raising=False)
    rows = load_sealed_test("sealed7", EvaluationSeal.open("tests"))
    counts = {
        (channel, label): sum(r.channel == channel and r.label is label for r in rows)
        for channel in ("request", "document")
        for label in (True, False)
    }
    assert counts == {
        ("request", True): 101,
        ("request", False): 100,
        ("document", True): 100,
        ("document", False): 100,
    }


def test_sealed7_sha256_is_pinned_in_full() -> None:
    """The whole digest, not only the 16-digit pin the loader checks."""
    data = (guard_corpora.REPO / guard_corpora.SEALED7).read_bytes()
    assert hashlib.sha256(data).hexdigest() == (
        "4c3dd80236aeec01a35d46396090c30258f95bd2f39132f46ac4d93d29111734"
    )
    assert guard_corpora.SETS["sealed7"].version == hashlib.sha256(data).hexdigest()[:16]


def test_bench_selects_sealed7_and_counts_it_without_scanning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--sets sealed7` (without --sealed: counts only, no detector, no text printed); the
    default of --sets, which --sealed uses, is every set of SETS, sealed7 included."""
    for m in guard_corpora.TRAINING_MODULES:
        monkeypatch.delitem(sys.modules, m, raising=False)
    spec = importlib.util.spec_from_file_location(
        "guardrails_public_bench_sealed7", guard_corpora.REPO / "bench" / "guardrails_public.py"
    )
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)
    spec.loader.exec_module(bench)
    assert bench.main(["--sets", "sealed7"]) == 0
    out = capsys.readouterr().out
    assert "sealed7 (haltgate (repository)==4c3dd80236aeec01, CC0): 401 rows, 201 attacks" in out
    assert "sealed7" in guard_corpora.SETS
