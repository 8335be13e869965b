"""How much SAEDashboard's feature masking changes Semi-NMF codes (the caveat behind `lmm_concepts.export`).

SAEDashboard computes a batch of features with `FeatureMaskingContext`, which keeps only those features' rows of
`W_dec`. Our Semi-NMF SAE encodes by a non-negative lasso over every row, so keeping a subset answers another
problem. This fits Semi-NMF on a store's layer, keeps each pair of concepts in turn, and reports on how many rows a
kept concept's code changed.

    python -m benchmarks.export_masking runs/demo/reps/train --n-concepts 8
"""

from __future__ import annotations

import argparse
import itertools

import torch


def changed_share(sae, Z: torch.Tensor, keep: list[int]) -> torch.Tensor:
    """Per kept concept, the share of rows whose code differs once only `keep` rows of W_dec remain."""
    full = sae.encode(Z).detach()[:, keep]
    W = sae.W_dec.data.clone()
    sae.W_dec = torch.nn.Parameter(W[keep])
    try:
        masked = sae.encode(Z).detach()
    finally:
        sae.W_dec = torch.nn.Parameter(W)
    return ((masked - full).abs() > 1e-4 * (1 + full.abs())).float().mean(0)


def main() -> None:
    import lmm_concepts as lc

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    parser.add_argument("--layer", default="final")
    parser.add_argument("--n-concepts", type=int, default=8)
    parser.add_argument("--l1", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    Z = lc.RepresentationStore.open(args.store).layer(args.layer).float()
    sae = lc.SemiNMF(args.n_concepts, l1=args.l1, seed=args.seed).fit(Z).to_sae()
    first = changed_share(sae, Z, [0, 1])[0].item()
    pairs = [changed_share(sae, Z, list(p)) for p in itertools.combinations(range(args.n_concepts), 2)]
    shares = torch.cat(pairs)
    print(f"{Z.shape[0]} rows, K={args.n_concepts}, l1={args.l1}: keeping concepts 0 and 1 changes concept 0's code "
          f"on {100 * first:.1f} % of rows; over all pairs, a kept concept's code changes on {100 * shares.mean():.1f} "
          f"% of rows (min {100 * shares.min():.1f} %, max {100 * shares.max():.1f} %)")


if __name__ == "__main__":
    main()
