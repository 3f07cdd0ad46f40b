"""Choice of the injection model stage, on VALIDATION splits and development sets only.

    .venv/bin/python bench/injection_model_choice.py [--limit N] [--latency]
        [--models NAME=SPEC,...] [--scores DIR] [--streams N]

Compares injection models per channel, by default stackone-defender's int8 MiniLM (read by
path through `onnx_model.load_stackone_scorer`) and haltgate's own fine-tuned int8 MiniLM
(shipped in guardrails/data/injection_model, `onnx_model.load_shipped_scorer`). ``--models``
names others: ``old=/path/to/model_dir`` (a folder laid out like the shipped one, checked
against its manifest), ``stackone``, ``shipped``. ``--scores DIR`` keeps each model's scores
in ``DIR/<name>.json`` and reuses them, so models can be scored in separate runs and
reported together. Sets:

- request: the s-labs and neuralchemy validation splits (read through
  `guard_corpora.load_training`, which refuses test splits) and the pattern stage's own benign
  corpus (tests/guardrails/data, in-domain agent traffic);
- document: the n-gram trainer's validation documents (held-apart Debian docs, code and
  generated tool output, with validation attacks planted in some) and its development benign
  texts (documents of the 'eval' part, tool output, texts discussing injections), built by
  `injection_model_data.build` with the training seed;
- the development sets of `injection_model_data.dev_sets` (never trained on, never used for
  thresholds): validation attacks planted in long held-apart documents with wrappers, the
  same documents alone and documents quoting attacks (benign); spikee-style documents (the
  development half of the unsealed spikee instructions in held-out wrappers, appended to a
  held-apart document); bare fragments of benign texts (what a stream piece looks like);
- the unseen-family development split (`injection_families_dev`, dev part, whole tool
  results, by channel): attack families under-represented in the corpora, two of them
  (``HELD_OUT``) never trained on, and benign texts of the same shapes; reported per family
  (detection at the threshold keeping false positives <= 1 % on the same set's benign texts
  of the channel, and at the shipped threshold) and per benign kind; never sampled down;
- the look-alike generator's dev part (`lookalike_texts`, all benign), per channel;
- benign streams (``--streams N``, default 150): held-apart benign texts streamed in random
  pieces through the guardrails' `StreamScanner` with the model as its model stage; a
  blocked stream is a false positive.

For each model and set it prints ROC AUC, detection at the threshold that keeps false
positives <= 1 % on that set's own benign texts, and detection / false positives at the
model's shipped threshold of the channel; then the same pooled per channel. ``--latency``
prints CPU ms per window and per 256-token text of both models, in the same run. The sealed
test splits are run once, afterwards, by bench/guardrails_public.py.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


@functools.cache
def _built() -> Any:
    """`injection_model_data.build` with the training seed (validation and dev sets)."""
    from haltgate.testbed import injection_model_data

    return injection_model_data.build(17)


def _sets(limit: int) -> dict[str, tuple[str, list[Row]]]:
    rng = random.Random(17)
    out: dict[str, tuple[str, list[Row]]] = {}
    for name in ("s-labs", "neuralchemy"):
        rows = [(r.text, r.label) for r in load_training(name, "validation")]
        out[f"{name} validation"] = ("request", rows)
    out["own benign corpus"] = (
        "request",
        [(s.text, False) for s in corpus.injection_samples() if not s.label],
    )
    built = _built()
    out["documents validation (planted attacks)"] = (
        "document",
        [(t.text, t.label) for t in built.val_document],
    )
    out["development benign (docs, tool output, discussions)"] = (
        "document",
        [(t.text, t.label) for t in built.dev_benign],
    )
    out["dev documents: planted in long documents, bases, quoting look-alikes"] = (
        "document",
        [(t.text, t.label) for t in built.dev_documents],
    )
    out["dev spikee-style documents"] = ("document", [(t.text, t.label) for t in built.dev_spikee])
    out["dev fragments of benign texts (request)"] = (
        "request",
        [(t.text, t.label) for t in built.dev_fragments],
    )
    out["dev fragments of benign texts (document)"] = (
        "document",
        [(t.text, t.label) for t in built.dev_fragments],
    )
    if limit:
        out = {k: (ch, rng.sample(v, min(limit, len(v)))) for k, (ch, v) in out.items()}
    for ch in ("request", "document"):
        out[f"{FAMILIES_SET} ({ch})"] = (
            ch,
            [(t.text, t.label) for t in built.dev_families if t.channel == ch],
        )
        out[f"dev look-alikes ({ch})"] = (
            ch,
            [(t.text, t.label) for t in built.dev_lookalikes if t.channel == ch],
        )
    return out


FAMILIES_SET = "dev families: unseen-family split"


def _family_names(channel: str) -> list[str]:
    """The family (attacks) or kind (benign) of each row of the families set of `channel`,
    in the order of `_sets`."""
    return [t.family for t in _built().dev_families if t.channel == channel]


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


def _load(spec: str) -> OnnxInjectionScorer:
    from haltgate.governance.guardrails import onnx_model

    if spec == "stackone":
        return onnx_model.load_stackone_scorer()
    if spec == "shipped":
        return onnx_model.load_shipped_scorer()
    return onnx_model.load_shipped_scorer(Path(spec))


def _models(arg: str) -> dict[str, str]:
    out = {}
    for item in arg.split(","):
        name, _, spec = item.partition("=")
        out[name] = spec or name
    return out


def _streams(n: int) -> list[str]:
    built = _built()
    rng = random.Random(23)
    texts = [t.text[:700] for t in built.dev_benign if t.source != "discussion"]
    texts += [r.text[:700] for r in load_training("s-labs", "validation") if not r.label]
    return rng.sample(texts, min(n, len(texts)))


def _stream_fp(scorer: OnnxInjectionScorer, texts: list[str]) -> tuple[int, int]:
    """(blocked streams, model reads) of benign `texts` streamed in random pieces through
    the guardrails with `scorer` as the injection detector's model stage (channel request:
    a model's answer)."""
    from haltgate.governance import policy_checks
    from haltgate.governance.guardrails import injection, onnx_model
    from haltgate.governance.guardrails.engine import DetectorSettings, Guardrails

    class Counted:
        reads = 0

        def limits(self, channel: str) -> onnx_model.Limits:
            return scorer.limits(channel)

        def __call__(self, text: str, channel: str = "request") -> float:
            self.reads += 1
            return scorer(text, channel)

    counted = Counted()
    det = injection.InjectionDetector(
        model=counted, model_thresholds=scorer.thresholds, model_min=scorer.block_at
    )
    spec = policy_checks.Detector.model_validate(
        {"enabled": True, "direction": "response", "action": "block"}
    )
    g = Guardrails([DetectorSettings.from_spec(det, spec)])
    rng = random.Random(29)
    blocked = 0
    for text in texts:
        s = g.stream("response", channel="request")
        pos = 0
        while pos < len(text) and not s.blocked:
            n = rng.randint(1, 24)
            s.feed(text[pos : pos + n])
            pos += n
        blocked += s.close().blocked
    return blocked, counted.reads


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=0, help="sample at most N rows per set")
    ap.add_argument("--latency", action="store_true", help="only: CPU ms per window (p50/p99)")
    ap.add_argument("--models", default="stackone,shipped", help="NAME=SPEC,... (see above)")
    ap.add_argument("--scores", type=Path, help="folder of per-model score files (reused)")
    ap.add_argument("--streams", type=int, default=150, help="benign streams per model")
    args = ap.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    models = _models(args.models)
    if args.latency:
        _latency({name: _load(spec) for name, spec in models.items()})
        return 0
    sets = _sets(args.limit)
    stream_texts = _streams(args.streams) if args.streams else []
    results: dict[str, dict[str, Any]] = {}
    for name, spec in models.items():
        cached = args.scores / f"{name}.json" if args.scores else None
        if cached is not None and cached.is_file():
            results[name] = json.loads(cached.read_text("utf-8"))
            continue
        scorer = _load(spec)
        res: dict[str, Any] = {
            "limits": {
                ch: [scorer.limits(ch).block, scorer.limits(ch).advisory]
                for ch in ("request", "document")
            },
            "sets": {},
        }
        for sname, (channel, rows) in sets.items():
            t0 = time.process_time()
            scores = [scorer(text, channel) for text, _ in rows]
            res["sets"][sname] = {
                "scores": scores,
                "ms": 1000 * (time.process_time() - t0) / max(len(rows), 1),
            }
            print(f"  scored {sname} with {name}", file=sys.stderr, flush=True)
        if stream_texts:
            res["streams"] = [*_stream_fp(scorer, stream_texts), len(stream_texts)]
        results[name] = res
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_text(json.dumps(res), "utf-8")
    _report(sets, results)
    return 0


