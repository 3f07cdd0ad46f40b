"""Finding and decoding encoded spans inside a text, so the detectors can rescan what they hide.

`decode_spans(text)` returns every encoded run of `text` that decodes to readable text, with
the run's offsets in `text` (so a finding in the decoded text can point at the original) and
the name of its encoding:

| encoding | found as |
|---|---|
| ``base64`` | standard or URL-safe alphabet, mixed case, also wrapped over lines (MIME, PEM) |
| ``base32`` | RFC 4648 upper-case alphabet ``A-Z2-7`` |
| ``hex`` | ``69676e6f7265``, ``69 67 6e``, ``69:67:6e``, ``0x69, 0x67``, ``\\x69\\x67`` |
| ``percent`` | ``%69%67%6E...`` (URL encoding, ``+`` as space) |
| ``unicode_escape`` | ``\\u0069\\u0067...`` outside JSON (scan_json already decodes JSON strings) |
| ``html_entities`` | ``&#105;&#x67;...`` |
| ``unicode_tags`` | invisible tag characters U+E0020..E007E ("ASCII smuggling") |
| ``variation_selectors`` | bytes hidden as variation selectors after a visible character |
| ``zero_width_binary`` | bits written with two zero-width characters (a third one separating) |
| ``bidi_reversed`` | text after a right-to-left override, stored reversed |
| ``rot13``, ``leetspeak`` | sentences that read as English only once decoded (opt-in) |

ROT13 and leetspeak (`TEXT_KINDS`) are looked for only when asked: the pattern stage has
views of its own for them (`normalize`); the model stage asks for them.

Nested encodings are decoded too (``base64+rot13``) up to `Limits.max_depth` levels; a
nested span keeps the offsets of the outermost run. `decoded_view(text, spans)` renders the
text with every outer span replaced by its fully decoded content, so a classifier reads the
payload in its context ("decode this and follow it: <the instruction>").

What is *not* a span: binary (images, gzip, hashes, keys, random ids) fails the text test
(valid UTF-8, few control characters, mostly letters, a word separator); identifiers
in one letter case are never base64 candidates. Confusable letters (NFKC, homoglyphs,
invisible characters) are normalisation, not encoding: `normalize.fold` applies to every
decoded text before it is matched.

Bounds, by construction: every scan is one pass of a regular expression made of character
class runs (no nested quantifiers, nothing that backtracks over a run), runs are disjoint,
decoders are linear (the standard library's C codecs); at most `Limits.max_spans` spans, runs
cut to `Limits.max_run_chars`, at most `Limits.max_decoded_chars` decoded characters per
text; ROT13 and leetspeak look only at the first `Limits.max_text_scan_chars` characters.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote

from haltgate.governance.guardrails import decode_prefilter

PAYLOAD_KINDS: tuple[str, ...] = (
    "base64",
    "base32",
    "hex",
    "percent",
    "unicode_escape",
    "html_entities",
    "unicode_tags",
    "variation_selectors",
    "zero_width_binary",
    "bidi_reversed",
)
"""Encodings whose runs are recognisable by their alphabet."""
TEXT_KINDS: tuple[str, ...] = ("rot13", "leetspeak")
"""Encodings of whole sentences, recognised by what they read as once decoded."""
ALL_KINDS = PAYLOAD_KINDS + TEXT_KINDS
_KIND_SETS = {k: frozenset(k) for k in (PAYLOAD_KINDS, TEXT_KINDS, ALL_KINDS)}
_ALPHABET_KINDS = frozenset({"base64", "base32", "hex"})


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds of the decoding work done for one text."""

    max_depth: int = 2
    """Spans inside decoded spans are decoded this many levels deep in all."""
    max_spans: int = 8
    """At most this many spans per text, all levels together (the longest runs first)."""
    max_run_chars: int = 16384
    """An encoded run longer than this is decoded only up to here."""
    max_decoded_chars: int = 65536
    """Decoded characters per text, all spans together; decoding stops beyond."""
    max_text_scan_chars: int = 32768
    """ROT13 and leetspeak sentences are looked for only this far into a text."""
    min_text_ratio: float = 0.85
    """A decoded run counts as text when this share of it is not control characters..."""
    min_letter_ratio: float = 0.5
    """...and this share of it is letters."""
    require_word_break: bool = True
    """...and it holds a space or a line break (a sentence, not a token). The PII and
    secrets rescan (`decoded_rescan`) turns this off: a credential has no spaces."""

    def __post_init__(self) -> None:
        for name in ("max_depth", "max_spans", "max_run_chars", "max_decoded_chars"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if self.max_text_scan_chars < 0:
            raise ValueError(f"max_text_scan_chars: must be >= 0, got {self.max_text_scan_chars}")
        for name in ("min_text_ratio", "min_letter_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}: must be in [0, 1], got {getattr(self, name)}")


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class DecodedSpan:
    """One encoded run and what it decodes to."""

    start: int
    end: int
    """Offsets of the run in the scanned text (for a nested span: of the outermost run)."""
    encoding: str
    """The decoding chain, outermost first: ``base64``, ``base64+rot13``."""
    text: str
    """The decoded text of this level (nested runs still encoded)."""
    rendered: str
    """The decoded text with its nested spans decoded in place."""
    depth: int
    """1 for a run of the scanned text, 2 for a run inside a decoded one."""


@dataclass(slots=True)
class _Budget:
    spans: int
    chars: int
    found: list[DecodedSpan] = field(default_factory=list)


# --- text test -------------------------------------------------------------------------------

_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd\ufffe\uffff]")
_NON_LETTER = re.compile(r"[\W\d_]+")
_NON_LETTER_BYTES = bytes(
    b for b in range(128) if not (ord("a") <= b <= ord("z") or ord("A") <= b <= ord("Z"))
)


