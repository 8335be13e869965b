"""The "kmeans" sae-lens architecture: codes from distances to prototypes (KMeans centres, Simple's samples).

Notation: x [..., d_in], W_dec [d_sae, d_in] the prototypes c_k (rows, in data units, not normalised),
b_dec [d_in] a shift (zero for dictionaries we fit). With δ_k = ‖(x − b_dec) − c_k‖₂ the codes are

    "inverse_distance":  v_k = 1 / (1 + δ_k)     (the paper's code: its KMeans and Simple activations)
    "distance":          v_k = δ_k

A prototype dictionary reconstructs x by its nearest prototype, so `decode` maps codes to the row of W_dec
with the largest activation (smallest distance) plus b_dec. `hook_sae_acts_pre` sees the distances.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from sae_lens.saes.sae import SAE, SAEConfig
from torch import Tensor
from typing_extensions import override

from lmm_concepts.dictionary.saes._tied import TiedEncoder, flat_rows

ARCHITECTURE = "kmeans"
Activation = Literal["inverse_distance", "distance"]
ACTIVATIONS: dict[str, tuple] = {
    # name: (codes from distances, index of the nearest prototype from codes)
    "inverse_distance": (lambda dist: 1.0 / (1.0 + dist), lambda v: v.argmax(dim=-1)),
    "distance": (lambda dist: dist, lambda v: v.argmin(dim=-1)),
}


def check_activation(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")


def prototype_distances(x: Tensor, W_dec: Tensor) -> Tensor:
    """Euclidean distances [..., d_sae] from each row of x [..., d_in] to each prototype (row of W_dec).

    Computed from the differences, not as ‖x‖² − 2x·c + ‖c‖²: that GEMM shortcut loses the small distances
    (a sample's distance to itself comes out ~1e-3 in float32), exactly where 1/(1 + distance) is largest.
    """
    rows, lead = flat_rows(x)
    W = W_dec.to(rows)
    # squares of extreme data overflow float32 (from ~1e19): distances of x/s and c/s, times s (s a power of two)
    biggest = max((float(t.abs().max()) for t in (rows, W) if t.numel()), default=0.0)
    scale = 2.0 ** round(math.log2(biggest)) if 0 < biggest < math.inf and not 2**-20 <= biggest <= 2**20 else 1.0
    dist = torch.cdist(rows / scale, W / scale, compute_mode="donot_use_mm_for_euclid_dist") * scale
    return dist.reshape(*lead, W_dec.shape[0])


def prototype_codes(x: Tensor, W_dec: Tensor, activation: str) -> Tensor:
    return ACTIVATIONS[activation][0](prototype_distances(x, W_dec))


def nearest_prototype(codes: Tensor, W_dec: Tensor, activation: str) -> Tensor:
    """The prototype each code vector points at: W_dec[argmax 1/(1+δ)] or W_dec[argmin δ]."""
    return W_dec[ACTIVATIONS[activation][1](codes)]


@dataclass
class KMeansSAEConfig(SAEConfig):
    """Config of the "kmeans" SAE.

    Args:
        activation: "inverse_distance" (1/(1 + distance), the paper's) or "distance" (plain distances).
    """

    activation: Activation = "inverse_distance"

    @override
    @classmethod
    def architecture(cls) -> str:
        return ARCHITECTURE

    def __post_init__(self):
        super().__post_init__()
        check_activation(self.activation)


class KMeansSAE(TiedEncoder, SAE[KMeansSAEConfig]):
    """Inference SAE of a prototype dictionary (KMeans, Simple)."""

    @override
    def encode(self, x: Tensor) -> Tensor:
        sae_in = self.process_sae_in(x)
        dist = self.hook_sae_acts_pre(prototype_distances(sae_in, self.W_dec))
        return self.hook_sae_acts_post(ACTIVATIONS[self.cfg.activation][0](dist))

    @override
    def decode(self, feature_acts: Tensor) -> Tensor:
        nearest = nearest_prototype(feature_acts, self.W_dec, self.cfg.activation)
        sae_out = self.hook_sae_recons(nearest + self.b_dec)
        sae_out = self.run_time_activation_norm_fn_out(sae_out)
        return self.reshape_fn_out(sae_out, self.d_head)

    @override
    def fold_W_dec_norm(self) -> None:
        raise NotImplementedError("prototypes are points, not directions: their norms cannot be folded")

    @override
    def fold_activation_norm_scaling_factor(self, scaling_factor: float) -> None:
        raise NotImplementedError(
            "distances to prototypes do not scale linearly with codes: fit on raw inputs"
        )
