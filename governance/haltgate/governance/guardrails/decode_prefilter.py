"""Cheap necessary conditions for `decode`'s run patterns, so ordinary prose skips them.

Each check maps an ASCII text through a byte table (one C pass, no regex engine stepping
through every word) and looks for the shape the pattern cannot match without: a base64 /
base32 / hex run needs 16 characters of its alphabet in a row; separated hex pairs need two
hex digits, a separator and two more. A text outside ASCII is always let through (its
patterns then run as before). Both checks only ever skip a pattern that would have found
nothing; tests/guardrails/test_scan_fast_paths.py compares the spans with and without them.
"""

from __future__ import annotations

import re

_B64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_HEX_SEPARATORS = frozenset(b" :,-")

ALPHABET_TABLE = _B64_TABLE = bytes(
    ord("a") if b in _B64_ALPHABET else ord(" ") for b in range(256)
)
_B64_RUN_SHAPE = b"a" * 16
"""`decode._B64_RUN`: a first character of the alphabet and 15 more."""

_HEX_TABLE = bytes(
    ord("h") if b in _HEX else ord("s") if b in _HEX_SEPARATORS else ord(" ") for b in range(256)
)
_HEX_PAIRS_SHAPE = b"hhshh"
"""`decode._HEX_PAIRS`: two hex digits, a separator, two hex digits."""


def may_hold_alphabet_run(text: str) -> bool:
    """False when `text` cannot hold a base64, base32 or unseparated hex run."""
    if not text.isascii():
        return True
    return _B64_RUN_SHAPE in text.encode("ascii").translate(_B64_TABLE)


def alphabet_map(text: str) -> bytes:
    """An ASCII `text` with each character of the base64 alphabets (``A-Za-z0-9+/_-``)
    as ``a`` and every other as a space: ``b"a" * n in alphabet_map(text)`` is False when
    no run of `n` such characters is in the text (the secrets detector's token patterns
    need one: `secrets._RUN_NEEDS`)."""
    return text.encode("ascii").translate(_B64_TABLE)


def may_hold_hex_pairs(text: str) -> bool:
    """False when `text` cannot hold hex pairs separated by spaces, colons, commas or dashes."""
    if not text.isascii():
        return True
    return _HEX_PAIRS_SHAPE in text.encode("ascii").translate(_HEX_TABLE)


_RUN16 = re.compile(r"[A-Za-z0-9+/_-]{16,}")
_HEX_ONLY = re.compile(r"[0-9A-Fa-f]+")
_ESCAPES = re.compile(r"0[xX]|\\x|%[0-9A-Fa-f]{2}|\\u|&#")


def may_hold_payload(text: str, encoded: bytes | None = None) -> bool:
    """False when `decode.decode_spans` finds no payload span (`decode.PAYLOAD_KINDS`,
    any limits) in the ASCII `text`; `encoded` is ``text.encode("ascii")`` when the
    caller has it. What each run pattern cannot match without: a base64 / base32 / hex
    run (`decode._b64_runs`: 16 characters of the alphabet, not inside a longer run) is
    kept only when it holds an upper-case letter, holds no lower-case one, or is hex
    digits throughout (a run of lower-case words and digits, ``chatcmpl-2ba16d...``,
    ``snake_case_names``, is none of these; a run wrapped over lines is kept only when
    one of its lines is); separated hex pairs; ``0x``, ``\\x``, ``%hh``, ``\\u``, ``&#``.
    Outside ASCII: always True (the invisible-character runs are not looked for here)."""
    if encoded is None:
        if not text.isascii():
            return True
        encoded = text.encode("ascii")
    if _B64_RUN_SHAPE in encoded.translate(_B64_TABLE):
        for m in _RUN16.finditer(text):
            run = m.group()
            if not run.islower() or _HEX_ONLY.fullmatch(run) is not None:
                return True
    return _HEX_PAIRS_SHAPE in encoded.translate(_HEX_TABLE) or _ESCAPES.search(text) is not None
