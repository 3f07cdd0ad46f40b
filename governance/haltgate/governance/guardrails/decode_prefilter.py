"""Cheap necessary conditions for `decode`'s run patterns, so ordinary prose skips them.

Each check maps an ASCII text through a byte table (one C pass, no regex engine stepping
through every word) and looks for the shape the pattern cannot match without: a base64 /
base32 / hex run needs 16 characters of its alphabet in a row; separated hex pairs need two
hex digits, a separator and two more. A text outside ASCII is always let through (its
patterns then run as before). Both checks only ever skip a pattern that would have found
nothing; tests/guardrails/test_scan_fast_paths.py compares the spans with and without them.
"""

from __future__ import annotations

_B64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_HEX_SEPARATORS = frozenset(b" :,-")

_B64_TABLE = bytes(ord("a") if b in _B64_ALPHABET else ord(" ") for b in range(256))
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
