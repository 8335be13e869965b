"""Overlap between the word sets of concepts (the paper's redundancy measure; lower is better).

    overlap = mean over ordered pairs i ≠ j of |T_i ∩ T_j| / |T_i|

Concepts with no words are left out (|T_i| = 0 has no ratio); with fewer than two concepts left the overlap is 0.
"""

from __future__ import annotations

from collections.abc import Sequence


def overlap(word_sets: Sequence[Sequence[str]]) -> float:
    sets = [set(w) for w in word_sets if len(w) > 0]
    if len(sets) < 2:
        return 0.0
    total = sum(len(a & b) / len(a) for i, a in enumerate(sets) for j, b in enumerate(sets) if i != j)
    return total / (len(sets) * (len(sets) - 1))
