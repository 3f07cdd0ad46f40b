"""Leave-one-family-out evaluation of the character n-gram injection model: for every attack
family of the training data, fit without it and measure its detection at <= 1 % false
positives on a benign pool of more than 5,000 texts.

    nice -n 10 .venv/bin/python -m haltgate.testbed.ngram_family_holdout [--families a,b]
        [--c 4] [--class-weight balanced] [--small 20] [--json OUT]

The texts are the trainer's (`ngram_training.build` + `with_requests`, seed 17), featurised
once. Families with fewer than ``--small`` attacks are held out together as one unit.
For a held-out family F, every training text of F is dropped: neuralchemy's rows
labelled F, the attacks of F planted in documents and the discussion texts quoting them, and
for ``jailbreak`` spikee's jailbreak templates. F's attacks of neuralchemy's train *and*
validation splits are then never fitted on, and all of them are scored (request channel).

Benign pool (never fitted on; thresholds of the shipped model are not used): neuralchemy and
s-labs validation benign texts, the generated requests' calibration and dev parts, and the
trainer's evaluation documents (Debian man pages and docs, code, generated tool output,
discussion texts). The threshold is the strictest at which <= 1 % of the pool scores at or
above it (an ROC point), per held-out model.

Caveat, written in docs/guardrails.md too: only neuralchemy labels families; s-labs'
4,786 training attacks carry no family and stay in every fit, so a family that s-labs also
holds is not fully unseen.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path

import numpy as np

from haltgate.testbed import ngram_training as tr
from haltgate.testbed.ngram_training_data import Text

DERIVED = ("neuralchemy", "planted", "discussion", "spikee")
"""Sources whose ``family`` names an attack family (the text is, quotes or plants one)."""


def families(sets: dict[str, list[Text]]) -> Counter[str]:
    """Attack families of neuralchemy's train + validation rows, with their counts."""
    rows = [t for k in ("train", "val_request") for t in sets[k]]
    return Counter(t.family for t in rows if t.label and t.source == "neuralchemy")


def holdout_units(
    fams: Counter[str], chosen: list[str], small: int
) -> list[tuple[str, frozenset[str]]]:
    """(name, families) held out per fit: each family with at least `small` attacks alone,
    the others together (too few attacks each for a rate); or just the chosen ones."""
    if chosen:
        return [(f, frozenset({f})) for f in chosen]
    big = sorted((f for f in fams if fams[f] >= small), key=lambda f: (-fams[f], f))
    rest = frozenset(f for f in fams if fams[f] < small)
    units = [(f, frozenset({f})) for f in big]
    if rest:
        units.append((f"{len(rest)} small families together: " + ", ".join(sorted(rest)), rest))
    return units


def benign_pool(sets: dict[str, list[Text]]) -> list[Text]:
    pool = [t for t in sets["val_request"] if not t.label]
    pool += sets["requests_dev"] + sets["eval_benign"]
    return pool


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--c", type=float, default=4.0)
    ap.add_argument("--class-weight", choices=("balanced",), default=None)
    ap.add_argument("--words", type=float, default=tr.WORDS, help="word uni/bigram weight")
    ap.add_argument("--mine", type=float, default=tr.MINE, help="hard-negative weight")
    ap.add_argument("--families", default="", help="comma-separated; default: every family")
    ap.add_argument(
        "--small",
        type=int,
        default=20,
        help="families with fewer attacks are held out together, as one unit",
    )
    ap.add_argument("--json", type=Path, default=None, help="write the table here too")
    args = ap.parse_args(argv)
    np.random.seed(args.seed)
    random.seed(args.seed)
    sets = tr.with_requests(tr.build(args.seed, None))
    fams = families(sets)
    units = holdout_units(fams, [f for f in args.families.split(",") if f], args.small)
    train = sets["train"]
    x, y, owner = tr.featurize(train, args.words)
    weights = tr.window_weights(train, owner)
    pool = benign_pool(sets)
    print(f"train windows {x.shape[0]}; benign pool {len(pool)}", flush=True)
    rows: list[dict[str, object]] = []
    full_q, full_scale, full_bias = tr.fit(
        x, y, args.c, args.seed, args.class_weight, weights, args.mine
    )
    full = tr.ngram.NgramModel(
        full_q, full_scale, full_bias, {"request": 0.5, "document": 0.5}, words=args.words
    )
    full_benign = tr.text_scores(full, pool)
    for name, held_out in units:
        dropped = np.asarray([t.family in held_out and t.source in DERIVED for t in train], bool)
        keep = ~dropped[owner]
        q, scale, bias = tr.fit(
            x[keep], y[keep], args.c, args.seed, args.class_weight, weights[keep], args.mine
        )
        model = tr.ngram.NgramModel(
            q, scale, bias, {"request": 0.5, "document": 0.5}, words=args.words
        )
        attacks = [
            t
            for k in ("train", "val_request")
            for t in sets[k]
            if t.label and t.source == "neuralchemy" and t.family in held_out
        ]
        unseen = tr.at_fp(tr.text_scores(model, pool), tr.text_scores(model, attacks), 0.01)
        held = set(attacks)
        seen_val = [t for t in sets["val_request"] if t in held]
        seen = tr.at_fp(full_benign, tr.text_scores(full, seen_val), 0.01)
        row = {
            "family": name,
            "attacks": len(attacks),
            "dropped_train_texts": int(dropped.sum()),
            "unseen_detection": unseen["detection"],
            "unseen_fp": unseen["fp_rate"],
            "seen_validation_attacks": len(seen_val),
            "seen_detection": seen["detection"],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    n = sum(int(str(r["attacks"])) for r in rows)
    pooled = sum(float(str(r["unseen_detection"])) * int(str(r["attacks"])) for r in rows)
    summary = {
        "benign_pool": len(pool),
        "benign_sources": dict(Counter(t.source for t in pool)),
        "C": args.c,
        "class_weight": args.class_weight,
        "words": args.words,
        "hard_negative_mining": args.mine,
        "attacks": n,
        "pooled_unseen_detection": round(pooled / max(1, n), 4),
        "macro_unseen_detection": round(
            float(np.mean([float(str(r["unseen_detection"])) for r in rows])), 4
        ),
    }
    print(json.dumps(summary, indent=1), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps({"summary": summary, "families": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
