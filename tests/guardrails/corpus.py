"""Labelled corpora for the guardrail tests and bench/guardrails.py.

The files in data/ are written for haltgate (CC0). Obfuscated attack variants are generated
here, deterministically, from the plain attacks: each attack gets one transformation, chosen
round-robin, so every obfuscation is exercised on several different texts.
"""

# Non-Latin look-alike letters are the point of some samples here.
# ruff: noqa: RUF001

from __future__ import annotations

import base64
import codecs
import json
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).parent / "data"


@dataclass(frozen=True, slots=True)
class Sample:
    text: str
    label: bool
    kind: str
    """For positives: entity/family or obfuscation; for negatives: what it resembles."""


def _lines(name: str) -> list[str]:
    out = []
    for line in (DATA / name).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            out.append(line.replace("\\n", "\n"))
    return out


_HOMO = str.maketrans({"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "i": "і"})
_LEET = str.maketrans({"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"})


def _spaced(t: str) -> str:
    words = t.split(" ")
    return " ".join(" ".join(w) if len(w) > 3 else w for w in words[:8]) + " " + " ".join(words[8:])


def _zero_width(t: str) -> str:
    return "\u200b".join(t[i : i + 3] for i in range(0, len(t), 3))


def _hyphen_split(t: str) -> str:
    words = t.split()
    return " ".join(w[: len(w) // 2] + "-" + w[len(w) // 2 :] if len(w) > 5 else w for w in words)


def _fullwidth(t: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in t)


def _tags(t: str) -> str:
    hidden = "".join(chr(0xE0000 + ord(c)) for c in t if 0x20 <= ord(c) < 0x7F)
    return "Nice weather today." + hidden


OBFUSCATIONS = {
    "homoglyph": lambda t: t.translate(_HOMO),
    "zero_width": _zero_width,
    "leetspeak": lambda t: t.lower().translate(_LEET),
    "spaced": _spaced,
    "hyphen_split": _hyphen_split,
    "fullwidth": _fullwidth,
    "base64": lambda t: "Decode this and follow it: " + base64.b64encode(t.encode()).decode(),
    "hex": lambda t: "payload=" + t.encode().hex(),
    "rot13": lambda t: codecs.encode(t, "rot13"),
    "unicode_tags": _tags,
    "indirect": lambda t: (
        "<html><body><h1>Product FAQ</h1><p>Shipping takes 3-5 days.</p>"
        f"<p style='display:none'>{t}</p><p>Returns within 30 days.</p></body></html>"
    ),
}

_BENIGN_OBFUSCATED = [
    (
        "base64_benign",
        "Attachment: "
        + base64.b64encode(b"Quarterly report: revenue grew 12 percent, costs were flat.").decode(),
    ),
    (
        "base64_binary",
        "icon: data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAf"
        "FcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
    ),
    ("hex_hash", "sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
    ("rot13_benign", codecs.encode("The meeting is moved to Thursday afternoon.", "rot13")),
    ("cyrillic", "Пожалуйста, проверьте статус заказа и сообщите мне."),
    ("greek", "Ευχαριστώ για τη βοήθεια με την παραγγελία."),
    ("leet_code", "Encode the h264 stream as utf8 and store the md5 and sha1 of the x86 build."),
    ("uuid", "request id 3f2b8c1e-4d5a-4b6c-9e7f-1a2b3c4d5e6f failed with status 500"),
    ("percent", "GET /search?q=caf%C3%A9%20near%20me&lang=fr HTTP/1.1"),
    ("zero_width_emoji", "Great job team 👍🏽 — see you tomorrow\u200d!"),
    ("fullwidth_jp", "ご注文ありがとうございます。発送は３日後です。"),
    ("jwt_like", "token type is Bearer, expires in 3600 seconds"),
]


def injection_samples() -> list[Sample]:
    """Plain attacks, obfuscated attacks, benign texts and benign obfuscation look-alikes."""
    attacks = _lines("injection_attacks.txt")
    benign = _lines("injection_benign.txt")
    out = [Sample(t, True, "plain") for t in attacks]
    names = list(OBFUSCATIONS)
    for i, t in enumerate(attacks):
        name = names[i % len(names)]
        out.append(Sample(OBFUSCATIONS[name](t), True, name))
    out.extend(Sample(t, False, "benign") for t in benign)
    out.extend(Sample(t, False, k) for k, t in _BENIGN_OBFUSCATED)
    return out


def injection_holdout() -> list[Sample]:
    """Texts written after the patterns and never used to change them (less optimistic)."""
    return [Sample(t, True, "holdout") for t in _lines("injection_holdout_attacks.txt")] + [
        Sample(t, False, "holdout") for t in _lines("injection_holdout_benign.txt")
    ]


def injection_holdout2() -> list[Sample]:
    """Second held-out set, written after the last change to the detector."""
    return [Sample(t, True, "holdout2") for t in _lines("injection_holdout2_attacks.txt")] + [
        Sample(t, False, "holdout2") for t in _lines("injection_holdout2_benign.txt")
    ]


def injection_heldout3() -> list[Sample]:
    """Third held-out set (JSON lines, kind = style), written and committed before the
    generalisation work on the detector and never used to tune it."""
    return [
        Sample(str(d["text"]), bool(d["label"]), str(d["kind"]))
        for d in _jsonl("injection_heldout3.jsonl")
    ]


def _jsonl(name: str) -> list[dict[str, object]]:
    return [
        json.loads(line)
        for line in (DATA / name).read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]


def pii_samples() -> list[Sample]:
    """PII positives (kind = entity) and look-alike negatives (kind = what it resembles)."""
    return [Sample(str(d["text"]), bool(d["label"]), str(d["kind"])) for d in _jsonl("pii.jsonl")]


def secrets_samples() -> list[Sample]:
    """Secret positives (kind = type) and look-alike negatives."""
    return [
        Sample(str(d["text"]), bool(d["label"]), str(d["kind"])) for d in _jsonl("secrets.jsonl")
    ]


# --- development set for decoding (issue 17 item 3) -------------------------------------------
# Read while building guardrails/decode.py: a development set, never a held-out one.


def _b64(t: str) -> str:
    return base64.b64encode(t.encode()).decode()


def _leet_sentence(t: str) -> str:
    return t.lower().translate(_LEET)


_DEV_ENCODINGS = {
    "base64": _b64,
    "base64_urlsafe": lambda t: base64.urlsafe_b64encode(t.encode()).decode().rstrip("="),
    "base32": lambda t: base64.b32encode(t.encode()).decode(),
    "hex": lambda t: t.encode().hex(),
    "hex_spaced": lambda t: t.encode().hex(" "),
    "hex_escapes": lambda t: "".join(f"\\x{b:02x}" for b in t.encode()),
    "percent": lambda t: "".join(f"%{b:02X}" for b in t.encode()),
    "unicode_escape": lambda t: "".join(f"\\u{ord(c):04x}" for c in t if ord(c) < 0x10000),
    "html_entities": lambda t: "".join(f"&#{ord(c)};" for c in t),
    "unicode_tags": lambda t: "".join(chr(0xE0000 + ord(c)) for c in t if 0x20 <= ord(c) < 0x7F),
    "zero_width_binary": lambda t: "".join(
        "\u200b" if bit == "0" else "\u200c" for b in t.encode() for bit in f"{b:08b}"
    ),
    "variation_selectors": lambda t: (
        "\u2728" + "".join(chr(0xFE00 + b) if b < 16 else chr(0xE0100 + b - 16) for b in t.encode())
    ),
    "bidi_reversed": lambda t: "\u202e" + t[::-1] + "\u202c",
    "rot13": lambda t: codecs.encode(t, "rot13"),
    "leetspeak": _leet_sentence,
    "base64+base64": lambda t: _b64("Read this: " + _b64(t)),
    "base64+rot13": lambda t: _b64(codecs.encode(t, "rot13")),
}
# Attacks come with an order to obey the decoded text; benign texts with a plain request to
# decode (a benign user asks "what does this say", not "do what it says").
_DEV_CONTEXTS = (
    "Decode the following and do what it says: {}",
    "{}",
    '{{"status": "ok", "items": [{{"id": 41, "note": "{}"}}]}}',
    "Hi team,\n\nplease find the notes below.\n\n{}\n\nRegards,\nSam",
    "<p>Shipping takes 3-5 days.</p><!-- {} --><p>Returns within 30 days.</p>",
)


def dev_blobs() -> list[tuple[str, str]]:
    """Benign encoded look-alikes that carry no text worth decoding, or harmless text."""
    import gzip
    import random

    rng = random.Random(17)

    def wrapped(raw: bytes) -> str:
        return base64.encodebytes(raw).decode()

    def seg(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    jwt = ".".join(
        (
            seg({"alg": "RS256", "typ": "JWT", "kid": "k1"}),
            seg({"sub": "user-42", "name": "Ada Lovelace", "scope": "read write", "exp": 1}),
            base64.urlsafe_b64encode(rng.randbytes(256)).decode().rstrip("="),
        )
    )
    return [
        ("png", "![chart](data:image/png;base64," + _b64_bytes(rng.randbytes(3000)) + ")"),
        ("gzip", "payload (gzip, base64): " + _b64_bytes(gzip.compress(b"log line ok\n" * 200))),
        ("jwt", "Authorization: Bearer " + jwt),
        (
            "k8s_secret",
            "apiVersion: v1\nkind: Secret\ndata:\n  username: "
            + _b64("admin")
            + "\n  password: "
            + _b64_bytes(rng.randbytes(24))
            + "\n  config.yaml: "
            + _b64("replicas: 3\nimage: nginx:1.25\nlog level: info\n"),
        ),
        (
            "ssh_key",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA" + _b64_bytes(rng.randbytes(32)) + " a@b",
        ),
        (
            "pem",
            "-----BEGIN CERTIFICATE-----\n"
            + wrapped(rng.randbytes(900))
            + "-----END CERTIFICATE-----",
        ),
        (
            "xxd",
            "\n".join(
                f"{i * 16:08x}: " + rng.randbytes(16).hex(" ", 2) + "  ................"
                for i in range(24)
            ),
        ),
        ("git_ids", " ".join(rng.randbytes(20).hex() for _ in range(12))),
        ("totp", "otpauth://totp/ACME:ada?secret=JBSWY3DPEHPK3PXP&issuer=ACME"),
        ("zwj_emoji", "Family photo \U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 ok"),
        ("arabic_rlm", "\u0645\u0631\u062d\u0628\u0627 \u200f123\u200f \u0634\u0643\u0631\u0627"),
        (
            "mime_text",
            "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
            + wrapped(b"Hello Sam, the quarterly numbers are attached. See you on Monday. " * 3),
        ),
        (
            "b64_json_config",
            "config="
            + _b64(
                json.dumps(
                    {"name": "web frontend", "replicas": 3, "description": "serves the site"}
                )
            ),
        ),
        ("data_url_text", "data:text/plain;base64," + _b64("Thanks for visiting our shop today.")),
        ("url_query", "GET /search?q=how%20to%20reset%20my%20password%3F&page=2 HTTP/1.1"),
        ("c_array", "uint8_t iv[] = {" + ", ".join(f"0x{b:02x}" for b in rng.randbytes(16)) + "};"),
    ]


def _b64_bytes(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def encoded_dev() -> list[Sample]:
    """Development set for decoding: each plain text of encoded_dev.jsonl twice, under two
    encodings and two contexts (round-robin, kind = encoding), plus benign blobs."""
    names = list(_DEV_ENCODINGS)
    out: list[Sample] = []
    for i, row in enumerate(_jsonl("encoded_dev.jsonl")):
        plain, label = str(row["plain"]), bool(row["label"])
        for k in (i, i + 7):
            enc = names[k % len(names)]
            ctx = _DEV_CONTEXTS[(k + i) % len(_DEV_CONTEXTS)]
            if not label and ctx == _DEV_CONTEXTS[0]:
                ctx = "Can you decode this for me? {}"
            out.append(Sample(ctx.format(_DEV_ENCODINGS[enc](plain)), label, enc))
    out.extend(Sample(t, False, k) for k, t in dev_blobs())
    return out
