"""How well a dictionary fits the data it explains, and how stable it is across seeds.

    relative reconstruction error  ‖Z − V·W_dec‖_F / ‖Z‖_F
    L0                             mean number of non-zero codes per sample
    mean activation                mean of V over samples and concepts
    dead concepts                  concepts whose code is zero on every sample
    seed stability                 mean cosine of concept vectors of two dictionaries after Hungarian matching
                                   (scipy's linear_sum_assignment maximising total cosine; |cos| for signed codes,
                                   where u and −u are the same concept)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from jaxtyping import Float
from scipy.optimize import linear_sum_assignment
from torch import Tensor


@dataclass
class DictionaryQuality:
    relative_error: float
    l0: float
    mean_activation: float
    n_dead: int
    dead: list[int]
    n_samples: int
    n_concepts: int

    def to_dict(self) -> dict:
        return asdict(self)


def dictionary_quality(dictionary, Z: Float[Tensor, "n d"], eps: float = 0.0) -> DictionaryQuality:
    """Reconstruction and sparsity of `dictionary` on Z; a code counts as active when |v| > eps."""
    from lmm_concepts.grounding.store_access import encode_all

    if Z.ndim != 2 or Z.shape[0] == 0:
        raise ValueError(f"Z must be a non-empty [n, d] matrix, got shape {tuple(Z.shape)}")
    V = encode_all(dictionary, Z)
    with torch.no_grad():
        Z_hat = dictionary.decode(V.to(dictionary.W_dec)).float().cpu()
    Z = Z.float().cpu()
    active = V.abs() > eps
    dead = (~active.any(0)).nonzero().flatten().tolist()
    return DictionaryQuality(
        relative_error=((Z - Z_hat).norm() / Z.norm().clamp_min(1e-12)).item(),
        l0=active.float().sum(1).mean().item(),
        mean_activation=V.mean().item(),
        n_dead=len(dead),
        dead=dead,
        n_samples=Z.shape[0],
        n_concepts=V.shape[1],
    )


def matched_cosine(
    W_a: Float[Tensor, "k d"], W_b: Float[Tensor, "k2 d"], absolute: bool = False
) -> tuple[float, list[tuple[int, int, float]]]:
    """Mean cosine of the Hungarian-optimal one-to-one matching of rows of W_a to rows of W_b, and the pairs."""
    if W_a.shape[1] != W_b.shape[1]:
        raise ValueError(f"dictionaries of different width: d={W_a.shape[1]} and d={W_b.shape[1]}")
    A = torch.nn.functional.normalize(W_a.detach().float().cpu(), dim=1)
    B = torch.nn.functional.normalize(W_b.detach().float().cpu(), dim=1)
    C = A @ B.T
    if absolute:
        C = C.abs()
    rows, cols = linear_sum_assignment(C.numpy(), maximize=True)
    pairs = [(int(i), int(j), C[i, j].item()) for i, j in zip(rows, cols, strict=True)]
    return sum(p[2] for p in pairs) / len(pairs), pairs


def seed_stability(dictionaries, absolute: bool | None = None) -> float:
    """Mean matched cosine over all pairs of dictionaries fitted with different seeds."""
    if len(dictionaries) < 2:
        raise ValueError("seed stability needs at least two dictionaries fitted with different seeds")
    if absolute is None:
        absolute = bool(getattr(dictionaries[0], "signed_codes", False))
    Ws = [d.W_dec for d in dictionaries]
    vals = [matched_cosine(Ws[i], Ws[j], absolute)[0] for i in range(len(Ws)) for j in range(i + 1, len(Ws))]
    return sum(vals) / len(vals)
