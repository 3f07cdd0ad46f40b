"""Prompt-injection and jailbreak detection.

Layered:

1. Pattern stage (always, fast): phrase patterns of the known attack families matched on every
   normalised view of the text (`normalize.views`: homoglyphs, invisible characters,
   leetspeak, split words, rot13, base64/hex/percent/tag-character payloads). Each family has a
   weight; the text's score is the noisy-or of the strongest hit per family, so one strong
   phrase or several weak ones cross the threshold. A hit exposed only by de-obfuscation
   scores higher: hiding an instruction is itself a signal.
2. Fast model stage (optional, ``promptInjection.fastModel``): the character n-gram linear
   model of `ngram.py` scores every window of the text; windows over the channel's
   calibrated threshold become findings, stacked with the patterns by noisy-or, and tell
   the model stage where to look.
3. Model stage (optional, `haltgate[guard-model]`): see `onnx_model.py`. It is consulted for
   texts whose pattern score is below the threshold (on windows around the fast stage's
   spans when there are any), and can only add findings. A text holding encoded spans
   (`decode.py`) is also scored with them decoded (`_model_hit`).

Families (the `type` of a finding): ``ignore_instructions``, ``new_instructions``,
``role_override``, ``prompt_exfiltration``, ``chat_template``, ``addressed_to_ai``,
``data_exfiltration``, ``safety_bypass``, ``concealment``, ``tool_coercion``. The rule
tables are in `injection_rules`, their matching in `rule_matching`; this module scores the
hits and runs the model stage.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, Protocol, runtime_checkable

from haltgate.governance.guardrails import decode, ngram, normalize, quoted_context
from haltgate.governance.guardrails.base import CHANNELS, Candidate, Channel
from haltgate.governance.guardrails.injection_rules import (
    IN_DOCUMENTS,
    RULES,
    SQUASHED_RULES,
    Rule,
)
from haltgate.governance.guardrails.model_clock import metered
from haltgate.governance.guardrails.rule_matching import RuleSet

NAME = "prompt_injection"

# A hit found only through de-obfuscation gets this much added (capped at 0.99).
OBFUSCATION_BONUS = 0.1

_REGULAR = RuleSet(RULES)
_SQUASHED = RuleSet(SQUASHED_RULES)
_MAX_HITS_PER_VIEW = 64
# The model stage reads this many characters around each fast-stage span (at most 4 spans).
MODEL_MARGIN = 400
_MAX_MODEL_SPANS = 4
DECODED_CONTEXT_MIN = 0.1
"""The model reads a text with its encoded spans decoded in place only when their decoded
content alone scores at least this: the context ("decode this for me") must not turn
harmless decoded text into an attack (chosen on the development set, docs section 4)."""


_JSON_BOUNDARY = re.compile(r'"[ \t]*[,\]}][^"\n]{0,16}\n|[\[{,][ \t]*\n[ \t]*"')
"""A phrase hit whose words run from one JSON element into the next (``"...rule",`` newline
``"developer_prompt``) reads across the document's structure, not a sentence: dropped. A
key and its value (``"bypass": "all_safety"``) may be one instruction and still count.
`Guardrails.scan_json` joins a parsed document's strings with blank lines, so an attack
split over two fields of a parsed document is still read; this concerns JSON scanned as
plain text only."""


_IDENTIFIER = re.compile(
    r"(?:ignore|disregard|forget|override|bypass|disable|reveal|show|print|send|developer)"
    r"(?:_[a-z0-9]{2,})+",
    re.IGNORECASE,
)
_NAME_GOES_ON = re.compile(r"_[A-Za-z0-9]")
_IN_DOCUMENTS = re.compile(IN_DOCUMENTS, re.IGNORECASE)


def _plain_exception(text: str, start: int, end: int) -> bool:
    """A letters-only hit that the regular view's exceptions rule out: a long identifier
    (`_long_identifier`) or "ignore instructions" followed by where they are ("... inside
    retrieved documents", `injection_rules.IN_DOCUMENTS`)."""
    return _long_identifier(text, start, end) or _IN_DOCUMENTS.match(text, end) is not None


def _long_identifier(text: str, start: int, end: int) -> bool:
    """Whether text[start:end] is a snake-case identifier that starts with a rule verb and
    goes on after it (``ignore_instructions_from_tools``, an option name): the letters-only
    view, which drops the ``_``, must not read it as "ignore instructions". A two-part name
    (``ignore_rules``, ``DISREGARD_DIRECTIVES=true``) still counts: pseudo-code injections
    are written that way."""
    return (
        _IDENTIFIER.fullmatch(text, start, end) is not None
        and _NAME_GOES_ON.match(text, end) is not None
    )


def _drop_shadowed(cands: list[Candidate]) -> list[Candidate]:
    """Drop de-obfuscated hits that only repeat a plain hit of the same family and span.

    The squashed and leetspeak views also see plain text; their hits must not earn the
    obfuscation bonus for text that was never obfuscated.
    """
    plain = [c for c in cands if c.via is None]
    if not plain:
        return cands
    out = list(plain)
    for c in cands:
        if c.via is None:
            continue
        if any(p.entity == c.entity and p.start < c.end and c.start < p.end for p in plain):
            continue
        out.append(c)
    return out


def noisy_or(scores: Sequence[float]) -> float:
    """Combine independent evidence: 1 - prod(1 - s)."""
    miss = 1.0
    for s in scores:
        miss *= 1.0 - s
    return 1.0 - miss


ModelScorer = Callable[[str], float]

Stages = Literal["all", "without_model", "model_only"]
"""Which stages `InjectionDetector.detect` reports: all of them; all but the model stage;
or only the model stage's finding (the other stages still run, to decide whether the model
is asked and where it looks). A streamed answer is scanned ``without_model`` on every
piece and ``model_only`` on whole sentences with their context (`stream_scanner`)."""


class ModelLimits(Protocol):
    """Block / advisory thresholds of the model stage for one channel."""

    @property
    def block(self) -> float: ...

    @property
    def advisory(self) -> float: ...


@runtime_checkable
class ChannelScorer(Protocol):
    """A model scorer that reads a text per channel (`onnx_model.OnnxInjectionScorer`)."""

    def limits(self, channel: str) -> ModelLimits: ...

    def __call__(self, text: str, channel: str = "request") -> float: ...


class InjectionDetector:
    """Pattern stage, plus an optional model scorer for texts the patterns do not settle."""

    name = NAME

    def __init__(
        self,
        *,
        limits: decode.Limits = decode.DEFAULT_LIMITS,
        model: ModelScorer | None = None,
        model_min: float = 0.9,
        model_advisory: float = 0.7,
        fast_model: ngram.NgramModel | None = None,
        model_thresholds: Mapping[str, ModelLimits] | None = None,
    ) -> None:
        """`model` maps a text to an injection probability; it runs when no strong pattern
        fired (pattern score < 0.9). From `model_min` on its finding acts like any other;
        between `model_advisory` and `model_min` it is advisory (logged and adding risk,
        never blocking): the embedding probe is much less precise than the patterns (see
        docs/guardrails.md, section 6). `model_thresholds` overrides both per channel
        (``request``, ``document``): the calibrated limits a scorer ships with
        (`onnx_model.OnnxInjectionScorer.thresholds`)."""
        self._limits = limits
        self._model = model
        self._model_min = model_min
        self._model_advisory = model_advisory
        self._model_thresholds = dict(model_thresholds or {})
        self._fast = fast_model

    @property
    def has_model(self) -> bool:
        """Whether a model stage is configured."""
        return self._model is not None

    @property
    def deterministic(self) -> bool:
        """Without the model stage, the same text always gets the same candidates (the
        patterns and the n-gram stage are pure; the model stage runs under a per-call time
        budget). See `Guardrails.deterministic`."""
        return self._model is None

    def model_limits(self, channel: str) -> tuple[float, float]:
        """(block, advisory) of the model stage for `channel`."""
        lim = self._model_thresholds.get(channel)
        if lim is None:
            return self._model_min, self._model_advisory
        return lim.block, lim.advisory

    def pattern_candidates(self, text: str) -> list[Candidate]:
        """Pattern stage only: one candidate per (family, span), scores not yet combined."""
        return self._patterns(text)[0]

    def _patterns(self, text: str) -> tuple[list[Candidate], str]:
        """`pattern_candidates` and the folded text (the first view), which the fast stage
        reads too and need not fold again."""
        simple = normalize.simple_views(text, self._limits)
        if (
            simple is not None
            and next(_REGULAR.matches(simple[0], None, words=True), None) is None
            and next(_SQUASHED.matches(simple[1], None, words=False), None) is None
        ):
            return [], simple[0]  # no rule matches either of the two views it has
        hits: dict[tuple[str, int, int], Candidate] = {}
        folded: str | None = None
        for view in normalize.views(text, self._limits):
            if folded is None:
                folded = view.text  # views() yields fold(text) first
            n = 0
            vt = view.text
            ruleset = _SQUASHED if view.squashed else _REGULAR
            for rule, m in ruleset.matches(vt, view.focus, words=not view.squashed):
                n += 1
                if n > _MAX_HITS_PER_VIEW:
                    break
                self._add_hit(hits, view, rule, m)
        cands = _drop_shadowed(
            [
                c
                for c in hits.values()
                # a fake chat turn may well be written as JSON
                if (
                    c.entity == "chat_template"
                    or _JSON_BOUNDARY.search(text, c.start, c.end) is None
                )
                and not (c.via == "split_words" and _plain_exception(text, c.start, c.end))
            ]
        )
        return cands, normalize.fold(text) if folded is None else folded

    @staticmethod
    def _add_hit(
        hits: dict[tuple[str, int, int], Candidate],
        view: normalize.View,
        rule: Rule,
        m: re.Match[str],
    ) -> None:
        score = rule.weight
        if view.via is not None:
            score = min(0.99, score + OBFUSCATION_BONUS)
        start, end = view.to_origin(m.start(), m.end())
        key = (rule.family, start, end)
        old = hits.get(key)
        # A plain hit of the same span wins over its de-obfuscated twin; between two rules
        # of one family matching the same span on the same footing, the stronger counts.
        if old is None or (old.score < score and (old.via is not None or view.via is None)):
            hits[key] = Candidate(rule.family, start, end, score, view.via, encoding=view.encoding)

    def _model_hit(self, text: str, model: ModelScorer, block: float | None = None) -> Candidate:
        """The model's candidate: its score of `text` as written or, when higher and at least
        blocking, of what `text`'s encoded spans decode to (then spanning the encoded runs
        and naming their encodings). Decoded evidence has no advisory band."""
        # Every forward pass is charged to the call's model time (model_clock).
        hit = Candidate("model", 0, len(text), metered(model, text), "model")
        spans = decode.decode_spans(text, self._limits, kinds=decode.ALL_KINDS)
        if not spans:
            return hit
        runs: dict[tuple[int, int], str] = {}
        for s in spans:  # a nested span follows its outer one: the longest chain wins
            runs[(s.start, s.end)] = s.encoding
        score = metered(model, "\n".join(s.rendered for s in spans if s.depth == 1))
        if score >= DECODED_CONTEXT_MIN:
            score = max(score, metered(model, decode.decoded_view(text, spans)))
        if score <= hit.score or score < (self._model_min if block is None else block):
            return hit
        return Candidate(
            "model",
            min(a for a, _ in runs),
            max(b for _, b in runs),
            score,
            "model",
            encoding=",".join(runs[k] for k in sorted(runs)),
        )

    def detect(
        self, text: str, *, channel: Channel = "request", stages: Stages = "all"
    ) -> list[Candidate]:
        """Candidates with their scores raised to the text's combined score. The fast stage
        holds `text`'s windows to `channel`'s calibrated threshold, and the model stage reads
        it with `channel`'s window length and thresholds (the engine says whether the text is
        request text or a tool result / document). `stages` limits what is reported
        (`Stages`)."""
        if stages not in ("all", "without_model", "model_only"):
            raise ValueError(f"stages: {stages!r} is not all, without_model or model_only")
        found = self._detect(text, channel, model=stages != "without_model")
        if stages == "model_only":
            return [c for c in found if c.entity == "model"]
        return found

    def _detect(self, text: str, channel: Channel, *, model: bool) -> list[Candidate]:
        if channel not in CHANNELS:
            raise ValueError(f"channel: {channel!r} is not one of {', '.join(CHANNELS)}")
        chan = channel
        cands, folded = self._patterns(text)
        if channel in quoted_context.CHANNELS:
            # A phrase quoted and discussed ("the example 'ignore ...' is easy to filter"):
            # advisory, not blocking (quoted_context).
            cands = quoted_context.demote(text, cands)
        best: dict[str, float] = {}
        for c in cands:
            if not c.advisory:
                best[c.entity] = max(best.get(c.entity, 0.0), c.score)
        spans: tuple[ngram.Span, ...] = ()
        if self._fast is not None:
            spans = self._fast.score(text, channel, folded=folded).spans
            if spans:
                limit = self._fast.thresholds[channel]
                fast = [fast_evidence(s.probability, limit) for s in spans]
                cands.extend(
                    Candidate("ngram_model", s.start, s.end, e, "ngram")
                    for s, e in zip(spans, fast, strict=True)
                )
                best["ngram_model"] = max(fast)
        combined = noisy_or(list(best.values()))
        if model and self._model is not None and combined < 0.9:
            block, advisory = self.model_limits(chan)
            scorer = self._model
            if isinstance(scorer, ChannelScorer):  # reads the channel's window length
                scorer = functools.partial(scorer, channel=chan)
            hit = (
                self._windowed_hit(text, spans, scorer, block)
                if spans
                else self._model_hit(text, scorer, block)
            )
            p = hit.score
            if p >= block and p > combined:
                cands.append(hit)
                combined = noisy_or([combined, p]) if combined > 0 else p
            elif p >= advisory and p > combined:
                # Reported at its own score and never raised by the patterns' score.
                cands.append(dataclasses.replace(hit, advisory=True))
        if not cands:
            return []
        return [
            c if c.advisory else dataclasses.replace(c, score=max(c.score, combined)) for c in cands
        ]

    def _windowed_hit(
        self,
        text: str,
        spans: tuple[ngram.Span, ...],
        model: ModelScorer,
        block: float | None = None,
    ) -> Candidate:
        """The model's candidate read on windows of +-MODEL_MARGIN characters around the fast
        stage's spans (the most suspicious first, at most _MAX_MODEL_SPANS); best one wins."""
        best: Candidate | None = None
        for s in sorted(spans, key=lambda s: -s.probability)[:_MAX_MODEL_SPANS]:
            a, b = max(0, s.start - MODEL_MARGIN), min(len(text), s.end + MODEL_MARGIN)
            hit = self._model_hit(text[a:b], model, block)
            if best is None or hit.score > best.score:
                best = dataclasses.replace(hit, start=hit.start + a, end=hit.end + a)
        assert best is not None  # spans is not empty
        return best


def fast_evidence(probability: float, threshold: float) -> float:
    """Map a window probability at or over its channel threshold onto 0.5 .. 0.99, the
    scale of the patterns' scores (0.5 blocks under the default detector threshold)."""
    span = max(1e-9, 1.0 - threshold)
    return min(0.99, 0.5 + 0.49 * max(0.0, probability - threshold) / span)
