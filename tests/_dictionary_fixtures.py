"""Small seeded data and fitted dictionaries shared by the baseline, sae-lens and CLI tests."""

from __future__ import annotations

import torch

import lmm_concepts as lc

N, D, K = 240, 16, 5


def planted(n: int = N, d: int = D, k: int = K, seed: int = 0) -> torch.Tensor:
    """Signed planted Semi-NMF data [n, d] (2 active concepts per sample, noise 0.05)."""
    return lc.planted_dictionary(n, d, k, 2, seed=seed).Z


def blobs(n_per: int = 40, d: int = D, k: int = K, seed: int = 0) -> torch.Tensor:
    """k well-separated Gaussian clusters [k·n_per, d]: a KMeans problem with one clear answer."""
    g = torch.Generator().manual_seed(seed)
    centres = 6 * torch.randn(k, d, generator=g)
    return (centres[:, None, :] + torch.randn(k, n_per, d, generator=g)).reshape(-1, d)


#: every learner, built for the tiny data (fast settings); NMF gets non-negative data
LEARNERS = {
    "semi_nmf": lambda: lc.SemiNMF(K, l1=0.2, max_iter=50),
    "pca": lambda: lc.PCA(K),
    "kmeans": lambda: lc.KMeans(K),
    "kmeans_distance": lambda: lc.KMeans(K, activation="distance"),
    "simple": lambda: lc.Simple(K),
    "nmf": lambda: lc.NMF(K, l1=0.1, max_iter=100),
    "random": lambda: lc.RandomDictionary(K, l1=0.2),
    "sae_standard": lambda: lc.SAEDictionary(
        K, kind="standard", l1_coefficient=0.3, lr=1e-2, training_samples=6000, batch_size=60
    ),
    "sae_topk": lambda: lc.SAEDictionary(K, kind="topk", k=2, lr=1e-2, training_samples=6000, batch_size=60),
}


def data_for(name: str) -> torch.Tensor:
    Z = planted()
    return Z.abs() if name == "nmf" else Z
