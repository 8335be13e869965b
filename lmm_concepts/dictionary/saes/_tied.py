"""Behaviour shared by our sae-lens architectures: the encoder is tied to the decoder (no `W_enc` weights)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class TiedEncoder:
    """Mixin for `SAE` subclasses whose encoder is derived from `W_dec` (as sae-lens's matching pursuit SAE).

    `W_enc` reads as `W_dec.T`; the base class's attempts to create a separate `W_enc` parameter are dropped,
    so the state dict holds only `W_dec` and `b_dec`. The decoder is linear, V·W_dec + b_dec, unless a subclass
    says otherwise (KMeans decodes to the nearest prototype).
    """

    W_dec: Tensor

    @property
    def W_enc(self) -> Tensor:
        return self.W_dec.T

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "W_enc":
            return
        super().__setattr__(name, value)

    def decode(self, feature_acts: Tensor) -> Tensor:
        """The linear decoder V·W_dec + b_dec, through sae-lens's reconstruction hook and output reshaping."""
        sae_out = self.hook_sae_recons(feature_acts @ self.W_dec + self.b_dec)
        sae_out = self.run_time_activation_norm_fn_out(sae_out)
        return self.reshape_fn_out(sae_out, self.d_head)

    def process_state_dict_for_loading(self, state_dict: dict[str, Tensor]) -> None:
        # safetensors hands back tensors at 8-byte-aligned offsets of its buffer; BLAS takes another path on
        # them and rounds differently (codes off by ~1e-7 after the lasso's iterations). Fresh copies are
        # aligned, so a loaded SAE encodes bit for bit as the one that was saved.
        for key, value in state_dict.items():
            state_dict[key] = value.clone()

    def fold_activation_whitening(
        self, mean: Tensor, whitening_matrix: Tensor, unwhitening_matrix: Tensor
    ) -> None:
        raise NotImplementedError(
            f"{type(self).__name__} ties its encoder to W_dec, so a whitening cannot be folded into it; "
            "train with normalize_activations='none' or 'expected_average_only_in'"
        )


def flat_rows(x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
    """x [..., d] as rows [N, d], with the leading shape to restore codes [..., K] afterwards."""
    return x.reshape(-1, x.shape[-1]), tuple(x.shape[:-1])


def project_rows_to_unit_ball(W: Tensor, radius: float = 1.0) -> None:
    """In place: rows of W with norm > radius scaled back to it (the Semi-NMF constraint ‖u_k‖ ≤ 1)."""
    with torch.no_grad():
        W.mul_(radius / W.norm(dim=1, keepdim=True).clamp_min(radius))
