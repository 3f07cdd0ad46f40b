"""Personal data and credentials hidden in encoded runs: the PII and secrets detectors rescan
what `decode.decode_spans` finds (base64, base32, hex, percent-encoding, escapes, entities,
invisible-character smuggling), so ``Z2hwX0...`` is judged like the GitHub token it encodes.

A hit inside a decoded run is reported over the whole encoded run in the original text (the
only span of the original that holds the value), with the run's decoding chain in
`Candidate.encoding` and `via`; redaction then replaces the encoded run. The work is bounded
by the same limits as the injection rescan (at most `decode.Limits.max_spans` spans and
`max_decoded_chars` decoded characters per text, runs cut at `max_run_chars`), with one
difference: a decoded run needs no space and no share of letters to count (a key, a card
number or an address is one token), only valid UTF-8 with few control characters.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

from haltgate.governance.guardrails import decode
from haltgate.governance.guardrails.base import Candidate

RESCAN_LIMITS = dataclasses.replace(
    decode.DEFAULT_LIMITS, min_letter_ratio=0.0, require_word_break=False
)
"""The injection rescan's bounds, with the text test relaxed for single tokens."""

_CACHE_MAX_CHARS = 65536
"""Texts up to this long keep their spans for the next detector (PII and secrets run on the
same text one after the other); longer ones are decoded per detector."""


@functools.lru_cache(maxsize=8)
def _cached_spans(text: str) -> tuple[decode.DecodedSpan, ...]:
    return tuple(decode.decode_spans(text, RESCAN_LIMITS))


def outer_spans(text: str) -> tuple[decode.DecodedSpan, ...]:
    """The outermost decoded spans of `text`, each rendered with its nested spans decoded."""
    if len(text) <= _CACHE_MAX_CHARS:
        spans = _cached_spans(text)
    else:
        spans = tuple(decode.decode_spans(text, RESCAN_LIMITS))
    return tuple(s for s in spans if s.depth == 1)


def rescan_decoded(text: str, find: Callable[[str], list[Candidate]]) -> list[Candidate]:
    """Candidates `find` reports in the decoded content of `text`'s encoded runs, each moved
    onto its encoded run and naming the run's encoding."""
    if len(text) < 8:  # no encoded run holding a finding is shorter
        return []
    out: list[Candidate] = []
    for span in outer_spans(text):
        for c in find(span.rendered):
            out.append(
                dataclasses.replace(
                    c,
                    start=span.start,
                    end=span.end,
                    via=span.encoding,
                    encoding=span.encoding,
                )
            )
    return out
