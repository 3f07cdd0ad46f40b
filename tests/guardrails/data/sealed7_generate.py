"""Writes tests/guardrails/data/injection_sealed7.jsonl (sealed held-out set 7).

    .venv/bin/python tests/guardrails/data/sealed7_generate.py

Seed 7; byte-for-byte reproducible. Evaluation only: nobody changing the detector opens this
file, the other ``sealed7_*.py`` modules or the output. Rows: ``text``, ``label`` (true: an
injection), ``channel`` (``request`` or ``document``), ``family``, ``kind`` (the carrier of a
tool result, or the obfuscation, or ``plain``), ``lang`` and ``placement``.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import sealed7_carriers as carriers  # noqa: E402
import sealed7_documents as documents  # noqa: E402
import sealed7_languages as languages  # noqa: E402
import sealed7_obfuscations as obf  # noqa: E402
import sealed7_requests as requests  # noqa: E402
import sealed7_requests_benign as requests_benign  # noqa: E402

OUT = HERE / "injection_sealed7.jsonl"
SEED = 7

# neutral second items for two-result tool turns (the same for both labels)
_NEUTRAL = [
    "Thanks, received.",
    "Meeting notes attached.",
    "Stock count updated at 09:00.",
    "No change since last week.",
    "Deployed to staging, smoke tests green.",
]


def _row(
    text: str, label: bool, channel: str, family: str, kind: str, lang: str, placement: str
) -> dict[str, object]:
    return {
        "text": text,
        "label": label,
        "channel": channel,
        "family": family,
        "kind": kind,
        "lang": lang,
        "placement": placement,
    }


class _Planter:
    """Plants inserts into carriers round-robin (shuffled per label), so every carrier holds
    attacks and look-alikes alike and says nothing about the label."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.order: dict[bool, list[str]] = {}

    def plant(self, insert: str, label: bool, second: bool = False) -> tuple[str, str, str]:
        if not self.order.get(label):
            names = sorted(carriers.CARRIERS)
            self.rng.shuffle(names)
            self.order[label] = names
        name = self.order[label].pop()
        text, placement = carriers.CARRIERS[name](insert, self.rng)
        if second:
            other = self.rng.choice([n for n in sorted(carriers.CARRIERS) if n != name])
            extra, _ = carriers.CARRIERS[other](self.rng.choice(_NEUTRAL), self.rng)
            pair = [text, extra] if self.rng.random() < 0.5 else [extra, text]
            text = "\n".join(pair)
            name = f"{name}+{other}"
        return text, name, placement


def build() -> list[dict[str, object]]:
    rng = random.Random(SEED)
    rows: list[dict[str, object]] = []
    # request channel
    for fam, lang, text in requests.REQUEST_ATTACKS + languages.REQ_ATTACKS:
        rows.append(_row(text, True, "request", fam, "plain", lang, "whole"))
    for name, plain, lead in obf.REQ_OBFUSCATED:
        body = plain if name == "word-substitution" else obf.OBFUSCATIONS[name](plain, rng)
        rows.append(_row(lead + body, True, "request", "obfuscated", name, "en", "whole"))
    for fam, lang, text in requests_benign.REQUEST_BENIGN + languages.REQ_BENIGN:
        rows.append(_row(text, False, "request", "lookalike/" + fam, "plain", lang, "whole"))
    for name, text in obf.REQ_ENCODED_BENIGN:
        rows.append(_row(text, False, "request", "lookalike/encoded", name, "en", "whole"))
    # document channel: inserts planted in tool results
    planter = _Planter(rng)
    doc_attacks = [(f, "en", t) for f, t in documents.DOC_ATTACKS] + languages.DOC_ATTACKS
    for fam, lang, text in doc_attacks:
        doc, kind, where = planter.plant(text, True)
        rows.append(_row(doc, True, "document", "indirect/" + fam, kind, lang, where))
    for name, plain, lead in obf.DOC_OBFUSCATED:
        body = plain if name == "word-substitution" else obf.OBFUSCATIONS[name](plain, rng)
        doc, kind, where = planter.plant(lead + body, True)
        rows.append(_row(doc, True, "document", "indirect/obfuscated-" + name, kind, "en", where))
    again = rng.sample(documents.DOC_ATTACKS, 18)
    for fam, text in again:
        doc, kind, where = planter.plant(text, True, second=True)
        rows.append(_row(doc, True, "document", "indirect/" + fam, kind, "en", where))
    doc_benign = [(f, "en", t) for f, t in documents.DOC_BENIGN] + languages.DOC_BENIGN
    for fam, lang, text in doc_benign:
        doc, kind, where = planter.plant(text, False)
        rows.append(_row(doc, False, "document", "lookalike/" + fam, kind, lang, where))
    for name, text in obf.DOC_ENCODED_BENIGN:
        doc, kind, where = planter.plant(text, False)
        rows.append(_row(doc, False, "document", "lookalike/encoded-" + name, kind, "en", where))
    for fam, text in obf.WHOLE_BENIGN_DOCS:
        doc = json.dumps(
            {"tool": "docs.read_page", "result": {"text": text}}, ensure_ascii=False, indent=1
        )
        rows.append(_row(doc, False, "document", "lookalike/" + fam, "docs-page", "en", "whole"))
    for fam, text in rng.sample(documents.DOC_BENIGN, 14):
        doc, kind, where = planter.plant(text, False, second=True)
        rows.append(_row(doc, False, "document", "lookalike/" + fam, kind, "en", where))
    rng.shuffle(rows)
    return rows


def main() -> None:
    rows = build()
    OUT.write_text(
        "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows),
        encoding="utf-8",
    )
    n = {(c, lab): 0 for c in ("request", "document") for lab in (True, False)}
    for r in rows:
        n[(str(r["channel"]), bool(r["label"]))] += 1
    print(
        f"{OUT.name}: {len(rows)} rows; "
        + ", ".join(f"{c}/{lab}: {k}" for (c, lab), k in n.items())
    )


if __name__ == "__main__":
    main()
