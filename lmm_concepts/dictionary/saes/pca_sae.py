"""The "pca" sae-lens architecture: a tied linear autoencoder with signed codes.

Notation: x [..., d_in], W_dec [d_sae, d_in] the principal axes (orthonormal rows), b_dec [d_in] the data mean.
PCA's codes are the coordinates of the centred input on the axes, v = (x − b_dec)·W_decᵀ — an SAE whose
encoder is W_dec transposed, with no encoder bias and the identity as activation (codes stay signed), which is
what scikit-learn's `PCA.transform` computes (whiten=False). Decoding is x̂ = v·W_dec + b_dec.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sae_lens.saes.sae import SAE, SAEConfig
from torch import Tensor, nn
from typing_extensions import override

from lmm_concepts.dictionary.saes._tied import TiedEncoder

ARCHITECTURE = "pca"


@dataclass
class PCASAEConfig(SAEConfig):
    """Config of the "pca" SAE (no options beyond sae-lens's: `b_dec` holds the mean that is removed)."""

    @override
    @classmethod
    def architecture(cls) -> str:
        return ARCHITECTURE


class PCASAE(TiedEncoder, SAE[PCASAEConfig]):
    """Inference SAE of a PCA dictionary: signed codes (x − mean)·W_decᵀ."""

    @override
    def get_activation_fn(self) -> Callable[[Tensor], Tensor]:
        return nn.Identity()

    @override
    def encode(self, x: Tensor) -> Tensor:
        sae_in = self.process_sae_in(x)
        hidden_pre = self.hook_sae_acts_pre(sae_in @ self.W_dec.T)
        return self.hook_sae_acts_post(self.activation_fn(hidden_pre))

    @override
    def fold_W_dec_norm(self) -> None:
        raise NotImplementedError(
            "the encoder of a PCA SAE is tied to W_dec: its norms cannot be folded into it"
        )

    @override
    def fold_activation_norm_scaling_factor(self, scaling_factor: float) -> None:
        # sae-lens's version scales W_enc and W_dec in opposite directions, which a tied encoder cannot do
        raise NotImplementedError("a PCA SAE's encoder is tied to its orthonormal W_dec: fit PCA on raw inputs")
