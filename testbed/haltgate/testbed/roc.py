"""Ranking figures shared by the model training and the model benchmarks (pure, no NumPy)."""

from __future__ import annotations


def roc_auc(pos: list[float], neg: list[float]) -> float:
    """Area under the ROC curve of scores ``pos`` (attacks) against ``neg`` (benign), by
    ranks with ties averaged (Mann-Whitney U); NaN when either side is empty."""
    ranked = sorted([(s, 1) for s in pos] + [(s, 0) for s in neg])
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        rank_sum += (i + j + 1) / 2 * sum(lab for _, lab in ranked[i:j])
        i = j
    n_p, n_n = len(pos), len(neg)
    return (rank_sum - n_p * (n_p + 1) / 2) / (n_p * n_n) if n_p and n_n else float("nan")
