"""Planted Semi-NMF data with a known answer: Z = V·W_dec + noise, for recovery tests and benchmarks."""

from __future__ import annotations

from typing import NamedTuple

import torch
from jaxtyping import Float
from torch import Tensor


class PlantedDictionary(NamedTuple):
    """Data drawn from a known dictionary."""

    #: [n, d] samples: codes·atoms + Gaussian noise (signed)
    Z: Float[Tensor, "n d"]
    #: [K, d] the true atoms, unit norm, Gaussian directions
    W_dec: Float[Tensor, "K d"]
    #: [n, K] the true codes: s non-zeros per sample, drawn uniformly from [low, high]
    V: Float[Tensor, "n K"]


def planted_dictionary(
    n: int,
    d: int,
    n_concepts: int,
    n_active: int,
    *,
    noise: float = 0.05,
    low: float = 0.5,
    high: float = 2.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> PlantedDictionary:
    """n samples in d dimensions, each a sum of `n_active` of `n_concepts` unit Gaussian atoms with
    coefficients uniform in [low, high], plus noise of standard deviation `noise`. Same seed, same data."""
    if not 0 < n_active <= n_concepts:
        raise ValueError(f"n_active must be in [1, n_concepts={n_concepts}], got {n_active}")
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(n_concepts, d, generator=g, dtype=torch.float64)
    W /= torch.linalg.vector_norm(W, dim=1, keepdim=True)
    support = torch.rand(n, n_concepts, generator=g).argsort(dim=1)[:, :n_active]
    values = low + (high - low) * torch.rand(n, n_active, generator=g, dtype=torch.float64)
    V = torch.zeros(n, n_concepts, dtype=torch.float64).scatter_(1, support, values)
    Z = V @ W + noise * torch.randn(n, d, generator=g, dtype=torch.float64)
    return PlantedDictionary(Z.to(dtype), W.to(dtype), V.to(dtype))
