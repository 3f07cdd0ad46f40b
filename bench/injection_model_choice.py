"""Choice of the injection model stage, on TRAIN/VALIDATION splits only (never test).

    .venv/bin/python bench/injection_model_choice.py [--split validation] [--limit N]

Compares the former model stage (frozen MiniLM + linear head, guardrails/model.py) with the
shipped one (stackone-defender's fine-tuned int8 MiniLM through onnxruntime,
guardrails/onnx_model.py) on the public sets' non-test splits, read through
haltgate.testbed.guard_corpora.load_training (which refuses test splits), plus the pattern
stage's own benign corpus (tests/guardrails/data, in-domain agent traffic). For each model it
prints ROC AUC, and detection at the threshold that keeps false positives <= 1 % on the
benign texts of the same split, alone and OR-ed with the blocking patterns. The thresholds
printed here are what the detector ships; the sealed test splits are run afterwards, once,
by bench/guardrails_public.py.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from haltgate.governance.guardrails import InjectionDetector
from haltgate.testbed.guard_corpora import Sample, load_training
from tests.guardrails import corpus


def _auc(pos: list[float], neg: list[float]) -> float:
    ranked = sorted([(s, 1) for s in pos] + [(s, 0) for s in neg])
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        avg = (i + j + 1) / 2
        rank_sum += avg * sum(lab for _, lab in ranked[i:j])
        i = j
    n_p, n_n = len(pos), len(neg)
    return (rank_sum - n_p * (n_p + 1) / 2) / (n_p * n_n) if n_p and n_n else float("nan")


def _threshold_at(neg: list[float], fp: float) -> float:
    """Smallest threshold t (score >= t flags) with at most `fp` of `neg` flagged."""
    allowed = int(fp * len(neg))
    ordered = sorted(neg, reverse=True)
    return ordered[allowed] + 1e-9 if allowed < len(ordered) else 0.0


def _latency(scorers: dict[str, Callable[[str], float]]) -> None:
    """CPU time (this thread) per text of about 256 tokens (~190 words of validation prose)."""
    words = " ".join(r.text for r in load_training("s-labs", "train")[:3000]).split()
    texts = [" ".join(words[i : i + 190]) for i in range(0, 190 * 60, 190)]
    for name, score in scorers.items():
        score(texts[0])  # warm-up
        ms = []
        for t in texts:
            t0 = time.thread_time()
            score(t)
            ms.append(1000 * (time.thread_time() - t0))
        ms.sort()
        print(
            f"{name}: {len(texts)} texts of ~256 tokens, CPU ms p50 {ms[len(ms) // 2]:.1f}"
            f" p99 {ms[min(len(ms) - 1, int(len(ms) * 0.99))]:.1f}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=["train", "validation"], default="validation")
    ap.add_argument("--limit", type=int, default=0, help="sample at most N rows per set")
    ap.add_argument("--quick", action="store_true", help="smoke run: --limit 100")
    ap.add_argument(
        "--latency",
        action="store_true",
        help="only: CPU ms per full 256-token window of each model (p50/p99)",
    )
    args = ap.parse_args(argv)
    if args.quick and not args.limit:
        args.limit = 100
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    from haltgate.governance.guardrails import model, onnx_model

    scorers: dict[str, Callable[[str], float]] = {
        "old: frozen MiniLM + head": model.load_default_scorer(),
        "new: stackone int8 MiniLM (shipped)": onnx_model.load_default_scorer(),
    }
    if args.latency:
        _latency(scorers)
        return 0
    patterns = InjectionDetector()
    sets: dict[str, list[Sample]] = {}
    rng = random.Random(17)
    for name in ("s-labs", "neuralchemy"):
        rows = load_training(name, args.split)
        if args.limit and len(rows) > args.limit:
            rows = rng.sample(rows, args.limit)
        sets[f"{name} {args.split}"] = rows
    sets["own benign corpus (in-domain)"] = [
        Sample(s.text, False, "request", "own") for s in corpus.injection_samples() if not s.label
    ]
    for sname, rows in sets.items():
        pat = [
            any(c.score >= 0.5 and not c.advisory for c in patterns.detect(r.text)) for r in rows
        ]
        n_pos = sum(r.label for r in rows)
        print(f"\n## {sname}: {n_pos} attacks / {len(rows) - n_pos} benign")
        pp = sum(p for p, r in zip(pat, rows, strict=True) if r.label)
        pn = sum(p for p, r in zip(pat, rows, strict=True) if not r.label)
        print(f"  patterns alone: detection {pp}/{n_pos}, FP {pn}/{len(rows) - n_pos}")
        for mname, score in scorers.items():
            t0 = time.process_time()
            scores = [score(r.text) for r in rows]
            ms = 1000 * (time.process_time() - t0) / max(len(rows), 1)
            pos = [s for s, r in zip(scores, rows, strict=True) if r.label]
            neg = [s for s, r in zip(scores, rows, strict=True) if not r.label]
            line = f"  {mname}: CPU {ms:.1f} ms/text"
            if pos and neg:
                t = _threshold_at(neg, 0.01)
                det = sum(s >= t for s in pos)
                comb_neg = [
                    max(s, 1.0 if p else 0.0)
                    for s, p, r in zip(scores, pat, rows, strict=True)
                    if not r.label
                ]
                tc = _threshold_at(comb_neg, 0.01)
                comb_det = sum(
                    s >= tc or p for s, p, r in zip(scores, pat, rows, strict=True) if r.label
                )
                comb_fp = sum(
                    s >= tc or p for s, p, r in zip(scores, pat, rows, strict=True) if not r.label
                )
                line += (
                    f", AUC {_auc(pos, neg):.3f}; alone @FP<=1%: t={t:.3f} detection "
                    f"{det}/{len(pos)} = {det / len(pos):.3f}; with patterns: t={tc:.3f}"
                    f" detection {comb_det / len(pos):.3f} FP {comb_fp / len(neg):.3f}"
                )
            for t_fixed in (0.5, 0.9, 0.95, 0.98):
                fpc = sum(s >= t_fixed for s in neg)
                line += (
                    f"\n      at t={t_fixed}: detection "
                    f"{(sum(s >= t_fixed for s in pos) / len(pos)) if pos else 0:.3f}"
                    f" FP {fpc}/{len(neg)}"
                )
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
