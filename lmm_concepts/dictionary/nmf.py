"""NMF baseline: both factors non-negative, for non-negative data only.

Notation: Z [n, d] ≥ 0 samples as rows, codes V [n, K] ≥ 0, concepts W_dec [K, d] ≥ 0 with ‖u_k‖ ≤ 1. The
objective is Semi-NMF's with one more constraint (W_dec ≥ 0):

    ½‖Z − V·W_dec‖²_F + l1·ΣV

solved by HALS (block coordinate descent, one column of V or row of W_dec at a time, each an exact minimiser).
With l1 = 0 the row norms are free, so they are set to 1 at the end (V rescaled, V·W_dec unchanged).
Representations of language models are signed: NMF refuses them, and `SemiNMF` (signed concepts,
non-negative codes) is the method for them.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from jaxtyping import Float
from torch import Tensor

from lmm_concepts.dictionary.base import ArrayLike, ConceptDictionary
from lmm_concepts.dictionary.l1_rule import L1Penalty, L1Rule
from lmm_concepts.dictionary.saes.semi_nmf_sae import encode_semi_nmf


class NMF(L1Penalty, ConceptDictionary):
    """Non-negative matrix factorisation in torch (HALS), with the Semi-NMF objective's constants.

    Args:
        n_concepts: K.
        l1: L1 weight on the codes (0: plain NMF), or a rule that sets it from the training data ("rms:0.1",
            "active:8"; see `l1_rule.py`).
        max_iter: cap on HALS sweeps.
        tol: stop when the objective falls by less than tol (relative) in a sweep.
        seed: seed of the random non-negative start (scikit-learn's "random" init scaling).
    """

    architecture: ClassVar[str] = "semi_nmf"
    max_atom_norm: ClassVar[float | None] = 1.0

    def __init__(
        self,
        n_concepts: int,
        *,
        l1: float | str | L1Rule = 0.0,
        max_iter: int = 500,
        tol: float = 1e-5,
        seed: int = 0,
        encode_max_iter: int = 1000,
        encode_tol: float = 1e-5,
        lasso_method: str = "auto",
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__(n_concepts, device=device, dtype=dtype)
        self._init_l1(l1)
        self.max_iter = max_iter
        self.tol = tol
        self.seed = seed
        self.encode_max_iter = encode_max_iter
        self.encode_tol = encode_tol
        self.lasso_method = lasso_method
        self.objective_history_: list[float] = []

    def _check_nonnegative(self, Z: Tensor) -> None:
        if (Z < 0).any():
            n_neg = int((Z < 0).sum())
            raise ValueError(
                f"NMF needs non-negative data, but Z has {n_neg} negative entries (min {float(Z.min()):.4g}). "
                "Model representations are signed: use lmm_concepts.SemiNMF, which keeps the concepts signed "
                "and only the activations non-negative"
            )

    def objective(self, Z: ArrayLike) -> float:
        """½‖Z − V·W_dec‖² + l1·ΣV at V = encode(Z)."""
        Z = self._as_tensor(Z, fitting=False)
        V = self.encode(Z).double()
        return float(0.5 * (Z.double() - V @ self.W_dec.double()).pow(2).sum() + self.l1 * V.sum())

    def fit(self, Z: ArrayLike) -> NMF:
        Z = self._as_tensor(Z, fitting=True)
        self._check_nonnegative(Z)
        self._fit_l1(Z, self._probe, seed=self.seed)
        n, d = Z.shape
        K = self.n_concepts
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        # random non-negative factors whose product is about the data's mean, as scikit-learn's "random" start, but
        # with the data's scale in the codes only (concepts of norm ~1), so Z -> c·Z, l1 -> c·l1 gives the same
        # concepts and c times the codes
        W = (torch.randn(K, d, generator=gen, dtype=Z.dtype).abs() / d**0.5).to(Z.device)
        V = (torch.randn(n, K, generator=gen, dtype=Z.dtype).abs() * (Z.mean() * d**0.5 / (0.64 * K))).to(Z.device)
        if self.l1 > 0:
            W = W / W.norm(dim=1, keepdim=True).clamp_min(1.0)
        eps = torch.finfo(Z.dtype).tiny
        half_sq = 0.5 * Z.pow(2).sum()
        self.objective_history_ = []
        for _ in range(self.max_iter):
            # codes: columns of V, each the exact minimiser with the others fixed
            A, G = Z @ W.T, W @ W.T  # [n, K], [K, K]
            for k in range(K):
                V[:, k] = (V[:, k] + (A[:, k] - self.l1 - V @ G[:, k]) / G[k, k].clamp_min(eps)).clamp_min(0)
            # concepts: rows of W, each minimised over {w ≥ 0, ‖w‖ ≤ 1} (clip, then scale into the ball)
            B, H = V.T @ Z, V.T @ V  # [K, d], [K, K]
            for k in range(K):
                w = (W[k] + (B[k] - H[k] @ W) / H[k, k].clamp_min(eps)).clamp_min(0)
                W[k] = w / w.norm().clamp_min(1.0) if self.l1 > 0 else w
            # objective from the statistics: ½‖Z‖² − ⟨B, W⟩ + ½⟨H, W Wᵀ⟩ + l1·ΣV
            obj = float(half_sq - (B * W).sum() + 0.5 * (H * (W @ W.T)).sum() + self.l1 * V.sum())
            self.objective_history_.append(obj)
            if len(self.objective_history_) > 1 and self.objective_history_[-2] - obj <= self.tol * abs(obj):
                break
        norms = W.norm(dim=1, keepdim=True)
        if self.l1 == 0:  # free scale: unit-norm concepts, as every dictionary here
            W = torch.where(norms > 0, W / norms.clamp_min(eps), W)
        self.W_dec = W.contiguous()
        return self

    def _rescale(self, c: float) -> None:
        if not isinstance(self.l1, str):
            self.l1 = self.l1 * c
        self.objective_history_ = [h * c * c for h in self.objective_history_]

    def _probe(self, Z: Tensor, l1: float) -> Tensor:
        """Codes of Z after an NMF fit at penalty l1 (what an "active:k" rule measures)."""
        params = {**self.get_params(), "l1": l1, "tol": max(self.tol, 1e-4)}
        return NMF(**params, device=Z.device, dtype=Z.dtype).fit(Z).encode(Z)

    def encode(self, Z: ArrayLike) -> Float[Tensor, "n n_concepts"]:
        """Non-negative (lasso) codes of new data for the fixed non-negative concepts, as the Semi-NMF SAE."""
        Z = self._as_tensor(Z, fitting=False)
        return encode_semi_nmf(Z, self.W_dec, self)