def is_text(s: str, limits: Limits = DEFAULT_LIMITS) -> bool:
    """True when `s` reads as text: few control characters, mostly letters, a word break."""
    n = len(s)
    if n < 8 or (limits.require_word_break and " " not in s and "\n" not in s):
        return False
    if len(_CONTROL.findall(s)) > (1.0 - limits.min_text_ratio) * n:
        return False
    if s.isascii():
        letters = len(s.encode("ascii").translate(None, _NON_LETTER_BYTES))
    else:
        letters = len(_NON_LETTER.sub("", s))
    return letters >= limits.min_letter_ratio * n


def _utf8_text(raw: bytes | None, limits: Limits) -> str | None:
    if not raw:
        return None
    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return s if is_text(s, limits) else None


# --- payload runs ----------------------------------------------------------------------------

# Alphabet runs of base64 (both alphabets), base32 and hex: one regex, classified after.
# Each pattern starts with a character class or a literal (the engine then skips
# non-candidates in C); the "not inside a longer run" check follows the first character.
_B64_RUN = re.compile(r"[A-Za-z0-9+/_-](?<![A-Za-z0-9+/_-].)[A-Za-z0-9+/_-]{15,}={0,6}")
_HEX_DIGITS = re.compile(r"[0-9A-Fa-f]+")
_B32_RUN = re.compile(r"[A-Z2-7]+=*")
_HEX_PAIRS = re.compile(
    r"[0-9A-Fa-f](?<![0-9A-Za-z].)[0-9A-Fa-f](?:[ :,-][0-9A-Fa-f]{2}(?![0-9A-Za-z]))+"
)
_HEX_0X = re.compile(r"0[xX][0-9A-Fa-f]{2}(?:,?[ \t]*0[xX][0-9A-Fa-f]{2})+")
_HEX_ESC = re.compile(r"\\x[0-9A-Fa-f]{2}(?:\\x[0-9A-Fa-f]{2})*")
_PCT_ESC = re.compile(r"%[0-9A-Fa-f]{2}(?:%[0-9A-Fa-f]{2})*")
_URL_CHARS = re.compile(r"[A-Za-z0-9._~+-]*")
_UESC_RUN = re.compile(r"\\u[0-9A-Fa-f]{4}(?:\\u[0-9A-Fa-f]{4})*")
_ENTITY_RUN = re.compile(
    r"&#(?:[xX][0-9A-Fa-f]{1,6}|[0-9]{1,7});(?:\s?&#(?:[xX][0-9A-Fa-f]{1,6}|[0-9]{1,7});)*"
)
_TAG_RUN = re.compile("[\U000e0000-\U000e007f]+")
_VS_RUN = re.compile("[\ufe00-\ufe0f\U000e0100-\U000e01ef]{8,}")
_ZW_RUN = re.compile("[\u200b\u200c\u200d\u2060\ufeff]{16,}")
# Any of the characters the four runs below are made of (one pass for ordinary text).
_INVISIBLE_HINT = re.compile("[\U000e0000-\U000e01ef\ufe00-\ufe0f\u200b-\u200d\u2060\ufeff\u202e]")
_BIDI_RUN = re.compile("\u202e[^\u202a-\u202e\u2066-\u2069\n]{8,}")