def _report(sets: dict[str, tuple[str, list[Row]]], results: dict[str, dict[str, Any]]) -> None:
    pooled: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    for sname, (channel, rows) in sets.items():
        n_pos = sum(lab for _, lab in rows)
        print(f"\n## {sname} ({channel}): {n_pos} attacks / {len(rows) - n_pos} benign")
        for mname, res in results.items():
            got = res["sets"].get(sname)
            if got is None or len(got["scores"]) != len(rows):
                print(f"  {mname}: not scored on this set (rerun without its score file)")
                continue
            scores = got["scores"]
            pos = [s for s, (_, lab) in zip(scores, rows, strict=True) if lab]
            neg = [s for s, (_, lab) in zip(scores, rows, strict=True) if not lab]
            if not sname.startswith("dev "):
                pp, pn = pooled.setdefault((mname, channel), ([], []))
                pp.extend(pos)
                pn.extend(neg)
            block = res["limits"][channel][0]
            print(f"  {mname}: CPU {got['ms']:.1f} ms/text; {_line(pos, neg, block)}", flush=True)
    print("\n## pooled per channel (validation and the former development sets)")
    for (mname, channel), (pos, neg) in pooled.items():
        block = results[mname]["limits"][channel][0]
        print(
            f"  {channel}, {mname}: {len(pos)} attacks / {len(neg)} benign;",
            _line(pos, neg, block),
        )
    _report_families(sets, results)
    print("\n## benign streams (StreamScanner, model stage on whole units)")
    for mname, res in results.items():
        if "streams" in res:
            blocked, reads, n = res["streams"]
            print(f"  {mname}: blocked {blocked}/{n} benign streams ({reads} model reads)")


