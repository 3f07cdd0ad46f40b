"""Text normalisation against obfuscation, for the pattern stage of the detectors.

`views(text)` yields the forms of a text that a pattern should be matched on:

1. ``folded``: NFKC (fullwidth and mathematical letters become ASCII), invisible and format
   characters removed (zero-width, bidi controls, soft hyphen, variation selectors), common
   homoglyphs (Cyrillic, Greek, ...) mapped to the Latin letter they imitate, lower case.
2. ``leet``: the folded text with leetspeak digits and symbols read as letters
   (``1gn0r3`` -> ``ignore``), only when the text mixes them into words.
3. ``squashed``: letters only, so split words (``i g n o r e``, ``ig-no-re``, ``i.g.n``) meet;
   matched with their own, separator-free patterns.
4. ``rot13`` of the folded text.
5. decoded payloads (`decode.decode_spans`: base64, base32, hex, percent-encoding, escapes,
   Unicode tag characters, variation selectors, zero-width binary, bidi-reversed text),
   each decoded payload yielding views 1-4 itself, nested at most `Limits.max_depth` deep and
   bounded in count and size.

Every view can map an offset back to the original text, so a finding points at the right span
(for decoded payloads: the whole encoded run). The hot path is `str.translate` and a few
precompiled regular expressions; per-character offset tables are only built for a view in
which something was found.
"""

# The homoglyph table below is made of look-alike letters on purpose.
# ruff: noqa: RUF001

from __future__ import annotations

import codecs
import re
import unicodedata
from collections.abc import Callable, Iterator
from typing import NamedTuple

import ahocorasick

from haltgate.governance.guardrails.decode import (
    DEFAULT_LIMITS,
    LEET_TABLE,
    ROT13_TABLE,
    Limits,
    decode_spans,
)
from haltgate.governance.guardrails.decode_prefilter import may_hold_payload

# Characters that render as nothing (or nearly) and are used to split words invisibly.
_INVISIBLE = [
    0x00AD,
    0x034F,
    0x061C,
    0x115F,
    0x1160,
    0x17B4,
    0x17B5,
    0x180E,
    0x3164,
    0xFEFF,
    0xFFA0,
    *range(0x200B, 0x2010),  # zero-width space/joiners, LRM/RLM
    *range(0x202A, 0x202F),  # bidi embeddings and overrides
    *range(0x2060, 0x2070),  # word joiner, invisible operators, bidi isolates
    *range(0xFE00, 0xFE10),  # variation selectors
    *range(0xE0000, 0xE0080),  # tag characters (decoded separately as a payload)
]

# Homoglyphs that NFKC leaves alone: letters of other scripts that look like Latin ones.
# Chosen from Unicode's confusables data for the scripts seen in attacks (Cyrillic, Greek,
# Armenian, Cherokee-free); lower and upper case both map to the lower-case Latin letter.
_HOMOGLYPHS = {
    # Cyrillic
    "а": "a",
    "А": "a",
    "В": "b",
    "в": "b",
    "с": "c",
    "С": "c",
    "ԁ": "d",
    "е": "e",
    "Е": "e",
    "ё": "e",
    "һ": "h",
    "Н": "h",
    "н": "h",
    "і": "i",
    "І": "i",
    "ї": "i",
    "ј": "j",
    "Ј": "j",
    "к": "k",
    "К": "k",
    "ӏ": "l",
    "М": "m",
    "м": "m",
    "о": "o",
    "О": "o",
    "р": "p",
    "Р": "p",
    "ԛ": "q",
    "ѕ": "s",
    "Ѕ": "s",
    "Т": "t",
    "т": "t",
    "у": "y",
    "У": "y",
    "х": "x",
    "Х": "x",
    "ԝ": "w",
    "Ԝ": "w",
    "ь": "b",
    "г": "r",
    "п": "n",
    "ц": "u",
    # Greek
    "α": "a",
    "Α": "a",
    "Β": "b",
    "β": "b",
    "ε": "e",
    "Ε": "e",
    "Η": "h",
    "ι": "i",
    "Ι": "i",
    "Κ": "k",
    "κ": "k",
    "Μ": "m",
    "Ν": "n",
    "ν": "v",
    "ο": "o",
    "Ο": "o",
    "Ρ": "p",
    "ρ": "p",
    "τ": "t",
    "Τ": "t",
    "υ": "u",
    "Χ": "x",
    "χ": "x",
    "Υ": "y",
    "γ": "y",
    "Ζ": "z",
    "ϲ": "c",
    # Armenian and others
    "օ": "o",
    "ս": "u",
    "ց": "g",
    "ɑ": "a",
    "ɡ": "g",
    "ɩ": "i",
    "ʟ": "l",
    "ı": "i",
    "ȷ": "j",
    "ℓ": "l",
    "ǀ": "l",
}

