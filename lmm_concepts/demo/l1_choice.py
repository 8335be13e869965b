"""How the demo sets Semi-NMF's l1 (shared by the random dictionary): a rule computed on the train split only.

`--l1 cv` (the default) tries each scale-free candidate of `L1_GRID` — l1 as a fraction of the training rows' RMS
norm (`L1Rule.relative`), so the same candidates mean the same on any model — and keeps the one whose Semi-NMF
recovers the world's attribute values best on held-out *training* data: the train split is cut in two halves
(seeded); Semi-NMF (the demo's K and seed) is fitted on one half, each value's concept chosen there and scored by
AUROC on the other half (`concept_recovery`, the demo's metric), and the other way round; a candidate's score is
the mean over the two folds. Ties go to the larger l1 (the sparser codes). The test split is never read.

`--l1 <number>` (absolute) or an l1 rule (`rms:0.03`, `active:10`) skips the search; a rule is resolved on the
train split. Either way the absolute value is what Semi-NMF and the random dictionary use, recorded in results.json
(`l1`) with the candidates' scores (`l1_choice`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from lmm_concepts.dictionary.l1_rule import L1Rule, resolve_l1
from lmm_concepts.dictionary.semi_nmf import SemiNMF
from lmm_concepts.errors import InputError
from lmm_concepts.metrics.recovery import concept_recovery

L1_GRID: tuple[str, ...] = ("rms:0.1", "rms:0.03", "rms:0.01", "rms:0.003")
"""The candidates of `--l1 cv`: on the toy's final layer (RMS norm 9.5) l1 = 0.95, 0.28, 0.095, 0.028."""


def parse_l1(spec: str) -> L1Rule | None:
    """None for "cv", else the rule (a number is an absolute l1); a clear error for anything else."""
    return None if spec.strip().lower() == "cv" else L1Rule.parse(spec)


def choose_l1(
    Z: Float[Tensor, "n d"],
    attributes: Sequence[Mapping[str, Any]],
    n_concepts: int,
    *,
    seed: int = 0,
    device: str = "cpu",
    grid: Sequence[str] = L1_GRID,
) -> tuple[float, dict[str, Any]]:
    """(absolute l1, the search's record) by the module docstring's two-fold rule on the training rows `Z`."""
    if Z.shape[0] != len(attributes):
        raise ValueError(f"{Z.shape[0]} rows but {len(attributes)} attribute records")
    if Z.shape[0] < 4:
        raise InputError(f"--l1 cv needs at least 4 training samples to cut in two folds, got {Z.shape[0]}: raise "
                         "--n_train or pass --l1 <number>")
    order = torch.randperm(Z.shape[0], generator=torch.Generator().manual_seed(seed)).tolist()
    halves = [order[: len(order) // 2], order[len(order) // 2 :]]
    rows = []
    for spec in grid:
        l1 = resolve_l1(spec, Z, n_concepts)
        scores = []
        for fit_rows, score_rows in (halves, halves[::-1]):
            dico = SemiNMF(n_concepts, l1=l1, seed=seed, device=device).fit(Z[fit_rows])
            rec = concept_recovery(dico.encode(Z[fit_rows]), [attributes[i] for i in fit_rows],
                                   dico.encode(Z[score_rows]), [attributes[i] for i in score_rows])
            scores.append(rec.mean_test_auroc)
        scored = [s for s in scores if s is not None]
        rows.append({"rule": spec, "l1": l1, "folds": scores,
                     "score": sum(scored) / len(scored) if scored else None})
    valid = [r for r in rows if r["score"] is not None]
    if not valid:
        raise InputError("--l1 cv: no attribute value could be scored on either fold (a value needs samples with it in "
                         "one half, with and without it in the other); raise --n_train or pass --l1 <number>")
    best = max(valid, key=lambda r: (r["score"], r["l1"]))
    return best["l1"], {"rule": "cv", "chosen": best["rule"], "candidates": rows}