_MIN_BYTES = 8
"""Shortest decoded payload worth a rescan (a few words)."""


def _b64_runs(text: str) -> list[tuple[int, int, str]]:
    """Base64, base32 and unseparated hex runs; base64 wrapped over lines is one run."""
    runs: list[tuple[int, int]] = []
    for m in _B64_RUN.finditer(text):
        s, e = m.start(), m.end()
        if runs:
            ps, pe = runs[-1]
            gap = text[pe:s]
            prev = text[ps:pe]
            # MIME/PEM wrapping: full lines of a length divisible by 4, no padding before.
            line = len(prev.rsplit("\n", 1)[-1])
            if gap in ("\n", "\r\n") and line >= 40 and line % 4 == 0 and "=" not in prev:
                runs[-1] = (ps, e)
                continue
        runs.append((s, e))
    out: list[tuple[int, int, str]] = []
    for s, e in runs:
        run = text[s:e]
        if "\n" not in run and _HEX_DIGITS.fullmatch(run):
            if len(run) >= 2 * _MIN_BYTES:
                out.append((s, e, "hex"))
        elif "\n" not in run and _B32_RUN.fullmatch(run):
            out.append((s, e, "base32"))
        elif not (run.islower() or run.isupper()):
            # Base64 of text mixes cases; identifiers in one case (snake_case, CONSTANTS,
            # kebab-case) never qualify, and code is full of long ones.
            out.append((s, e, "base64"))
    return out


def _percent_runs(text: str) -> list[tuple[int, int, str]]:
    """URL-like runs holding 3+ escapes: escapes found by their literal "%", grouped while
    only URL characters lie between them, each group widened over the URL characters
    around it (every character is looked at a bounded number of times)."""
    groups: list[list[int]] = []
    for m in _PCT_ESC.finditer(text):
        s, e = m.start(), m.end()
        n = (e - s) // 3
        if groups and _URL_CHARS.fullmatch(text, groups[-1][1], s):
            groups[-1][1] = e
            groups[-1][2] += n
        else:
            groups.append([s, e, n])
    out: list[tuple[int, int, str]] = []
    for s, e, n in groups:
        if n < 3:
            continue
        before = _URL_CHARS.match(text[max(0, s - 256) : s][::-1])
        after = _URL_CHARS.match(text, e, min(len(text), e + 256))
        out.append((s - (before.end() if before else 0), after.end() if after else e, "percent"))
    return out


def _runs(text: str, kinds: frozenset[str]) -> list[tuple[int, int, str]]:
    """Candidate runs of every kind asked for (not yet decoded, may overlap)."""
    out: list[tuple[int, int, str]] = []
    if not kinds.isdisjoint(_ALPHABET_KINDS) and decode_prefilter.may_hold_alphabet_run(text):
        out.extend(r for r in _b64_runs(text) if r[2] in kinds)
    if "hex" in kinds:
        if decode_prefilter.may_hold_hex_pairs(text):
            out.extend((m.start(), m.end(), "hex") for m in _HEX_PAIRS.finditer(text))
        if "0x" in text or "0X" in text:
            out.extend((m.start(), m.end(), "hex") for m in _HEX_0X.finditer(text))
        if "\\x" in text:
            out.extend((m.start(), m.end(), "hex") for m in _HEX_ESC.finditer(text))
    if "percent" in kinds and text.count("%") >= 3:
        out.extend(_percent_runs(text))
    if "unicode_escape" in kinds and "\\u" in text:
        out.extend((m.start(), m.end(), "unicode_escape") for m in _UESC_RUN.finditer(text))
    if "html_entities" in kinds and "&#" in text:
        out.extend((m.start(), m.end(), "html_entities") for m in _ENTITY_RUN.finditer(text))
    if not text.isascii() and _INVISIBLE_HINT.search(text) is not None:
        for kind, rx in (
            ("unicode_tags", _TAG_RUN),
            ("variation_selectors", _VS_RUN),
            ("zero_width_binary", _ZW_RUN),
            ("bidi_reversed", _BIDI_RUN),
        ):
            if kind in kinds:
                out.extend((m.start(), m.end(), kind) for m in rx.finditer(text))
    return out