_FOLD_TABLE: dict[int, str | None] = {cp: None for cp in _INVISIBLE}
_FOLD_TABLE.update({ord(k): v for k, v in _HOMOGLYPHS.items()})

# Starts with the leet character class so the engine's first-character scan skips plain text.
_LEET_HINT = re.compile(r"[0134578@$|!€](?:(?<=[a-z].)(?=[a-z0-9@$])|(?=[a-z]{2}))")
_NON_LETTERS = re.compile(r"[^a-z]+")
_NON_LETTER_BYTES = bytes(b for b in range(128) if not (ord("a") <= b <= ord("z")))


def _squash(text: str) -> str:
    """Letters only. ASCII goes through bytes.translate (several times faster than a regex)."""
    if text.isascii():
        return text.encode("ascii").translate(None, _NON_LETTER_BYTES).decode("ascii")
    return _NON_LETTERS.sub("", text)


# A rot13 view is only worth matching when the text holds a rot13-encoded attack word.
_ROT13_HINTS = ahocorasick.Automaton()
for _w in (
    w.translate(ROT13_TABLE)
    for w in (
        "ignor",
        "disregard",
        "forget",
        "instruction",
        "prompt",
        "system",
        "jailbr",
        "pretend",
        "reveal",
        "password",
        "secret",
        "assistant",
        "overrid",
        "bypass",
        "developer",
        "rules",
        "guideline",
        "filter",
        "mode",
        "unrestricted",
        "user",
        "without",
        "tool",
        "send",
        "email",
        "previous",
        "above",
        "agent",
        "model",
        "http",
        "key",
        "token",
        "credential",
        "admin",
        "delete",
        "transfer",
        "execute",
        "command",
        "do not",
        "never",
        "must",
        "now on",
        "act as",
        "you are",
    )
):
    _ROT13_HINTS.add_word(_w, _w)
_ROT13_HINTS.make_automaton()
FOCUS_MARGIN = 160
"""Characters around a de-obfuscated spot that matchers look at (longer than any phrase)."""


def _merge_ranges(spots: list[int], margin: int, limit: int) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for p in spots:
        lo, hi = max(0, p - margin), min(limit, p + margin)
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


class View(NamedTuple):
    """One form of the text to match on (a named tuple: several are made for every text
    scanned, and a tuple is the cheapest immutable record to build).

    `to_origin(i, j)` maps a span of `text` back to a span of the original text.
    """

    text: str
    via: str | None
    squashed: bool
    to_origin: Callable[[int, int], tuple[int, int]]
    focus: tuple[tuple[int, int], ...] | None = None
    """Where this view differs from the folded view (None: everywhere). A match outside
    these ranges was already seen in the folded view, so matchers may skip the rest."""
    encoding: str | None = None
    """The decoding behind this view (``base64``, ``rot13``, ``base64+leetspeak``...), None
    for the text as written and its normalised forms (folding, split words)."""


def fold(text: str) -> str:
    """NFKC, strip invisible characters, map homoglyphs, lower-case (the ``folded`` form)."""
    if text.isascii():
        return text.lower()
    return unicodedata.normalize("NFKC", text).translate(_FOLD_TABLE).lower()


def _fold_char(c: str) -> str:
    return unicodedata.normalize("NFKC", c).translate(_FOLD_TABLE).lower()


def _fold_offsets(text: str) -> list[int]:
    """Origin index of every character of the folded text (slow path, only after a hit)."""
    origin: list[int] = []
    for i, c in enumerate(text):
        origin.extend([i] * len(_fold_char(c)))
    origin.append(len(text))
    return origin


def _identity(i: int, j: int) -> tuple[int, int]:
    return i, j