def _report_families(
    sets: dict[str, tuple[str, list[Row]]], results: dict[str, dict[str, Any]]
) -> None:
    """Per family and channel: detection at <= 1 % false positives on the set's benign texts
    of that channel, and detection at the shipped threshold (held-out families marked); per
    benign kind: false positives at the shipped threshold."""
    from haltgate.testbed import injection_families_dev as fam

    for channel in ("document", "request"):
        sname = f"{FAMILIES_SET} ({channel})"
        if sname not in sets:
            continue
        rows = sets[sname][1]
        names = _family_names(channel)
        print(f"\n## unseen-family split, per family ({channel}); * = never trained on")
        for mname, res in results.items():
            got = res["sets"].get(sname)
            if got is None or len(got["scores"]) != len(rows):
                print(f"  {mname}: not scored on this set")
                continue
            scores = got["scores"]
            neg = [s for s, (_, lab) in zip(scores, rows, strict=True) if not lab]
            t1 = _threshold_at(neg, 0.01)
            block = res["limits"][channel][0]
            cells = []
            for f in fam.FAMILIES:
                pos = [
                    s for s, (_, lab), n in zip(scores, rows, names, strict=True) if lab and n == f
                ]
                if pos:
                    star = "*" if f in fam.HELD_OUT else ""
                    cells.append(
                        f"{f}{star} {sum(s >= t1 for s in pos) / len(pos):.2f}"
                        f"/{sum(s >= block for s in pos) / len(pos):.2f} (n={len(pos)})"
                    )
            held = [
                s
                for s, (_, lab), n in zip(scores, rows, names, strict=True)
                if lab and n in fam.HELD_OUT
            ]
            print(
                f"  {mname}: det @1% FP (t={t1:.3f}) / at shipped t={block:.3f}: "
                + "; ".join(cells)
            )
            if held:
                d1 = sum(s >= t1 for s in held) / len(held)
                db = sum(s >= block for s in held) / len(held)
                print(
                    f"  {mname}: held-out families pooled: {d1:.3f} @1% FP, {db:.3f} at "
                    f"shipped t (n={len(held)})"
                )
            kinds = []
            for k in fam.BENIGN_KINDS:
                ks = [
                    s
                    for s, (_, lab), n in zip(scores, rows, names, strict=True)
                    if not lab and n == k
                ]
                if ks:
                    kinds.append(f"{k} {sum(s >= block for s in ks)}/{len(ks)}")
            print(f"  {mname}: benign kinds, FP at shipped t: " + "; ".join(kinds))


if __name__ == "__main__":
    raise SystemExit(main())
