"""KMeans baseline: concepts are cluster centres, codes are 1/(1 + distance) to each centre.

Notation: Z [n, d] samples as rows, W_dec [K, d] the centres c_k (in data units, not normalised), codes
V [n, K] with V_nk = 1/(1 + ‖z_n − c_k‖₂) — the paper's activation for KMeans — or the plain distances with
`activation="distance"`. Fitting minimises the inertia Σ_n min_k ‖z_n − c_k‖² by Lloyd's algorithm from a
k-means++ start (one run, as scikit-learn's default `n_init="auto"` with k-means++). A prototype dictionary
reconstructs a sample by its nearest centre.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from jaxtyping import Float
from torch import Tensor

from lmm_concepts.dictionary.base import ArrayLike, ConceptDictionary
from lmm_concepts.dictionary.saes.kmeans_sae import (
    Activation,
    check_activation,
    nearest_prototype,
    prototype_codes,
)


class PrototypeDictionary(ConceptDictionary):
    """Shared encode/decode of dictionaries whose concepts are points (KMeans centres, Simple's samples)."""

    architecture: ClassVar[str] = "kmeans"

    def __init__(
        self,
        n_concepts: int,
        *,
        activation: Activation = "inverse_distance",
        device=None,
        dtype=torch.float32,
    ):
        super().__init__(n_concepts, device=device, dtype=dtype)
        check_activation(activation)
        self.activation = activation

    def _rescale(self, c: float) -> None:
        if self.W_dec is not None:  # prototypes are points in data units
            self.W_dec = self.W_dec * c

    def encode(self, Z: ArrayLike) -> Float[Tensor, "n n_concepts"]:
        Z = self._as_tensor(Z, fitting=False)
        return prototype_codes(Z, self.W_dec, self.activation)

    def decode(self, V: Float[Tensor, "n n_concepts"]) -> Float[Tensor, "n d"]:
        """The nearest prototype of each sample (the one its code points at)."""
        self._check_fitted()
        return nearest_prototype(V.to(self.W_dec), self.W_dec, self.activation)


def _kmeans_plusplus(Z: Tensor, K: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007) with 2 + log K candidates per step, as scikit-learn.

    `generator` is a CPU generator; the draws happen on the CPU so that a seed means the same start anywhere.
    """
    n = Z.shape[0]
    n_trials = 2 + int(torch.tensor(float(K)).log().item())
    sq_norms = Z.pow(2).sum(1)
    first = torch.randint(n, (1,), generator=generator).to(Z.device)
    centres = [Z[first[0]]]
    closest = (sq_norms - 2 * Z @ centres[0] + centres[0].pow(2).sum()).clamp_min(0)
    for _ in range(1, K):
        total = closest.sum()
        if total <= 0:  # fewer distinct points than K: any sample will do
            probs = torch.ones_like(closest)
        else:
            probs = closest / total
        # drawn on the CPU generator: the same seed picks the same centres on every device
        cand = torch.multinomial(probs.cpu(), n_trials, replacement=True, generator=generator).to(Z.device)
        d_cand = (sq_norms[None, :] - 2 * Z[cand] @ Z.T + sq_norms[cand, None]).clamp_min(0)  # [trials, n]
        new_closest = torch.minimum(closest[None, :], d_cand)
        best = new_closest.sum(1).argmin()
        centres.append(Z[cand[best]])
        closest = new_closest[best]
    return torch.stack(centres)


class KMeans(PrototypeDictionary):
    """KMeans in torch (batched Lloyd iterations, k-means++ start), with the paper's 1/(1 + distance) codes.

    Args:
        n_concepts: number of clusters K.
        activation: "inverse_distance" (1/(1 + distance), the reference code) or "distance".
        max_iter: cap on Lloyd iterations (scikit-learn's default 300).
        tol: stop when the centres move less than tol × the data's mean variance (scikit-learn's rule).
        seed: seed of the k-means++ start.
    """

    def __init__(
        self,
        n_concepts: int,
        *,
        activation: Activation = "inverse_distance",
        max_iter: int = 300,
        tol: float = 1e-4,
        seed: int = 0,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__(n_concepts, activation=activation, device=device, dtype=dtype)
        self.max_iter = max_iter
        self.tol = tol
        self.seed = seed
        self.n_iter_: int | None = None
        self.inertia_: float | None = None

    def _rescale(self, c: float) -> None:
        super()._rescale(c)
        if self.inertia_ is not None:
            self.inertia_ *= c * c

    def fit(self, Z: ArrayLike) -> KMeans:
        Z = self._as_tensor(Z, fitting=True)
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        C = _kmeans_plusplus(Z, self.n_concepts, gen)
        threshold = self.tol * Z.var(dim=0, unbiased=False).mean()
        sq_norms = Z.pow(2).sum(1)
        n_iter = 0
        while n_iter < self.max_iter:
            n_iter += 1
            labels = (sq_norms[:, None] - 2 * Z @ C.T + C.pow(2).sum(1)[None, :]).argmin(1)
            counts = torch.bincount(labels, minlength=self.n_concepts).to(Z.dtype)
            sums = torch.zeros_like(C).index_add_(0, labels, Z)
            new_C = sums / counts.clamp_min(1)[:, None]
            empty = counts == 0
            if empty.any():  # re-seed empty clusters with the samples farthest from their centre
                dist = (Z - C[labels]).pow(2).sum(1)
                far = dist.topk(int(empty.sum())).indices
                new_C[empty] = Z[far]
            shift = (new_C - C).pow(2).sum()
            C = new_C
            if shift <= threshold:
                break
        labels = (sq_norms[:, None] - 2 * Z @ C.T + C.pow(2).sum(1)[None, :]).argmin(1)
        self.W_dec = C.contiguous()
        self.n_iter_ = n_iter
        self.inertia_ = float((Z - C[labels]).pow(2).sum())
        return self
