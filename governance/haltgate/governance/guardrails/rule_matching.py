"""Running rule tables over a text: trigger words first, then each rule's regex near them.

An Aho-Corasick automaton finds every trigger occurrence in one pass; a rule's regex then
runs only at the start of the words holding its triggers (anchored rules) or in windows
around them. The rules themselves are in `injection_rules`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import ahocorasick

from haltgate.governance.guardrails.injection_rules import Rule


@dataclass(frozen=True, slots=True)
class _Compiled:
    rule: Rule
    regex: re.Pattern[str]


_WINDOW_FORWARD = 240
"""Characters after a trigger a match may reach (the longest rule tail)."""
_MAX_WINDOWS = 24
"""More trigger occurrences than this for one rule: scan the whole text once instead."""
_MIN_LEAD = 16
"""How far back from a trigger a window (or the start of an anchored word) may reach, at least."""


class RuleSet:
    """Rules plus one Aho-Corasick automaton over all their trigger words.

    One pass of the automaton (C code) finds every trigger occurrence; each rule's regex then
    runs only on a few hundred characters around its own triggers. On long texts this is
    what keeps the pattern stage near the cost of a single regular expression scan.
    """

    def __init__(self, rules: Sequence[Rule]) -> None:
        # One regex per rule, not one alternation of all: CPython's engine tries every branch
        # of an alternation at every position.
        self.compiled = tuple(_Compiled(r, re.compile(r.pattern, re.MULTILINE)) for r in rules)
        by_trigger: dict[str, list[int]] = {}
        for i, r in enumerate(rules):
            for t in r.triggers:
                by_trigger.setdefault(t, []).append(i)
        self._automaton = ahocorasick.Automaton()
        for t, idx in by_trigger.items():
            # Short alphabetic triggers ("ai", "no") only count at the start of a word.
            self._automaton.add_word(t, (len(t), t.isalpha() and len(t) <= 3, tuple(idx)))
        self._automaton.make_automaton()

    def matches(
        self, text: str, focus: tuple[tuple[int, int], ...] | None, *, words: bool
    ) -> Iterator[tuple[Rule, re.Match[str]]]:
        """Every match of every rule near its triggers (inside `focus`, when given).

        `words`: the text has word boundaries (False for the squashed view, where an
        anchored rule is tried right at its trigger).
        """
        spots: dict[int, list[int]] = {}
        ranges = focus if focus is not None else ((0, len(text)),)
        for lo, hi in ranges:
            for end, (length, word_start, idx) in self._automaton.iter(text, lo, hi):
                pos = end - length + 1
                if word_start and pos > 0 and text[pos - 1].isalpha():
                    continue
                for i in idx:
                    spots.setdefault(i, []).append(pos)
        n = len(text)
        for i, positions in spots.items():
            compiled = self.compiled[i]
            rule = compiled.rule
            if rule.anchored:
                tried: set[int] = set()
                for p in positions:
                    start = p
                    if words and text[p].isalpha():
                        # back to the start of the word ("mail" in "email")
                        while start > 0 and p - start < _MIN_LEAD and text[start - 1].isalpha():
                            start -= 1
                    if start in tried:
                        continue
                    tried.add(start)
                    m = compiled.regex.match(text, start)
                    if m is not None:
                        yield rule, m
                continue
            # A trigger can sit a few characters into the match ("inst]" in "[inst]"):
            # never start a window right at it.
            back = max(rule.lead, _MIN_LEAD)
            if n <= back + _WINDOW_FORWARD or len(positions) > _MAX_WINDOWS:
                windows = [(0, n)]
            else:
                positions.sort()
                windows = []
                for p in positions:
                    lo, hi = max(0, p - back), min(n, p + _WINDOW_FORWARD)
                    if windows and lo <= windows[-1][1]:
                        windows[-1] = (windows[-1][0], max(windows[-1][1], hi))
                    else:
                        windows.append((lo, hi))
            for lo, hi in windows:
                yield from ((rule, m) for m in compiled.regex.finditer(text, lo, hi))
