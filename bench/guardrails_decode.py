"""Development benchmark of decoding in the injection detector (issue 17 item 3).

    .venv/bin/python bench/guardrails_decode.py [--model] [--n 200] [--skip-benign] [--json F]
                                                [--quick]

Development data only (tuning is allowed on all of it; none of it is held-out):
- ``encoded dev``: tests/guardrails/data/encoded_dev.jsonl through corpus.encoded_dev():
  32 attacks and 24 benign texts, each under two encodings and contexts, plus 16 benign
  encoded blobs (images, gzip, JWT, Kubernetes Secret, keys, certificates, hex dumps, ...).
- ``public dev, encoded``: rows of the s-labs and neuralchemy *train and validation* splits
  holding a span `decode.decode_spans` finds (read through guard_corpora.load_training, which
  never serves a test split).
- ``public dev, benign``: every benign row of those train and validation splits (9,501
  texts): the false-positive rate on >= 5,000 benign texts.

Plus fast-stage latency (pattern stage, no model) p50/p99 per 4 KB: the injection detector
alone and all three detectors through ``Guardrails.scan``, on trigger-dense benign text,
standard-library source, and benign text carrying encoded blobs.

The script uses only the public guardrails API, so the same file measures the tree before
decode.py existed (put that tree first on PYTHONPATH).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.guardrails import _code_texts, _latency, _texts
from haltgate.cli.guard import _restrict, default_spec
from haltgate.governance.guardrails import Guardrails, InjectionDetector
from haltgate.testbed import guard_corpora
from haltgate.testbed.guard_corpora import Sample
from tests.guardrails import corpus


def _guard(detectors: list[str], *, model: bool = False) -> Guardrails:
    spec = _restrict(default_spec(), detectors)
    if spec.prompt_injection is not None:  # patterns (+ model): the fast stage stays off
        knobs = {"model": model, "fast_model": False}
        spec = spec.model_copy(
            update={"prompt_injection": spec.prompt_injection.model_copy(update=knobs)}
        )
    return Guardrails.from_spec(spec)


def _rate(hits: int, n: int) -> str:
    return f"{hits / n:.3f} ({hits}/{n})" if n else "-"


def _span_finder() -> Callable[[str], bool]:
    """`decode.decode_spans` of this checkout, loaded by path (it imports nothing of ours), so
    a run against an older tree on PYTHONPATH selects the same public rows."""
    path = (
        Path(__file__)
        .resolve()
        .parent.parent.joinpath("governance", "haltgate", "governance", "guardrails", "decode.py")
    )
    spec = importlib.util.spec_from_file_location("_bench_decode", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["_bench_decode"] = mod
    spec.loader.exec_module(mod)
    return lambda text: bool(mod.decode_spans(text, kinds=mod.ALL_KINDS))


def _public(split_label: bool | None) -> list[Sample]:
    rows: list[Sample] = []
    for name in ("s-labs", "neuralchemy"):
        for split in ("train", "validation"):
            rows.extend(
                r
                for r in guard_corpora.load_training(name, split)
                if split_label is None or r.label == split_label
            )
    return rows


def quality(configs: dict[str, Guardrails], skip_benign: bool, report: dict[str, object]) -> None:
    dev = [(s.text, s.label, s.kind) for s in corpus.encoded_dev()]
    has_span = _span_finder()
    sets: dict[str, list[tuple[str, bool, str]]] = {
        "encoded dev": dev,
        "public dev, encoded": [
            (r.text, r.label, r.channel) for r in _public(None) if has_span(r.text)
        ],
    }
    if not skip_benign:
        sets["public dev, benign"] = [(r.text, False, r.channel) for r in _public(False)]
    for sname, rows in sets.items():
        pos = sum(r[1] for r in rows)
        print(f"\n## {sname}: {pos} attacks / {len(rows) - pos} benign")
        print(f"{'config':<16}{'detection':>22}{'FP rate':>22}{'any finding: det':>24}{'FP':>20}")
        for cname, g in configs.items():
            tp = fp = atp = afp = 0
            per_kind: dict[str, list[int]] = {}
            flagged_benign: list[str] = []
            for text, label, kind in rows:
                r = g.scan(text, "request")
                if label:
                    tp += r.blocked
                    atp += bool(r.findings)
                    per_kind.setdefault(kind, [0, 0])[0] += r.blocked
                    per_kind[kind][1] += 1
                else:
                    fp += r.blocked
                    afp += bool(r.findings)
                    if r.blocked:
                        flagged_benign.append(kind)
            pos = sum(r[1] for r in rows)
            neg = len(rows) - pos
            print(
                f"{cname:<16}{_rate(tp, pos):>22}{_rate(fp, neg):>22}"
                f"{_rate(atp, pos):>24}{_rate(afp, neg):>20}"
            )
            if sname == "encoded dev":
                print(
                    "   per encoding (blocked): "
                    + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in sorted(per_kind.items()))
                )
                if flagged_benign:
                    print(f"   benign blocked: {', '.join(flagged_benign)}")
            report[f"{sname} / {cname}"] = {
                "tp": tp,
                "fp": fp,
                "pos": pos,
                "neg": neg,
                "any_tp": atp,
                "any_fp": afp,
            }


def _encoded_texts(size: int, count: int, seed: int) -> list[str]:
    """Benign agent text with encoded look-alikes (images, JWTs, base64 text) mixed in."""
    rng = random.Random(seed)
    benign = [s.text for s in corpus.injection_samples() if not s.label and s.kind == "benign"]
    blobs = [t for _, t in corpus.dev_blobs()]
    out = []
    for _ in range(count):
        parts: list[str] = []
        while sum(len(p) + 1 for p in parts) < size:
            parts.append(rng.choice(blobs)[:1200] if rng.random() < 0.3 else rng.choice(benign))
        out.append(" ".join(parts)[:size])
    return out


def latency(n: int, report: dict[str, object]) -> None:
    inj = InjectionDetector()
    allg = _guard(["prompt_injection", "pii", "secrets"])
    print("\n## fast stage, CPU ms per 4 KB text (p50 / p99)")
    for label, texts in (
        ("4 KB trigger-dense benign", _texts(4096, n, seed=4096)),
        ("4 KB stdlib source", _code_texts(4096, n, seed=7)),
        ("4 KB with encoded blobs", _encoded_texts(4096, n, seed=11)),
    ):
        a = _latency(inj.detect, texts, 3)
        b = _latency(lambda t: allg.scan(t, "request"), texts, 3)
        print(f"{label:<28} injection {a[0]:.2f} / {a[1]:.2f}   all three {b[0]:.2f} / {b[1]:.2f}")
        report[f"latency {label}"] = {"injection": a, "all": b}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="store_true", help="also patterns + model stage")
    ap.add_argument("--n", type=int, default=200, help="texts per latency row")
    ap.add_argument("--skip-benign", action="store_true", help="skip the 9,501 benign rows")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--quick", action="store_true", help="(make bench) --n 50 --skip-benign")
    args = ap.parse_args()
    if args.quick:
        args.n, args.skip_benign = 50, True
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    configs = {"patterns": _guard(["prompt_injection"])}
    if args.model:
        configs["patterns+model"] = _guard(["prompt_injection"], model=True)
    report: dict[str, object] = {}
    if not args.skip_quality:
        quality(configs, args.skip_benign, report)
    latency(args.n, report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
