"""Guardrails on text that arrives in pieces (streamed answers): `StreamScanner`.

Two readings of the same stream:

- the **pattern, PII and secrets stages** (and the injection detector's n-gram stage) scan
  a sliding buffer: the held-back tail of what came before plus what is new, so an entity
  or a phrase split over two pieces is still seen whole;
- the **model stage** scores whole units only: text up to a sentence boundary (or, for a
  sentence longer than the hold-back, up to what is about to be released), read together
  with up to `MODEL_CONTEXT` characters of what precedes it, starting at a sentence or word
  start. A bare fragment is never scored on its own: a fine-tuned classifier scores a cut
  piece of prose (' work. Paragraph 4 explai') like an attack, and a unit that reads fewer
  than `MODEL_MIN_WORDS` words even with its context (a whole answer of two words) is not
  scored at all.

Each character is scored by the model about twice (in its unit, then as context of the
next), instead of once per release of the sliding buffer. Released text has always been
scored by every stage first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from haltgate.governance.guardrails.base import Channel, Finding, ScanDirection, default_channel
from haltgate.governance.guardrails.injection import Stages
from haltgate.governance.guardrails.redaction import Redactor, apply_redactions

if TYPE_CHECKING:
    from haltgate.governance.guardrails.engine import Guardrails

__all__ = ["MODEL_CONTEXT", "MODEL_MIN_WORDS", "StreamChunk", "StreamScanner", "words"]

MODEL_CONTEXT = 240
"""At most this many characters before a unit are read with it by the model stage."""
MODEL_MIN_WORDS = 4
"""A text the model stage reads in a stream has at least this many words (with context)."""

_BOUNDARY = re.compile(r"(?<=[.!?])\s+|\n+")
"""Sentence ends, as the model's own windows cut (`onnx_model`)."""
_WORD = re.compile(r"\S+")


def words(text: str) -> int:
    """Number of whitespace-separated words of `text`."""
    return sum(1 for _ in _WORD.finditer(text))


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """What a `StreamScanner` releases: text safe to send on, and findings in it."""

    text: str
    findings: tuple[Finding, ...] = ()
    blocked: bool = False
    risk: float = 0.0
    errors: tuple[str, ...] = ()


