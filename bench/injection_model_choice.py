"""Choice of the injection model stage, on VALIDATION splits and development sets only.

    .venv/bin/python bench/injection_model_choice.py [--limit N] [--latency]

Compares stackone-defender's int8 MiniLM (the default model stage, read by path through
`onnx_model.load_stackone_scorer`) with haltgate's own fine-tuned int8 MiniLM (shipped in
guardrails/data/injection_model, `onnx_model.load_shipped_scorer`), per channel:

- request: the s-labs and neuralchemy validation splits (read through
  `guard_corpora.load_training`, which refuses test splits) and the pattern stage's own benign
  corpus (tests/guardrails/data, in-domain agent traffic);
- document: the n-gram trainer's validation documents (held-apart Debian docs, code and
  generated tool output, with validation attacks planted in some) and its development benign
  texts (documents of the 'eval' part, tool output, texts discussing injections), built by
  `injection_model_data.build` with the training seed.

For each model and set it prints ROC AUC, detection at the threshold that keeps false
positives <= 1 % on that set's own benign texts, and detection / false positives at the
model's shipped threshold of the channel; then the same pooled per channel. ``--latency``
prints CPU ms per window and per 256-token text of both models, in the same run. The sealed
test splits are run once, afterwards, by bench/guardrails_public.py.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from haltgate.testbed.guard_corpora import load_training
from haltgate.testbed.roc import roc_auc
from tests.guardrails import corpus

if TYPE_CHECKING:
    from haltgate.governance.guardrails.onnx_model import OnnxInjectionScorer

Row = tuple[str, bool]  # text, is an attack


def _threshold_at(neg: list[float], fp: float) -> float:
    """Smallest threshold t (score >= t flags) with at most `fp` of `neg` flagged."""
    allowed = int(fp * len(neg))
    ordered = sorted(neg, reverse=True)
    return ordered[allowed] + 1e-9 if allowed < len(ordered) else 0.0


def _cpu_ms(score: Callable[[str], float], texts: list[str]) -> tuple[float, float]:
    score(texts[0])  # warm-up
    ms = []
    for t in texts:
        t0 = time.thread_time()
        score(t)
        ms.append(1000 * (time.thread_time() - t0))
    ms.sort()
    return ms[len(ms) // 2], ms[min(len(ms) - 1, int(len(ms) * 0.99))]


def _latency(scorers: dict[str, OnnxInjectionScorer]) -> None:
    """CPU time (this thread) per full window and per text of ~256 tokens."""
    words = " ".join(r.text for r in load_training("s-labs", "train")[:3000]).split()
    long_texts = [" ".join(words[i : i + 190]) for i in range(0, 190 * 60, 190)]
    for name, scorer in scorers.items():
        n = scorer.settings.max_tokens
        windows = [" ".join(words[i : i + int(n * 0.7)]) for i in range(0, 60 * n, n)]
        w50, w99 = _cpu_ms(scorer, windows)
        t50, t99 = _cpu_ms(scorer, long_texts)
        print(
            f"{name}: CPU ms per {n}-token window p50 {w50:.1f} p99 {w99:.1f}; "
            f"per ~256-token text p50 {t50:.1f} p99 {t99:.1f}",
            flush=True,
        )


def _sets(limit: int) -> dict[str, tuple[str, list[Row]]]:
    from haltgate.testbed import injection_model_data

    rng = random.Random(17)
    out: dict[str, tuple[str, list[Row]]] = {}
    for name in ("s-labs", "neuralchemy"):
        rows = [(r.text, r.label) for r in load_training(name, "validation")]
        out[f"{name} validation"] = ("request", rows)
    out["own benign corpus"] = (
        "request",
        [(s.text, False) for s in corpus.injection_samples() if not s.label],
    )
    built = injection_model_data.build(17)
    out["documents validation (planted attacks)"] = (
        "document",
        [(t.text, t.label) for t in built.val_document],
    )
    out["development benign (docs, tool output, discussions)"] = (
        "document",
        [(t.text, t.label) for t in built.dev_benign],
    )
    if limit:
        out = {k: (ch, rng.sample(v, min(limit, len(v)))) for k, (ch, v) in out.items()}
    return out


def _line(pos: list[float], neg: list[float], block: float) -> str:
    parts = []
    if pos and neg:
        t = _threshold_at(neg, 0.01)
        det = sum(s >= t for s in pos) / len(pos)
        parts.append(f"AUC {roc_auc(pos, neg):.3f}, detection @FP<=1% {det:.3f} (t={t:.3f})")
    if pos:
        parts.append(
            f"at shipped t={block:.3f}: detection {sum(s >= block for s in pos) / len(pos):.3f}"
        )
    if neg:
        parts.append(f"FP {sum(s >= block for s in neg)}/{len(neg)}")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=0, help="sample at most N rows per set")
    ap.add_argument("--latency", action="store_true", help="only: CPU ms per window (p50/p99)")
    args = ap.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    from haltgate.governance.guardrails import onnx_model

    scorers = {
        "stackone int8 MiniLM (default)": onnx_model.load_stackone_scorer(),
        "haltgate fine-tuned int8 MiniLM (shipped, not default)": onnx_model.load_shipped_scorer(),
    }
    if args.latency:
        _latency(scorers)
        return 0
    sets = _sets(args.limit)
    pooled: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    for sname, (channel, rows) in sets.items():
        n_pos = sum(lab for _, lab in rows)
        print(f"\n## {sname} ({channel}): {n_pos} attacks / {len(rows) - n_pos} benign")
        for mname, scorer in scorers.items():
            t0 = time.process_time()
            scores = [scorer(text, channel) for text, _ in rows]
            ms = 1000 * (time.process_time() - t0) / max(len(rows), 1)
            pos = [s for s, (_, lab) in zip(scores, rows, strict=True) if lab]
            neg = [s for s, (_, lab) in zip(scores, rows, strict=True) if not lab]
            pp, pn = pooled.setdefault((mname, channel), ([], []))
            pp.extend(pos)
            pn.extend(neg)
            block = scorer.limits(channel).block
            print(f"  {mname}: CPU {ms:.1f} ms/text; {_line(pos, neg, block)}", flush=True)
    print("\n## pooled per channel")
    for (mname, channel), (pos, neg) in pooled.items():
        block = scorers[mname].limits(channel).block
        print(
            f"  {channel}, {mname}: {len(pos)} attacks / {len(neg)} benign;",
            _line(pos, neg, block),
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