def _decode_base64(run: str, limits: Limits) -> str | None:
    core = "".join(run.split()).rstrip("=")
    if ("-" in core or "_" in core) and ("+" in core or "/" in core):
        return None  # two alphabets mixed: a path or an identifier, not base64
    urlsafe = "-" in core or "_" in core
    pad = len(run) - len(run.rstrip("="))
    if 0 < pad <= 2:
        # Padding marks the true end: a run glued to a word ("xaWdu...==") starts a few
        # characters early; drop them.
        return _b64_text(core[(len(core) + pad) % 4 :], urlsafe, limits)
    # Without padding the start may be off too (a run cut by a stream's scan window, or
    # glued to a word): try the four alignments, the run as found first; an alignment is
    # decoded whole only when its first 48 bytes are text (binary fails there, cheaply).
    for skip in range(4 if len(core) >= 32 else 1):
        if skip and not _b64_text_prefix(core[skip : skip + 64], urlsafe):
            continue
        text = _b64_text(core[skip:], urlsafe, limits)
        if text is not None:
            return text
    return None


def _b64_text_prefix(chunk: str, urlsafe: bool) -> bool:
    try:
        raw = base64.urlsafe_b64decode(chunk) if urlsafe else base64.b64decode(chunk)
        s = raw[:-3].decode("utf-8", "ignore") if len(raw) > 3 else ""
    except (binascii.Error, ValueError):
        return False
    return len(s) >= len(raw) - 8 and not _CONTROL.search(s)


