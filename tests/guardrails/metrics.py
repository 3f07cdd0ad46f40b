"""Precision / recall bookkeeping shared by the tests and bench/guardrails.py."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tests.guardrails.corpus import Sample


@dataclass(frozen=True, slots=True)
class Scores:
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def fp_rate(self) -> float:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0


def evaluate(samples: Iterable[Sample], flagged: Callable[[Sample], bool]) -> Scores:
    """Count outcomes of `flagged` over labelled samples."""
    tp = fp = tn = fn = 0
    for s in samples:
        hit = flagged(s)
        if s.label and hit:
            tp += 1
        elif s.label:
            fn += 1
        elif hit:
            fp += 1
        else:
            tn += 1
    return Scores(tp, fp, tn, fn)
