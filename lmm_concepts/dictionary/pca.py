"""PCA baseline: concepts are the top principal axes, codes are signed coordinates.

Notation: Z [n, d] samples as rows, mean μ [d], W_dec [K, d] the K leading right singular vectors of Z − μ
(orthonormal rows), codes V = (Z − μ)·W_decᵀ [n, K] — signed, unlike every other learner here. This is
scikit-learn's `PCA(n_components=K).fit_transform` (whiten=False), the paper's PCA baseline. Signs follow
scikit-learn's convention: each axis has its largest-magnitude entry positive.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from lmm_concepts.dictionary.base import ArrayLike, ConceptDictionary

Solver = Literal["auto", "full", "randomized"]


def _flip_signs(W: Float[Tensor, "K d"]) -> Float[Tensor, "K d"]:
    """Each row's largest-|.| entry made positive: a deterministic sign for every axis."""
    idx = W.abs().argmax(dim=1, keepdim=True)
    return W * torch.sign(W.gather(1, idx))


class PCA(ConceptDictionary):
    """Principal component analysis in torch (SVD of the centred data).

    Args:
        n_concepts: number of axes K (≤ min(n_samples, d)).
        solver: "full" (exact SVD), "randomized" (`torch.svd_lowrank`, for K ≪ min(n, d)), or "auto"
            (randomized when K < 0.8·min(n, d) and the data is larger than 500 on both sides, as scikit-learn).
        seed: seed of the randomized solver.
    """

    architecture: ClassVar[str] = "pca"
    signed_codes: ClassVar[bool] = True
    max_atom_norm: ClassVar[float | None] = 1.0

    def __init__(
        self,
        n_concepts: int,
        *,
        solver: Solver = "auto",
        seed: int = 0,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__(n_concepts, device=device, dtype=dtype)
        if solver not in ("auto", "full", "randomized"):
            raise ValueError(f"solver must be 'auto', 'full' or 'randomized', got {solver!r}")
        self.solver = solver
        self.seed = seed
        self.register_buffer("mean", None)
        self.register_buffer("explained_variance", None)

    def fit(self, Z: ArrayLike) -> PCA:
        Z = self._as_tensor(Z, fitting=True)
        n, d = Z.shape
        if self.n_concepts > d:
            raise ValueError(f"PCA has at most d={d} axes; asked for n_concepts={self.n_concepts}")
        mean = Z.mean(dim=0)
        Zc = Z - mean
        solver = self.solver
        if solver == "auto":
            solver = "randomized" if min(n, d) > 500 and self.n_concepts < 0.8 * min(n, d) else "full"
        if solver == "full":
            _, S, Vh = torch.linalg.svd(Zc, full_matrices=False)
        else:
            with torch.random.fork_rng(devices=[Z.device] if Z.device.type == "cuda" else []):
                torch.manual_seed(self.seed)
                _, S, V = torch.svd_lowrank(Zc, q=min(self.n_concepts + 10, n, d), niter=7)
            Vh = V.T
        self.W_dec = _flip_signs(Vh[: self.n_concepts]).contiguous()
        self.mean = mean
        self.explained_variance = S[: self.n_concepts] ** 2 / max(n - 1, 1)
        return self

    def _rescale(self, c: float) -> None:
        if self.mean is not None:
            self.mean = self.mean * c
            self.explained_variance = self.explained_variance * c * c

    def encode(self, Z: ArrayLike) -> Float[Tensor, "n n_concepts"]:
        Z = self._as_tensor(Z, fitting=False)
        return (Z - self.mean) @ self.W_dec.T

    def decode(self, V: Float[Tensor, "n n_concepts"]) -> Float[Tensor, "n d"]:
        self._check_fitted()
        return V.to(self.W_dec) @ self.W_dec + self.mean

    def _sae_state_dict(self) -> dict[str, Tensor]:
        return {"W_dec": self.W_dec.detach().clone(), "b_dec": self.mean.detach().clone()}

    def _load_sae_state(self, sae) -> None:
        self.W_dec = sae.W_dec.detach().clone()
        self.mean = sae.b_dec.detach().clone()
