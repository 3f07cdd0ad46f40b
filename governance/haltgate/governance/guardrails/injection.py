"""Prompt-injection and jailbreak detection.

Layered:

1. Pattern stage (always, fast): phrase patterns of the known attack families matched on every
   normalised view of the text (`normalize.views`: homoglyphs, invisible characters,
   leetspeak, split words, rot13, base64/hex/percent/tag-character payloads). Each family has a
   weight; the text's score is the noisy-or of the strongest hit per family, so one strong
   phrase or several weak ones cross the threshold. A hit exposed only by de-obfuscation
   scores higher: hiding an instruction is itself a signal.
2. Model stage (optional, `haltgate[guard-model]`): see `model.py`. It is consulted for texts
   whose pattern score is below the threshold, and can only add findings.

Families (the `type` of a finding): ``ignore_instructions``, ``new_instructions``,
``role_override``, ``prompt_exfiltration``, ``chat_template``, ``addressed_to_ai``,
``data_exfiltration``, ``safety_bypass``, ``concealment``, ``tool_coercion``. The rule
tables are in `injection_rules`, their matching in `rule_matching`; this module scores the
hits and runs the model stage.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from haltgate.governance.guardrails import normalize
from haltgate.governance.guardrails.base import Candidate
from haltgate.governance.guardrails.injection_rules import RULES, SQUASHED_RULES, Rule
from haltgate.governance.guardrails.model_clock import metered
from haltgate.governance.guardrails.rule_matching import RuleSet

NAME = "prompt_injection"

# A hit found only through de-obfuscation gets this much added (capped at 0.99).
OBFUSCATION_BONUS = 0.1

_REGULAR = RuleSet(RULES)
_SQUASHED = RuleSet(SQUASHED_RULES)
_MAX_HITS_PER_VIEW = 64


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


class InjectionDetector:
    """Pattern stage, plus an optional model scorer for texts the patterns do not settle."""

    name = NAME

    def __init__(
        self,
        *,
        limits: normalize.Limits = normalize.DEFAULT_LIMITS,
        model: ModelScorer | None = None,
        model_min: float = 0.9,
        model_advisory: float = 0.7,
    ) -> None:
        """`model` maps a text to an injection probability; it runs when no strong pattern
        fired (pattern score < 0.9). From `model_min` on its finding acts like any other;
        between `model_advisory` and `model_min` it is advisory (logged and adding risk,
        never blocking): the embedding probe is much less precise than the patterns (see
        docs/guardrails.md, section 6)."""
        self._limits = limits
        self._model = model
        self._model_min = model_min
        self._model_advisory = model_advisory

    def pattern_candidates(self, text: str) -> list[Candidate]:
        """Pattern stage only: one candidate per (family, span), scores not yet combined."""
        hits: dict[tuple[str, int, int], Candidate] = {}
        for view in normalize.views(text, self._limits):
            n = 0
            vt = view.text
            ruleset = _SQUASHED if view.squashed else _REGULAR
            for rule, m in ruleset.matches(vt, view.focus, words=not view.squashed):
                n += 1
                if n > _MAX_HITS_PER_VIEW:
                    break
                self._add_hit(hits, view, rule, m)
        return _drop_shadowed(list(hits.values()))

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
            hits[key] = Candidate(rule.family, start, end, score, view.via)

    def detect(self, text: str) -> list[Candidate]:
        """Candidates with their scores raised to the text's combined score."""
        cands = self.pattern_candidates(text)
        best: dict[str, float] = {}
        for c in cands:
            best[c.entity] = max(best.get(c.entity, 0.0), c.score)
        combined = noisy_or(list(best.values()))
        if self._model is not None and combined < 0.9:
            p = metered(self._model, text)  # a call's model time is bounded (model_clock)
            if p >= self._model_min and p > combined:
                cands.append(Candidate("model", 0, len(text), p, "model"))
                combined = noisy_or([combined, p]) if combined > 0 else p
            elif p >= self._model_advisory and p > combined:
                # Reported at its own score and never raised by the patterns' score.
                cands.append(Candidate("model", 0, len(text), p, "model", advisory=True))
        if not cands:
            return []
        return [
            c if c.advisory else Candidate(c.entity, c.start, c.end, max(c.score, combined), c.via)
            for c in cands
        ]
