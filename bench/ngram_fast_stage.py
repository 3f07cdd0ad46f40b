"""The character n-gram fast stage (guardrails/ngram.py): false positives on >= 5,000 benign
in-domain texts it was never fitted or calibrated on, and its latency per 4 KB.

    nice .venv/bin/python bench/ngram_fast_stage.py [--limit N] [--latency-only] [--quick]

Benign texts (none read by training or threshold choice; documents are assigned to
train / validation / eval by a hash of their name, `ngram_training_data.part_of`, and only
the "eval" part is used here):
- Debian man pages and /usr/share/doc files of this machine (eval part, every page);
- generated tool output (JSON, logs, shell listings, HTML) from a seed training never uses;
- the own benign corpus (tests/guardrails/data/injection_benign.txt, agent traffic full of
  "ignore", "system", "instructions");
- generated benign agent requests (`benign_requests`, dev templates only: neither the fit nor
  the thresholds saw them), drawn with this bench's seed;
- the own development set 3's and held-out sets' benign and attack texts (detection too).

For each: FP of the patterns alone (blocked), the fast stage alone, and patterns + fast stage
(blocked), so the cost of turning ``promptInjection.fastModel`` on is visible.
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from haltgate.governance.guardrails import InjectionDetector, ngram
from haltgate.governance.guardrails.base import Channel
from haltgate.testbed import benign_requests
from haltgate.testbed import ngram_synthetic as syn
from haltgate.testbed import ngram_training_data as data
from tests.guardrails import corpus

EVAL_SEED = 90_210  # training uses 17
REQUEST_SETS = frozenset({"own benign corpus", "generated requests (dev)"})
"""Benign sets of request text (what an agent sends); the others are documents."""


def benign_sets(limit: int) -> dict[str, list[str]]:
    rng = random.Random(EVAL_SEED)
    out: dict[str, list[str]] = {"debian man pages": [], "debian docs": [], "tool output": []}
    for p in sorted(Path("/usr/share/man").glob("man[1578]/*.gz")):
        if data.part_of(p.name) != "eval" or len(out["debian man pages"]) >= limit:
            continue
        try:
            body = data.man_text(p)
        except (OSError, EOFError, ValueError):
            continue
        out["debian man pages"].extend(data.chunks(body, rng, 1))
    for q in sorted(Path("/usr/share/doc").glob("*/*")):
        if not q.is_file() or data.part_of(str(q)) != "eval" or len(out["debian docs"]) >= limit:
            continue
        try:
            raw = q.read_bytes()
            body = (gzip.decompress(raw) if q.suffix == ".gz" else raw).decode("utf-8", "replace")
        except (OSError, EOFError, ValueError):
            continue
        out["debian docs"].extend(data.chunks(body, rng, 2))
    pages = out["debian man pages"]
    for i in range(min(limit, 1500)):
        gen = (syn.json_output, syn.log_output, syn.shell_output)[i % 4] if i % 4 < 3 else None
        out["tool output"].append(gen(rng) if gen else syn.html_page(rng, rng.choice(pages)))
    out["own benign corpus"] = [s.text for s in corpus.injection_samples() if not s.label]
    out["generated requests (dev)"] = [
        r.text for r in benign_requests.generate("dev", min(limit, 1500), rng)
    ]
    return out


def _rate(flags: list[bool]) -> str:
    return f"{sum(flags) / max(1, len(flags)):.4f} ({sum(flags)}/{len(flags)})"


def _pct(ts: list[float]) -> str:
    ts = sorted(ts)
    return f"{ts[len(ts) // 2] * 1000:.2f} / {ts[int(len(ts) * 0.99)] * 1000:.2f}"


def latency(model: ngram.NgramModel, n: int) -> None:
    src = Path(os.__file__).parent
    texts = []
    for f in sorted(src.glob("*.py"))[:n]:
        body = f.read_text("utf-8", "replace")
        if len(body) >= 4096:
            texts.append(body[:4096])
    dense = " ".join(corpus._lines("injection_benign.txt"))[:4096]
    plain = InjectionDetector()
    fast = InjectionDetector(fast_model=model)
    print("\nCPU ms per 4 KB (p50 / p99), thread time on one core:")
    for name, docs in (("stdlib source", texts), ("trigger-dense benign text", [dense] * n)):
        for label, fn in (
            ("fast stage alone", lambda t: model.score(t, "document")),
            ("patterns", plain.detect),
            ("patterns + fast stage", fast.detect),
        ):
            fn(docs[0])
            ts = []
            for t in docs:
                t0 = time.thread_time()
                fn(t)
                ts.append(time.thread_time() - t0)
            print(f"  {name:<28}{label:<24}{_pct(ts)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=4000, help="texts per benign source")
    ap.add_argument("--latency-only", action="store_true")
    ap.add_argument("--n", type=int, default=200, help="texts for latency")
    ap.add_argument("--quick", action="store_true", help="(make bench) latency of 30 texts only")
    ap.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="another model's three files (default: shipped)",
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.latency_only = 30, True
    model = (
        ngram.NgramModel.load()
        if args.model_dir is None
        else ngram.NgramModel.load(
            args.model_dir / ngram.WEIGHTS.name,
            args.model_dir / ngram.CALIBRATION.name,
            args.model_dir / ngram.MANIFEST.name,
        )
    )
    print(f"thresholds {model.thresholds}")
    latency(model, args.n)
    if args.latency_only:
        return 0
    plain = InjectionDetector()
    fast = InjectionDetector(fast_model=model)

    def blocked(det: InjectionDetector, channel: Channel = "request") -> Callable[[str], bool]:
        return lambda t: any(
            c.score >= 0.5 and not c.advisory for c in det.detect(t, channel=channel)
        )

    total = {"patterns": [], "fast stage alone": [], "patterns + fast stage": []}
    print(f"\n{'benign set':<24}{'n':>6}  {'patterns':>20}{'fast alone':>20}{'patterns+fast':>20}")
    for name, texts in benign_sets(args.limit).items():
        ch: Channel = "request" if name in REQUEST_SETS else "document"
        row = {
            "patterns": [blocked(plain)(t) for t in texts],
            "fast stage alone": [bool(model.score(t, ch).spans) for t in texts],
            "patterns + fast stage": [blocked(fast, ch)(t) for t in texts],
        }
        for k, v in row.items():
            total[k].extend(v)
        print(f"{name:<24}{len(texts):>6}  " + "".join(f"{_rate(v):>20}" for v in row.values()))
    n = len(total["patterns"])
    print(f"{'all benign':<24}{n:>6}  " + "".join(f"{_rate(v):>20}" for v in total.values()))
    print("\nown sets (detection / FP, blocked):")
    for name, samples in (
        ("own corpus", corpus.injection_samples()),
        ("held-out 1", corpus.injection_holdout()),
        ("held-out 2", corpus.injection_holdout2()),
        ("development set 3", corpus.injection_heldout3()),
    ):
        for label, fn in (("patterns", blocked(plain)), ("patterns+fast", blocked(fast))):
            pos = [fn(s.text) for s in samples if s.label]
            neg = [fn(s.text) for s in samples if not s.label]
            print(f"  {name:<20}{label:<16}{_rate(pos):>18}{_rate(neg):>18}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