def _folded_mapper(text: str, folded: str) -> Callable[[int, int], tuple[int, int]]:
    if len(folded) == len(text) and (text.isascii() or text.lower() == folded):
        return _identity
    cache: list[list[int]] = []

    def to_origin(i: int, j: int) -> tuple[int, int]:
        if not cache:
            cache.append(_fold_offsets(text))
        table = cache[0]
        last = len(table) - 1
        a = table[min(i, last)]
        b = table[min(max(j - 1, 0), last)] + 1 if j > 0 else a
        return a, min(max(b, a), len(text))

    return to_origin


def _squash_mapper(
    view_text: str, inner: Callable[[int, int], tuple[int, int]]
) -> Callable[[int, int], tuple[int, int]]:
    cache: list[list[int]] = []

    def to_origin(i: int, j: int) -> tuple[int, int]:
        if not cache:
            cache.append([k for k, ch in enumerate(view_text) if "a" <= ch <= "z"])
        pos = cache[0]
        if not pos:
            return inner(0, 0)
        a = pos[min(i, len(pos) - 1)]
        b = pos[min(max(j - 1, 0), len(pos) - 1)] + 1
        return inner(a, b)

    return to_origin


def _span_mapper(start: int, end: int) -> Callable[[int, int], tuple[int, int]]:
    def to_origin(i: int, j: int) -> tuple[int, int]:
        return start, end

    return to_origin


def simple_views(text: str, limits: Limits = DEFAULT_LIMITS) -> tuple[str, str] | None:
    """(folded, squashed) when `views(text, limits)` (rot13 and decoding on) yields these
    two views only, each mapping offsets back as it is: an ASCII text with no leetspeak,
    no rot13 attack word and no shape of an encoded run (`decode_prefilter.
    may_hold_payload`); None otherwise. What most texts are: a matcher that finds no
    trigger in either is done without building the views (`injection`'s pattern stage).
    tests/guardrails/test_clean_gate.py holds it to `views` on every development text."""
    if not text.isascii():
        return None
    folded = text.lower()
    if (
        _LEET_HINT.search(folded) is not None
        or next(_ROT13_HINTS.iter(folded), None) is not None
        or (limits.max_depth > 0 and may_hold_payload(text))
    ):
        return None
    return folded, _squash(folded)


def views(
    text: str,
    limits: Limits = DEFAULT_LIMITS,
    *,
    rot13: bool = True,
    decode: bool = True,
) -> Iterator[View]:
    """Yield the normalised forms of `text` (see the module docstring), cheapest first."""
    yield from _views(text, None, _identity, rot13)
    # may_hold_payload: a text without the shapes of an encoded run is not searched
    if decode and limits.max_depth > 0 and may_hold_payload(text):
        for span in decode_spans(text, limits):
            yield from _views(span.text, span.encoding, _span_mapper(span.start, span.end), rot13)


def _views(
    text: str,
    encoding: str | None,
    outer: Callable[[int, int], tuple[int, int]],
    rot13: bool,
) -> Iterator[View]:
    """Views of `text`; `encoding` names the decoding that produced `text` (None: the text
    as written), and `outer` maps back to the original then."""

    def chain(step: str) -> str:
        return f"{encoding}+{step}" if encoding else step

    folded = fold(text)
    inner = _folded_mapper(text, folded)
    if outer is _identity:
        to_origin = inner
    else:
        to_origin = outer
    changed = folded != text.lower()
    via = encoding or ("confusables" if changed else None)
    yield View(folded, via, False, to_origin, encoding=encoding)
    base = folded
    leet_spots = [m.start() for m in _LEET_HINT.finditer(folded)]
    if leet_spots:
        base = folded.translate(LEET_TABLE)
        # Leetspeak maps one character to one: offsets are those of the folded text.
        yield View(
            base,
            encoding or "leetspeak",
            False,
            to_origin,
            _merge_ranges(leet_spots, FOCUS_MARGIN, len(base)),
            encoding=chain("leetspeak"),
        )
    squashed = _squash(base)
    yield View(
        squashed,
        encoding or "split_words",
        True,
        _squash_mapper(base, to_origin) if outer is _identity else outer,
        encoding=encoding,
    )
    if rot13 and next(_ROT13_HINTS.iter(folded), None) is not None:
        yield View(
            folded.translate(ROT13_TABLE),
            encoding or "rot13",
            False,
            to_origin,
            encoding=chain("rot13"),
        )


def rot13(text: str) -> str:
    """ROT13 of `text` (exported for tests and corpora)."""
    return codecs.encode(text, "rot13")
