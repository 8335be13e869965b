"""The interface every concept learner shares: Z ≈ V·W_dec.

Notation (one for the whole code base, see DESIGN.md):
    Z      [n, d]   token representations, one sample per row, signed
    V      [n, K]   concept activations (codes); non-negative for every learner except PCA
    W_dec  [K, d]   concept vectors u_k as rows (sae-lens's name); signed
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor, nn

ArrayLike = Tensor | np.ndarray


class ConceptDictionary(nn.Module, ABC):
    """A fitted set of K concept vectors `W_dec` [K, d] with an encoder to codes V [n, K].

    The dictionary is a buffer, so `.to(device)` moves it and `state_dict()` saves it.
    """

    #: sae-lens architecture name this learner exports to
    architecture: ClassVar[str]
    #: True when codes may be negative (PCA); False for non-negative codes
    signed_codes: ClassVar[bool] = False

    W_dec: Tensor | None

    def __init__(
        self, n_concepts: int, *, device: str | torch.device | None = None, dtype: torch.dtype = torch.float32
    ):
        super().__init__()
        if not isinstance(n_concepts, int) or n_concepts < 1:
            raise ValueError(f"n_concepts must be a positive integer, got {n_concepts!r}")
        self.n_concepts = n_concepts
        self.device_ = torch.device(device) if device is not None else None
        self.dtype = dtype
        self.register_buffer("W_dec", None)

    # ----------------------------------------------------------------- checks
    @property
    def is_fitted(self) -> bool:
        return self.W_dec is not None

    @property
    def d_in(self) -> int:
        self._check_fitted()
        return self.W_dec.shape[1]

    def _check_fitted(self) -> None:
        if self.W_dec is None:
            raise RuntimeError(
                f"{type(self).__name__} is not fitted yet: call .fit(Z) before encode/decode/to_sae"
            )

    def _as_tensor(self, Z: ArrayLike, *, fitting: bool) -> Float[Tensor, "n d"]:
        """Z as a 2-D finite tensor on this learner's device and dtype, or a clear error."""
        if isinstance(Z, np.ndarray):
            Z = torch.from_numpy(Z)
        if not isinstance(Z, Tensor):
            raise TypeError(f"Z must be a torch tensor or numpy array, got {type(Z).__name__}")
        if Z.ndim != 2:
            raise ValueError(
                f"Z must be 2-D [n_samples, d] (one representation per row), got shape {tuple(Z.shape)}; "
                "flatten extra dimensions with Z.reshape(-1, Z.shape[-1])"
            )
        device = self.device_ or (self.W_dec.device if self.W_dec is not None else Z.device)
        Z = Z.to(device=device, dtype=self.dtype)
        if not torch.isfinite(Z).all():
            bad = (~torch.isfinite(Z)).any(dim=1).nonzero().flatten()
            raise ValueError(
                f"Z holds NaN or inf in {len(bad)} rows (first: {bad[:5].tolist()}); drop or repair those rows first"
            )
        if fitting:
            if Z.shape[0] < self.n_concepts:
                raise ValueError(
                    f"{Z.shape[0]} samples is fewer than n_concepts={self.n_concepts}; "
                    "collect more samples or ask for fewer concepts"
                )
        else:
            self._check_fitted()
            if Z.shape[1] != self.d_in:
                raise ValueError(f"Z has d={Z.shape[1]} but the dictionary was fitted on d={self.d_in}")
        return Z

    # ----------------------------------------------------------------- the interface
    @abstractmethod
    def fit(self, Z: ArrayLike) -> ConceptDictionary:
        """Learn `W_dec` from Z [n, d]; returns self."""

    @abstractmethod
    def encode(self, Z: ArrayLike) -> Float[Tensor, "n n_concepts"]:
        """Codes V [n, K] of new data under the fitted dictionary."""

    def decode(self, V: Float[Tensor, "n n_concepts"]) -> Float[Tensor, "n d"]:
        """Reconstruction V·W_dec."""
        self._check_fitted()
        return V.to(self.W_dec) @ self.W_dec

    def forward(self, Z: ArrayLike) -> Float[Tensor, "n d"]:
        return self.decode(self.encode(Z))
