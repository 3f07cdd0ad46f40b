"""Which patterns of a table can match a text, from the literals they cannot match without.

Each pattern may name two groups of lower-case literals: its *hint* (one of them must be in
the lower-cased text) and its *prefilter* (likewise, and possibly for ASCII text only). One
Aho-Corasick pass over the lower-cased text finds which literals are present (literals of
one character are looked up directly); only the patterns whose groups are both satisfied
are returned, in table order. This answers exactly what testing ``any(h in low for h in
group)`` for every group of every pattern answers, without a Python loop over the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import ahocorasick


@dataclass(frozen=True, slots=True)
class Needs:
    """What one pattern needs in the lower-cased text (``None``: nothing)."""

    hint: tuple[str, ...] | None = None
    prefilter: tuple[str, ...] | None = None
    prefilter_ascii_only: bool = False
    """The prefilter holds for ASCII text only (a case-insensitive pattern: outside ASCII a
    letter has more case forms than its lower case)."""


_RUNNABLE_MAX = 1024
"""Sets of found literals remembered per gate (emptied when full)."""


class LiteralGate:
    """The patterns of a table (by index) that a lower-cased text lets run."""

    def __init__(self, table: Sequence[Needs]) -> None:
        self._table = tuple(table)
        literals = {
            lit
            for needs in self._table
            for group in (needs.hint, needs.prefilter)
            if group
            for lit in group
        }
        if any(not lit for lit in literals):
            raise ValueError("a literal of a pattern's needs is empty")
        self._single = tuple(sorted(lit for lit in literals if len(lit) == 1))
        self._automaton = ahocorasick.Automaton()
        for lit in sorted(lit for lit in literals if len(lit) > 1):
            self._automaton.add_word(lit, lit)
        self._has_words = len(self._automaton) > 0
        if self._has_words:
            self._automaton.make_automaton()
        self._by_literal: dict[str, tuple[int, ...]] = {}
        for lit in literals:
            self._by_literal[lit] = tuple(
                i
                for i, needs in enumerate(self._table)
                if (needs.hint and lit in needs.hint)
                or (needs.prefilter and lit in needs.prefilter)
            )
        self._runnable: dict[tuple[frozenset[str], bool], tuple[int, ...]] = {}
        self._always = {
            True: frozenset(i for i, n in enumerate(self._table) if not (n.hint or n.prefilter)),
            False: frozenset(
                i
                for i, n in enumerate(self._table)
                if not n.hint and (not n.prefilter or n.prefilter_ascii_only)
            ),
        }

    def present(self, low: str) -> set[str]:
        """The literals of the table that `low` holds."""
        found = {lit for lit in self._single if lit in low}
        if self._has_words:
            for _, lit in self._automaton.iter(low):
                found.add(lit)
        return found

    def runnable(self, low: str, ascii: bool) -> tuple[int, ...]:
        """Indices of the patterns `low` (the lower-cased text; `ascii`: the text is
        ASCII) lets run, in table order. They depend on nothing but the literals found and
        `ascii`, and a handful of such sets covers everyday text (none, ``.``, ``:``...):
        each is worked out once and remembered (bounded), a dictionary look-up afterwards
        instead of a Python loop over the candidates, which a call pays cold."""
        found = self.present(low)
        key = (frozenset(found), ascii)
        known = self._runnable.get(key)
        if known is None:
            known = self._work_out(found, ascii)
            if len(self._runnable) >= _RUNNABLE_MAX:
                self._runnable.clear()
            self._runnable[key] = known
        return known

    def _work_out(self, found: set[str], ascii: bool) -> tuple[int, ...]:
        candidates = set(self._always[ascii])
        for lit in found:
            candidates.update(self._by_literal[lit])
        out = []
        for i in sorted(candidates):
            needs = self._table[i]
            if needs.hint and found.isdisjoint(needs.hint):
                continue
            if (
                needs.prefilter
                and (ascii or not needs.prefilter_ascii_only)
                and found.isdisjoint(needs.prefilter)
            ):
                continue
            out.append(i)
        return tuple(out)
