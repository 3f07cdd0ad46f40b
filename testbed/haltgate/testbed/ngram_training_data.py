"""Training data of the character n-gram injection model (train and validation parts only).

Sources, each with its licence recorded in the manifest:

- labelled corpora through `guard_corpora.load_training` (s-labs, neuralchemy: train split to
  fit, validation split to choose thresholds; the loader refuses their test splits, and the
  evaluation-only sets bastioncorpus and spikee's sealed seeds are never read here);
- spikee templates that the sealed evaluation does not use (jailbreak templates and
  instructions absent from ``seeds-cybersec-2026-01``; never ``seeds-investment-advice-fp``);
- hard negatives: Debian man pages and package documentation of this machine, Python sources
  of installed packages, generated tool output (JSON, HTML, logs, shell listings) and texts
  that discuss or quote injections (benign);
- indirect injections: training attacks planted inside those documents.

Every generated text comes from a `random.Random` seeded by the caller. Documents are
assigned to train / validation / eval-benign by a hash of their path, so the 5,000-text
benign FP set never overlaps the training documents. garak and agentdojo are never read.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path

from haltgate.testbed.guard_corpora import load_training

Part = str  # "train" | "validation" | "eval"


@dataclass(frozen=True, slots=True)
class Text:
    text: str
    label: bool
    channel: str  # "request" | "document"
    source: str
    family: str = ""


def part_of(key: str) -> Part:
    """Stable split of a document by name: 70 % train, 10 % validation, 20 % eval."""
    b = hashlib.sha256(key.encode()).digest()[0] % 10
    return "train" if b < 7 else "validation" if b < 8 else "eval"


# ---------------------------------------------------------------- Debian docs and man pages

_ROFF_REQ = re.compile(r"^\.[A-Za-z\\\"].*$", re.M)
_ROFF_ESC = re.compile(r"\\f[BIRP]|\\f\(..|\\\(..|\\[-&e|^ ]|\\s[-+]?\d")


def man_text(path: Path) -> str:
    raw = gzip.decompress(path.read_bytes()).decode("utf-8", "replace")
    if raw.startswith(".so "):
        return ""
    text = _ROFF_ESC.sub("", _ROFF_REQ.sub("", raw))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def chunks(text: str, rng: random.Random, n: int) -> list[str]:
    """Up to n paragraph-aligned pieces of 200..1800 characters."""
    paras = [p.strip() for p in re.split(r"\n\s*\n", text) if len(p.strip()) > 40]
    out: list[str] = []
    i = 0
    while i < len(paras) and len(out) < n:
        size = rng.choice((250, 500, 900, 1800))
        buf = ""
        while i < len(paras) and len(buf) < size:
            buf = f"{buf}\n\n{paras[i]}" if buf else paras[i]
            i += 1
        out.append(buf[: size + 400])
        i += rng.randint(0, 3)
    return out


def debian_docs(rng: random.Random, limit: int) -> Iterator[tuple[Part, Text, str]]:
    """(part, text, package-or-path) from /usr/share/man and /usr/share/doc."""
    mans = sorted(Path("/usr/share/man").glob("man[1578]/*.gz"))
    rng.shuffle(mans)
    count = 0
    for p in mans:
        if count >= limit:
            break
        try:
            body = man_text(p)
        except (OSError, EOFError, ValueError):
            continue
        for c in chunks(body, rng, 2):
            count += 1
            yield part_of(p.name), Text(c, False, "document", "debian-man"), p.name
    docs = sorted(
        q
        for q in Path("/usr/share/doc").glob("*/*")
        if q.is_file()
        and re.search(r"README|NEWS|TODO|FAQ|changelog|copyright|\.txt|\.md|\.rst", q.name)
    )
    for q in docs:
        if count >= 2 * limit:
            return
        try:
            raw = q.read_bytes()
            body = (gzip.decompress(raw) if q.suffix == ".gz" else raw).decode("utf-8", "replace")
        except (OSError, EOFError, ValueError):
            continue
        for c in chunks(body, rng, 3):
            count += 1
            yield part_of(str(q)), Text(c, False, "document", "debian-doc"), q.parent.name


def debian_licence(package: str) -> str:
    """First License: field of the package's machine-readable copyright file."""
    try:
        text = Path(f"/usr/share/doc/{package}/copyright").read_text("utf-8", "replace")
    except OSError:
        return "unknown"
    m = re.search(r"^License:\s*(\S.*)$", text, re.M)
    return m.group(1).strip() if m else "see /usr/share/doc/<package>/copyright"