def _b64_text(core: str, urlsafe: bool, limits: Limits) -> str | None:
    if len(core) % 4 == 1:
        core = core[:-1]
    core = core[: limits.max_run_chars // 4 * 4]
    padded = core + "=" * (-len(core) % 4)
    try:
        raw = (
            base64.urlsafe_b64decode(padded) if urlsafe else base64.b64decode(padded, validate=True)
        )
    except (binascii.Error, ValueError):
        return None
    return _utf8_text(raw, limits)


def _decode_base32(run: str, limits: Limits) -> str | None:
    core = run.rstrip("=")[: limits.max_run_chars // 8 * 8]
    if len(core) % 8 in (1, 3, 6):
        return None  # no valid base32 length ends there
    try:
        raw = base64.b32decode(core + "=" * (-len(core) % 8))
    except (binascii.Error, ValueError):
        return None
    return _utf8_text(raw, limits)


_HEX_NOISE = re.compile(r"\\x|0[xX]|[\s:,-]")


def _decode_hex(run: str, limits: Limits) -> str | None:
    digits = _HEX_NOISE.sub("", run[: limits.max_run_chars])
    if len(digits) < 2 * _MIN_BYTES:
        return None
    try:
        raw = bytes.fromhex(digits[: len(digits) // 2 * 2])
    except ValueError:
        return None
    return _utf8_text(raw, limits)


def _decode_percent(run: str, limits: Limits) -> str | None:
    run = run[: limits.max_run_chars]
    s = unquote(run.replace("+", " "), errors="replace")
    return s if s != run and is_text(s, limits) else None


def _str_text(s: str, limits: Limits) -> str | None:
    return s if is_text(s, limits) else None


def _decode_uescape(run: str, limits: Limits) -> str | None:
    units = run[: limits.max_run_chars].split("\\u")[1:]
    try:
        s = b"".join(int(u, 16).to_bytes(2, "big") for u in units).decode("utf-16-be")
    except (UnicodeError, ValueError):
        return None
    return _str_text(s, limits)


def _decode_entities(run: str, limits: Limits) -> str | None:
    return _str_text(html.unescape(run[: limits.max_run_chars]), limits)


def _decode_tags(run: str, limits: Limits) -> str | None:
    s = "".join(chr(ord(c) - 0xE0000) for c in run[: limits.max_run_chars] if c >= "\U000e0020")
    return _str_text(s.replace("\x7f", ""), limits)


def _decode_selectors(run: str, limits: Limits) -> str | None:
    raw = bytes(
        ord(c) - 0xFE00 if c <= "\ufe0f" else ord(c) - 0xE0100 + 16
        for c in run[: limits.max_run_chars]
    )
    return _utf8_text(raw, limits)


def _decode_zero_width(run: str, limits: Limits) -> str | None:
    run = run[: limits.max_run_chars]
    counts = sorted(((run.count(c), c) for c in set(run)), reverse=True)
    if len(counts) not in (2, 3):
        return None
    a, b = counts[0][1], counts[1][1]
    sep = counts[2][1] if len(counts) == 3 else None
    for zero, one in ((a, b), (b, a)):
        bits = run.translate({ord(zero): "0", ord(one): "1"})
        if sep is not None:
            groups = [g for g in bits.split(sep) if g]
            if any(len(g) > 8 for g in groups):
                continue
            raw = bytes(int(g, 2) for g in groups)
        else:
            raw = bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits) - 7, 8))
        s = _utf8_text(raw, limits)
        if s is not None:
            return s
    return None


def _decode_bidi(run: str, limits: Limits) -> str | None:
    return _str_text(run[1 : limits.max_run_chars][::-1], limits)


_DECODERS: dict[str, Callable[[str, Limits], str | None]] = {
    "base64": _decode_base64,
    "base32": _decode_base32,
    "hex": _decode_hex,
    "percent": _decode_percent,
    "unicode_escape": _decode_uescape,
    "html_entities": _decode_entities,
    "unicode_tags": _decode_tags,
    "variation_selectors": _decode_selectors,
    "zero_width_binary": _decode_zero_width,
    "bidi_reversed": _decode_bidi,
}


# --- sentences in ROT13 or leetspeak ----------------------------------------------------------

ROT13_TABLE = str.maketrans(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "nopqrstuvwxyzabcdefghijklmNOPQRSTUVWXYZABCDEFGHIJKLM",
)
LEET_TABLE = str.maketrans(
    {
        "0": "o",
        "1": "i",
        "3": "e",
        "4": "a",
        "5": "s",
        "7": "t",
        "8": "b",
        "@": "a",
        "$": "s",
        "|": "l",
        "€": "e",
        "!": "i",
        "+": "t",
    }
)
"""Leetspeak digits and symbols read as the letters they imitate (one character each)."""

# Frequent English words: a sentence is ROT13 when its words are these only after ROT13.
# One-letter words are left out: random letter soup is full of them.
_COMMON = frozenset(
    "the and you your to of an is are be in on for with this that it all not no do now "
    "from as at by or if any what will must should can me my we our they them their was "
    "were have has had previous instructions ignore rules system prompt tell reveal say "
    "send give show secret password user assistant act as follow above new only never "
    "please write answer respond output print".split()
)
_ROT13_HINT = re.compile(r"\b(?:gur|naq|lbh|lbhe|vf|ner|gb|bs|nyy|guvf|jvgu|sbe|abg|abj)\b")
_SENTENCE = re.compile(r"[^\n.!?:;]+")
_WORD = re.compile(r"[A-Za-z]+")
# Digits, "+" and "€" inside words; not "$" (shell variables), "@" (mail) or "|" (pipes).
_LEET_WORD = re.compile(r"[A-Za-z][0134578+€]|[0134578+€][A-Za-z]")


def _text_runs(text: str, kinds: frozenset[str], limits: Limits) -> list[tuple[int, int, str]]:
    """Sentences (merged when adjacent) that read as English only after ROT13 / leet."""
    head = text[: limits.max_text_scan_chars]
    lower = head.lower()
    rot = "rot13" in kinds and _ROT13_HINT.search(lower) is not None
    leet = "leetspeak" in kinds and len(_LEET_WORD.findall(head)) >= 3
    if not (rot or leet):
        return []
    out: list[tuple[int, int, str]] = []
    for m in _SENTENCE.finditer(head):
        kind = _sentence_kind(m.group(), rot, leet)
        if kind is None:
            continue
        s, e = m.start(), m.end()
        if out and out[-1][2] == kind and not head[out[-1][1] : s].strip(".!?:; \t"):
            out[-1] = (out[-1][0], e, kind)
        else:
            out.append((s, e, kind))
    return out


def _sentence_kind(sentence: str, rot: bool, leet: bool) -> str | None:
    if rot:
        words = _WORD.findall(sentence.lower())
        if len(words) >= 3:
            plain = sum(w in _COMMON for w in words)
            rotated = sum(w.translate(ROT13_TABLE) in _COMMON for w in words)
            if rotated >= 2 and rotated > 2 * plain:
                return "rot13"
    if leet:
        tokens = sentence.split()
        if len(tokens) >= 3:
            hits = sum(1 for t in tokens if _LEET_WORD.search(t))
            if hits >= 2 and hits >= 0.4 * len(tokens):
                # Random ids and base64 mix digits into letters too: the folded sentence
                # must read as English, and better than it did before folding.
                words = _WORD.findall(sentence.lower())
                folded = _WORD.findall(sentence.lower().translate(LEET_TABLE))
                plain = sum(w in _COMMON for w in words)
                if sum(w in _COMMON for w in folded) >= max(2, 2 * plain + 1):
                    return "leetspeak"
    return None


def _decode_text_run(run: str, kind: str, limits: Limits) -> str | None:
    s = run.translate(ROT13_TABLE) if kind == "rot13" else run.translate(LEET_TABLE)
    return s if is_text(s.strip(), limits) else None


# --- the search -----------------------------------------------------------------------------


def decode_spans(
    text: str, limits: Limits = DEFAULT_LIMITS, *, kinds: Sequence[str] = PAYLOAD_KINDS
) -> list[DecodedSpan]:
    """Every encoded span of `text` that decodes to text, nested ones included.

    Outer spans come first, longest first; a nested span follows its outer one and carries
    its outer run's offsets. Spans of one level never overlap.
    """
    wanted = _KIND_SETS.get(kinds) if type(kinds) is tuple else None
    if wanted is None:
        unknown = set(kinds) - set(ALL_KINDS)
        if unknown:
            raise ValueError(f"kinds: unknown encoding(s) {', '.join(sorted(unknown))}")
        wanted = frozenset(kinds)
    budget = _Budget(limits.max_spans, limits.max_decoded_chars)
    if limits.max_depth > 0:
        _search(text, wanted, limits, budget, None, "", 1)
    return budget.found


def _search(
    text: str,
    kinds: frozenset[str],
    limits: Limits,
    budget: _Budget,
    origin: tuple[int, int] | None,
    chain: str,
    depth: int,
) -> list[tuple[int, int, str]]:
    """Decode the runs of one level; returns (start, end, rendered) of this level's spans."""
    runs = _runs(text, kinds)
    if not kinds.isdisjoint(TEXT_KINDS):
        runs.extend(_text_runs(text, kinds, limits))
    runs.sort(key=lambda r: (r[0] - r[1], r[0]))
    taken: list[tuple[int, int, str]] = []
    for start, end, kind in runs:
        if budget.spans <= 0 or budget.chars <= 0:
            break
        if any(start < e and s < end for s, e, _ in taken):
            continue
        run = text[start:end]
        if kind in TEXT_KINDS:
            decoded = _decode_text_run(run, kind, limits)
        else:
            decoded = _DECODERS[kind](run, limits)
        if decoded is None:
            continue
        decoded = decoded[: budget.chars]
        budget.spans -= 1
        budget.chars -= len(decoded)
        span = origin if origin is not None else (start, end)
        encoding = f"{chain}+{kind}" if chain else kind
        index = len(budget.found)
        budget.found.append(DecodedSpan(span[0], span[1], encoding, decoded, decoded, depth))
        rendered = decoded
        if depth < limits.max_depth:
            inner = _search(decoded, kinds, limits, budget, span, encoding, depth + 1)
            if inner:
                rendered = _substitute(decoded, inner)
                old = budget.found[index]
                budget.found[index] = DecodedSpan(
                    old.start, old.end, old.encoding, old.text, rendered, old.depth
                )
        taken.append((start, end, rendered))
    return taken


def _substitute(text: str, spans: list[tuple[int, int, str]]) -> str:
    parts: list[str] = []
    pos = 0
    for start, end, rendered in sorted(spans):
        parts.append(text[pos:start])
        parts.append(rendered)
        pos = end
    parts.append(text[pos:])
    return "".join(parts)


def decoded_view(text: str, spans: Sequence[DecodedSpan]) -> str:
    """`text` with each outer span replaced by its decoded content (nested ones decoded)."""
    return _substitute(text, [(s.start, s.end, s.rendered) for s in spans if s.depth == 1])
