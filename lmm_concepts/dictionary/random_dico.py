"""Random baseline: K random unit directions as concepts, codes by the same non-negative lasso as Semi-NMF.

Notation: W_dec [K, d] rows drawn from the uniform distribution on the unit sphere (normalised Gaussians),
codes V = argmin_{V ≥ 0} ½‖Z − V·W_dec‖² + l1·ΣV. The data only fixes d: the baseline any learned
dictionary has to beat, in reconstruction and in how meaningful its concepts are.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from jaxtyping import Float
from torch import Tensor

from lmm_concepts.dictionary.base import ArrayLike, ConceptDictionary
from lmm_concepts.dictionary.l1_rule import L1Penalty, L1Rule
from lmm_concepts.dictionary.lasso import nonneg_lasso
from lmm_concepts.dictionary.saes.semi_nmf_sae import encode_semi_nmf


class RandomDictionary(L1Penalty, ConceptDictionary):
    """K random unit-norm concepts (seeded), non-negative lasso codes with weight `l1` (a number, or a rule that
    sets it from the training data: "rms:0.1", "active:8"; see `l1_rule.py`)."""

    architecture: ClassVar[str] = "semi_nmf"
    max_atom_norm: ClassVar[float | None] = 1.0

    def __init__(
        self,
        n_concepts: int,
        *,
        l1: float | str | L1Rule = 1.0,
        seed: int = 0,
        encode_max_iter: int = 1000,
        encode_tol: float = 1e-5,
        lasso_method: str = "auto",
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__(n_concepts, device=device, dtype=dtype)
        self._init_l1(l1)
        self.seed = seed
        self.encode_max_iter = encode_max_iter
        self.encode_tol = encode_tol
        self.lasso_method = lasso_method

    def fit(self, Z: ArrayLike) -> RandomDictionary:
        Z = self._as_tensor(Z, fitting=True)
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        W = torch.randn(self.n_concepts, Z.shape[1], generator=gen, dtype=torch.float64)
        self.W_dec = (W / W.norm(dim=1, keepdim=True)).to(device=Z.device, dtype=Z.dtype)
        self._fit_l1(Z, lambda Zs, l1: nonneg_lasso(Zs, self.W_dec, l1), seed=self.seed)
        return self

    def _rescale(self, c: float) -> None:
        if not isinstance(self.l1, str):
            self.l1 = self.l1 * c

    def encode(self, Z: ArrayLike) -> Float[Tensor, "n n_concepts"]:
        Z = self._as_tensor(Z, fitting=False)
        return encode_semi_nmf(Z, self.W_dec, self)