class StreamScanner:
    """Scans streamed text and redacts it without splitting an entity across two pieces.

    `feed` returns the text that may be sent now (redacted); it holds back the last
    `holdback` characters, and never cuts inside a finding, so a card number or a phrase
    split over two deltas is still seen whole. `close` releases the rest. After a blocking
    finding the caller should end the stream (``blocked`` is True); the held-back text of a
    blocked stream is never released. Offsets of findings count from the stream's start.

    Text is scanned only once at least `min_release` characters past the hold-back have
    arrived: streams come a few characters per delta, and rescanning the held-back window
    for each of them would cost a full scan per token. The model stage reads whole
    sentences with their context (module docstring).
    """

    def __init__(
        self,
        guardrails: Guardrails,
        direction: ScanDirection,
        *,
        holdback: int,
        min_release: int = 64,
        channel: Channel | None = None,
    ) -> None:
        """Prefer `Guardrails.stream`."""
        self._g = guardrails
        self._direction = direction
        self._channel: Channel = channel or default_channel(direction)
        self._holdback = max(0, holdback)
        self._min_release = max(1, min_release)
        self._redactor = Redactor()
        self._buf = ""
        self._base = 0
        self._blocked = False
        self._model = guardrails.model_stage(direction)
        self._scored = 0
        """Stream offset up to which the model stage has read the text."""
        self._context = ""
        """Up to MODEL_CONTEXT characters just before `_scored`, from a sentence or word start."""

    @property
    def blocked(self) -> bool:
        """True once any released piece was blocked."""
        return self._blocked

    def feed(self, text: str) -> StreamChunk:
        """Add `text`; return what can be released now."""
        self._buf += text
        if self._blocked:
            return StreamChunk("", blocked=True)
        if len(self._buf) < self._holdback + self._min_release:
            return StreamChunk("")
        return self._release(final=False)

    def close(self) -> StreamChunk:
        """End of stream: release everything still held."""
        return self._release(final=True)

    def _release(self, *, final: bool) -> StreamChunk:
        buf = self._buf
        if not buf:
            return StreamChunk("", blocked=self._blocked)
        stages: Stages = "without_model" if self._model else "all"
        out = self._g._scan_text(
            buf, self._direction, Redactor(), None, channel=self._channel, stages=stages
        )
        cut = len(buf) if final else max(0, len(buf) - self._holdback)
        for f in out.findings:
            if f.start < cut < f.end:
                cut = f.start
        released = [f for f in out.findings if f.end <= cut]
        errors = list(out.errors)
        blocked = any(f.action == "block" and not f.monitor_only for f in released) or (
            bool(out.errors) and out.blocked
        )
        model_found: list[Finding] = []
        if self._model and not blocked:
            cut, model_found, model_blocked = self._model_unit(buf, cut, final, errors)
            blocked = model_blocked
        if blocked:
            self._blocked = True
        redact = [
            (f.start, f.end, f.type)
            for f in released
            if f.action == "redact" and not f.monitor_only
        ]
        piece = buf[:cut]
        if redact:
            piece = apply_redactions(piece, redact, self._redactor)
        findings = tuple(
            replace(f, start=f.start + self._base, end=f.end + self._base) for f in released
        ) + tuple(model_found)
        risk = sum(f.risk for f in (*released, *model_found) if not f.monitor_only)
        self._buf = buf[cut:]
        self._base += cut
        if self._blocked:
            piece = ""
        return StreamChunk(piece, findings, self._blocked, risk, tuple(errors))

    def _model_unit(
        self, buf: str, cut: int, final: bool, errors: list[str]
    ) -> tuple[int, list[Finding], bool]:
        """Score the next whole unit of `buf` with the model stage: (the cut, never past the
        scored text; model findings with stream offsets; whether they block). `errors`
        gets the model stage's errors."""
        start = self._scored - self._base  # index in buf where unscored text begins
        if final:
            end = len(buf)
        else:
            ends = [m.end() for m in _BOUNDARY.finditer(buf, start)]
            end = max([cut, *ends])
            if end == cut and cut > start:  # a sentence longer than the hold-back
                space = max(buf.rfind(" ", cut), buf.rfind("\n", cut))
                end = space if space > cut else cut  # read to a word's end at least
        if end <= start:
            return cut, [], False
        unit = buf[start:end]
        if not unit.strip():
            self._scored = self._base + end
            return cut, [], False
        text = self._context + unit
        if words(text) < MODEL_MIN_WORDS:
            if not final:
                return min(cut, start), [], False  # wait for more words
            self._advance(end, text)
            return cut, [], False
        out = self._g._scan_text(
            text, self._direction, Redactor(), None, channel=self._channel, stages="model_only"
        )
        errors.extend(out.errors)
        origin = self._scored - len(self._context)
        found = [replace(f, start=origin + f.start, end=origin + f.end) for f in out.findings]
        self._advance(end, text)
        blocked = out.blocked or any(f.action == "block" and not f.monitor_only for f in found)
        return min(cut, end), found, blocked

    def _advance(self, end: int, text: str) -> None:
        """The model has read the stream up to buf index `end`; keep the context."""
        self._scored = self._base + end
        tail = text[-MODEL_CONTEXT:]
        if len(text) > MODEL_CONTEXT:
            starts = [m.end() for m in _BOUNDARY.finditer(tail)]
            if starts and starts[0] < len(tail):
                tail = tail[starts[0] :]
            else:
                space = tail.find(" ")
                tail = tail[space + 1 :] if 0 <= space < len(tail) - 1 else tail
        self._context = tail
