"""Simple baseline: the K samples of largest norm are the concepts (the paper's "Simple").

Notation: Z [n, d] samples as rows, W_dec [K, d] = the K rows of Z with the largest ‖z_n‖₂ (largest first),
codes V_nk = 1/(1 + ‖z_n − w_k‖₂) as for KMeans — the reference code builds a scikit-learn KMeans whose
centres are these samples and encodes with its distances the same way.
"""

from __future__ import annotations

import torch

from lmm_concepts.dictionary.base import ArrayLike
from lmm_concepts.dictionary.kmeans import PrototypeDictionary
from lmm_concepts.dictionary.saes.kmeans_sae import Activation


class Simple(PrototypeDictionary):
    """The K largest-norm samples as concepts, encoded by 1/(1 + distance) (or plain distances).

    Ties in norm go to the earlier sample, so the choice is deterministic.
    """

    def __init__(
        self,
        n_concepts: int,
        *,
        activation: Activation = "inverse_distance",
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__(n_concepts, activation=activation, device=device, dtype=dtype)
        self.indices_: torch.Tensor | None = None

    def fit(self, Z: ArrayLike) -> Simple:
        Z = self._as_tensor(Z, fitting=True)
        norms = Z.norm(dim=1)
        order = torch.sort(norms, descending=True, stable=True).indices
        self.indices_ = order[: self.n_concepts]
        self.W_dec = Z[self.indices_].clone()
        return self
