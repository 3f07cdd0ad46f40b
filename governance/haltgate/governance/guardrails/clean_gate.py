"""One pass per text that tells which detectors cannot find anything in it.

Most texts a policy scans are clean: the messages of a chat, the values of an answer.
Each detector already skips most of its work on them (literal prefilters, hints, byte
tables), but only after it was called, lower-cased the text, asked its literal gate,
looked for encoded runs and rescanned them: some twenty Python-level calls per detector
and text, each paid cold on a sidecar serving one call at a time. A detector that can say
what a text must hold for it to find anything (``gate_needs()`` returning `GateNeeds`:
the PII and secrets detectors do, from their own gates) is gated here instead: the
compiled policy puts the needs of every such detector of a direction together, and one
pass over a text (one Aho-Corasick pass over its lower-cased copy for all their
literals, one byte-table map for characters and runs, a handful of regular expression
searches only when the text holds the characters they need) says which of them may find
something. The others are not called. The needs are necessary conditions only, so the
gate never changes a finding; tests/guardrails/test_clean_gate.py compares every
development text with and without it.

Only ASCII texts are gated (the detectors' own literal gates lower-case ASCII letters
only, and the decoder's invisible-character runs are not ASCII): every detector runs on
any other text, as before. Detectors without ``gate_needs`` (the injection detector: its
n-gram stage reads every text) always run.

(A single regular expression joining every need was tried first: CPython's engine tries
every branch of an alternation at every position, and it cost 120-180 us on the small
chat's texts, against ~3 us for this pass.)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import ahocorasick

from haltgate.governance.guardrails import decode_prefilter
from haltgate.governance.guardrails.base import Detector

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GateNeeds:
    """What an ASCII text must hold for a detector to find anything in it: one of these.

    All are necessary conditions of the detector's candidates (a text that meets one may
    still hold none)."""

    literals: tuple[str, ...] = ()
    """Lower-case literals looked for in the lower-cased text."""
    chars: str = ""
    """Characters looked for in the text as written (``@``)."""
    digit_patterns: tuple[str, ...] = ()
    """Regular expressions searched only when the text holds a digit."""
    run_patterns: tuple[tuple[int, str], ...] = ()
    """(n, regular expression): searched only when the text holds a run of n characters
    of the base64 alphabets (`decode_prefilter.alphabet_map`)."""
    encoded_runs: bool = False
    """The detector rescans what encoded runs decode to (`decoded_rescan`): any text that
    may hold one (`decode_prefilter.may_hold_payload`)."""


@dataclass(frozen=True, slots=True)
class _Compiled:
    name: str
    chars: str
    digits: re.Pattern[str] | None
    runs: tuple[tuple[bytes, re.Pattern[str]], ...]
    encoded_runs: bool


_NOT_DIGITS = bytes(b for b in range(128) if not 0x30 <= b <= 0x39)
_NOTHING: frozenset[str] = frozenset()


class CleanGate:
    """The gate of one direction's detectors (those that say what they need)."""

    __slots__ = ("_automaton", "_compiled", "_encoded", "names")

    def __init__(self, detectors: Sequence[Detector]) -> None:
        names = [d.name for d in detectors]
        compiled: list[_Compiled] = []
        by_literal: dict[str, set[str]] = {}
        for d in detectors:
            needs_of = getattr(d, "gate_needs", None)
            if needs_of is None or names.count(d.name) > 1:
                continue  # two detectors of one name: told apart by name only, so not gated
            try:
                needs: GateNeeds = needs_of()
                if any(not lit or lit != lit.lower() for lit in needs.literals):
                    raise ValueError("a literal is empty or not lower-case")
                digits = (
                    re.compile("|".join(f"(?:{p})" for p in needs.digit_patterns))
                    if needs.digit_patterns
                    else None
                )
                runs = tuple((b"a" * n, re.compile(p)) for n, p in needs.run_patterns)
            except (ValueError, re.error) as e:  # never gate on what does not compile
                log.warning("guardrails: detector %s is not gated: %s", d.name, e)
                continue
            for lit in needs.literals:
                by_literal.setdefault(lit, set()).add(d.name)
            compiled.append(_Compiled(d.name, needs.chars, digits, runs, needs.encoded_runs))
        self.names = frozenset(c.name for c in compiled)
        """Names of the gated detectors."""
        self._compiled = tuple(compiled)
        self._encoded = frozenset(c.name for c in compiled if c.encoded_runs)
        self._automaton: ahocorasick.Automaton | None = None
        if by_literal:
            self._automaton = ahocorasick.Automaton()
            for lit, of in by_literal.items():
                self._automaton.add_word(lit, frozenset(of))
            self._automaton.make_automaton()

    def cannot_find(self, text: str) -> frozenset[str]:
        """Names of the gated detectors that cannot find anything in `text` (none when
        `text` is not ASCII)."""
        if not text.isascii():
            return _NOTHING
        may: set[str] = set()
        if self._automaton is not None:
            for _, of in self._automaton.iter(text.lower()):
                may.update(of)
        encoded = text.encode("ascii")
        alphabet: bytes | None = None
        digits: bool | None = None
        for c in self._compiled:
            if c.name in may:
                continue
            found = False
            for ch in c.chars:
                if ch in text:
                    found = True
                    break
            if not found and c.digits is not None:
                if digits is None:
                    digits = len(encoded.translate(None, _NOT_DIGITS)) > 0
                found = digits and c.digits.search(text) is not None
            if not found:
                for shape, rx in c.runs:
                    if alphabet is None:
                        alphabet = encoded.translate(decode_prefilter.ALPHABET_TABLE)
                    if shape in alphabet and rx.search(text) is not None:
                        found = True
                        break
            if found:
                may.add(c.name)
        if self._encoded and not self._encoded.issubset(may):
            if decode_prefilter.may_hold_payload(text, encoded):
                may.update(self._encoded)
        if not may:
            return self.names
        return self.names.difference(may)


def gate_for(detectors: Sequence[Detector]) -> CleanGate | None:
    """The gate of `detectors`, None when none of them can be gated."""
    gate = CleanGate(detectors)
    return gate if gate.names else None