# ---------------------------------------------------------------- code of installed packages

CODE_PACKAGES = ("pip", "aiohttp", "pydantic", "kopf", "yarl", "multidict", "attrs")


def python_code(rng: random.Random, per_package: int) -> Iterator[tuple[Part, Text, str]]:
    for pkg in CODE_PACKAGES:
        try:
            files = sorted(f for f in (metadata.files(pkg) or []) if str(f).endswith(".py"))
        except metadata.PackageNotFoundError:
            continue
        rng.shuffle(files)
        for f in files[:per_package]:
            try:
                body = Path(str(f.locate())).read_text("utf-8", "replace")
            except OSError:
                continue
            start = rng.randrange(max(1, len(body) - 1500))
            piece = body[start : start + rng.choice((300, 800, 1500))]
            if len(piece) > 80:
                yield part_of(str(f)), Text(piece, False, "document", f"code:{pkg}"), pkg


def package_licence(pkg: str) -> str:
    try:
        md = metadata.metadata(pkg)
    except metadata.PackageNotFoundError:
        return "not installed"
    lic = md["License-Expression"] or md["License"] or ""
    if not lic or len(lic) > 60:
        lic = next(
            (c.split("::")[-1].strip() for c in md.get_all("Classifier") or [] if "License" in c),
            "see package",
        )
    return lic


# ---------------------------------------------------------------- labelled corpora


def corpus(name: str, split: str) -> list[Text]:
    return [Text(s.text, s.label, s.channel, name, s.family) for s in load_training(name, split)]


_SPIKEE = "data/workspace/datasets/"
_SEALED_SPIKEE = "seeds-cybersec-2026-01"


def _spikee_rows(path: str) -> list[dict[str, str]]:
    raw = resources.files("spikee").joinpath(_SPIKEE + path).read_text("utf-8")
    return [json.loads(x) for x in raw.splitlines() if x.strip()]


def spikee_unsealed() -> tuple[list[str], list[str]]:
    """(jailbreak templates, instructions) of spikee that the sealed evaluation never uses:
    anything whose text or id appears in its sealed seed set is dropped; English only."""
    root = resources.files("spikee").joinpath(_SPIKEE)
    sealed_j = _spikee_rows(f"{_SEALED_SPIKEE}/jailbreaks.jsonl")
    sealed_i = _spikee_rows(f"{_SEALED_SPIKEE}/instructions.jsonl")
    skip_text = {r["text"].strip().lower() for r in sealed_j}
    skip_id = {r["id"] for r in sealed_j}
    skip_instr = {r["instruction"].strip().lower() for r in sealed_i}
    templates: dict[str, None] = {}
    instructions: dict[str, None] = {}
    for d in sorted(x.name for x in root.iterdir()):
        if d in (_SEALED_SPIKEE, "seeds-investment-advice-fp") or d.startswith("zzz_"):
            continue
        if d in ("seeds-harmful-instructions-only",):  # harmful requests, not injections
            continue
        if root.joinpath(d, "jailbreaks.jsonl").is_file():
            for r in _spikee_rows(f"{d}/jailbreaks.jsonl"):
                t = r["text"]
                if r.get("lang") or t.strip().lower() in skip_text or r["id"] in skip_id:
                    continue
                templates[t] = None
        if root.joinpath(d, "instructions.jsonl").is_file():
            for r in _spikee_rows(f"{d}/instructions.jsonl"):
                i = r["instruction"]
                if r.get("lang") or i.strip().lower() in skip_instr:
                    continue
                instructions[i] = None
    return list(templates), list(instructions)


def own_benign() -> list[Text]:
    """The pattern stage's benign corpus (tests/guardrails of this checkout: trigger-dense
    agent texts written for haltgate): the n-gram request threshold and the model export's
    evaluation read it; nothing is fitted on it."""
    root = str(Path(__file__).resolve().parents[3])
    if root not in sys.path:
        sys.path.append(root)
    from tests.guardrails import corpus

    return [
        Text(s.text, False, "request", "own-benign")
        for s in corpus.injection_samples()
        if not s.label
    ]
