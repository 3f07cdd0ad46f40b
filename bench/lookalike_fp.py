"""False positives of the injection detector on generated hard benign look-alikes
(`haltgate.testbed.lookalike_texts`, a development set), per kind and channel.

    nice .venv/bin/python bench/lookalike_fp.py [--part dev] [--n 2000] [--explain]
                                                [--model-dir DIR]

For each kind: the share of texts blocked by the patterns alone, by the n-gram fast stage
alone (at the text's channel threshold) and by both (the default detector), and which
pattern families fire. ``--explain`` prints every flagged text's family and matched words
(the set is generated and development-only, so printing it is fine).
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from haltgate.governance.guardrails import InjectionDetector, ngram, normalize
from haltgate.testbed import lookalike_texts as lk

SEED = {"train": 17, "calibration": 18, "dev": 4_711}
"""The dev part is drawn with a seed of its own; train and calibration as the trainer does."""


def _blocked(det: InjectionDetector, text: str, channel: str) -> list[str]:
    return [
        c.entity
        for c in det.detect(text, channel=channel)  # type: ignore[arg-type]
        if c.score >= 0.5 and not c.advisory
    ]


def top_ngrams(model: ngram.NgramModel, text: str, k: int = 8) -> list[tuple[str, float]]:
    """The character n-grams that push `text` (one window) most towards "injection": each
    n-gram's weight summed over its occurrences, largest first."""
    folded = normalize.fold(text)
    padded = f" {folded} "
    buckets = ngram.position_buckets(folded)
    weights = model._w  # a development bench reads the model's own table
    total: dict[str, float] = defaultdict(float)
    for row in range(buckets.shape[0]):
        n = ngram.NGRAM_MIN + row
        for pos in range(buckets.shape[1]):
            b = int(buckets[row, pos])
            if b < weights.shape[0] - 1:
                total[padded[pos : pos + n]] += float(weights[b])
    return sorted(total.items(), key=lambda kv: -kv[1])[:k]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("train", "calibration", "dev"), default="dev")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--explain", action="store_true")
    ap.add_argument("--model-dir", type=Path, default=None, help="another n-gram model")
    args = ap.parse_args(argv)
    model = (
        ngram.NgramModel.load()
        if args.model_dir is None
        else ngram.NgramModel.load(
            args.model_dir / ngram.WEIGHTS.name,
            args.model_dir / ngram.CALIBRATION.name,
            args.model_dir / ngram.MANIFEST.name,
        )
    )
    plain = InjectionDetector()
    fast = InjectionDetector(fast_model=model)
    texts = list(lk.generate(args.part, args.n, random.Random(SEED[args.part])))
    rows: dict[str, list[tuple[bool, bool, bool]]] = defaultdict(list)
    families: dict[str, Counter[str]] = defaultdict(Counter)
    for t in texts:
        pat = _blocked(plain, t.text, t.channel)
        fst = bool(model.score(t.text, t.channel).spans)  # type: ignore[arg-type]
        both = bool(_blocked(fast, t.text, t.channel))
        key = f"{t.kind} ({t.channel})"
        rows[key].append((bool(pat), fst, both))
        families[key].update(set(pat))
        if args.explain and (pat or fst):
            hits = [
                f"{c.entity}:{t.text[c.start : c.end][:60]!r}"
                for c in fast.detect(t.text, channel=t.channel)  # type: ignore[arg-type]
                if not c.advisory
            ]
            grams = ""
            if fst:
                span = max(model.score(t.text, t.channel).spans, key=lambda s: s.probability)  # type: ignore[arg-type]
                top = top_ngrams(model, t.text[span.start : span.end])
                grams = "\n    n-grams: " + ", ".join(f"{g!r} {w:+.2f}" for g, w in top)
            print(f"--- {key}: {'; '.join(hits)}{grams}\n{t.text[:400]}\n")
    print(f"thresholds {model.thresholds}; part {args.part}, {len(texts)} texts")
    print(f"{'kind (channel)':<34}{'n':>5}{'patterns':>10}{'fast':>8}{'both':>8}  families")
    total: list[tuple[bool, bool, bool]] = []
    for key in sorted(rows):
        r = rows[key]
        total.extend(r)
        rates = [sum(x[i] for x in r) / len(r) for i in range(3)]
        fams = ", ".join(f"{f} {n}" for f, n in families[key].most_common())
        print(f"{key:<34}{len(r):>5}" + "".join(f"{v:>9.1%}" for v in rates) + f"  {fams}")
    rates = [sum(x[i] for x in total) / len(total) for i in range(3)]
    print(f"{'all':<34}{len(total):>5}" + "".join(f"{v:>9.1%}" for v in rates))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
