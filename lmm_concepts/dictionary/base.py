"""The interface every concept learner shares: Z ≈ V·W_dec.

Notation (one for the whole code base, see DESIGN.md):
    Z      [n, d]   token representations, one sample per row, signed
    V      [n, K]   concept activations (codes); non-negative for every learner except PCA
    W_dec  [K, d]   concept vectors u_k as rows (sae-lens's name); signed
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor, nn

if TYPE_CHECKING:
    from sae_lens import SAE

ArrayLike = Tensor | np.ndarray

#: key under `cfg.metadata` where a saved dictionary records which learner made it, with its parameters
METADATA_KEY = "lmm_concepts"
_JSON_SCALARS = (bool, int, float, str, type(None))


def all_finite(X: Tensor) -> bool:
    """True when X holds no NaN or inf: one reduction without a temporary (~20x cheaper than isfinite().all()),
    since min and max carry any NaN or inf."""
    return X.numel() == 0 or all(map(math.isfinite, X.aminmax()))


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
        if not all_finite(Z):
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

    def fit_transform(self, Z: ArrayLike) -> Float[Tensor, "n n_concepts"]:
        """`fit(Z)` then the codes of Z (scikit-learn's convention); learners that hold the codes at the end of
        their fit override it to skip the second encode."""
        return self.fit(Z).encode(Z)

    def decode(self, V: Float[Tensor, "n n_concepts"]) -> Float[Tensor, "n d"]:
        """Reconstruction V·W_dec."""
        self._check_fitted()
        return V.to(self.W_dec) @ self.W_dec

    def forward(self, Z: ArrayLike) -> Float[Tensor, "n d"]:
        return self.decode(self.encode(Z))

    # ----------------------------------------------------------------- sae-lens export
    def get_params(self) -> dict[str, Any]:
        """The constructor arguments (scikit-learn's convention: each stored under its own name), JSON-able only.

        `device` and `dtype` are left out: they travel in the sae-lens config instead.
        """
        params = {}
        for name in inspect.signature(type(self).__init__).parameters:
            if name in ("self", "device", "dtype") or not hasattr(self, name):
                continue
            value = getattr(self, name)
            if isinstance(value, _JSON_SCALARS) or (
                isinstance(value, (list, tuple)) and all(isinstance(v, _JSON_SCALARS) for v in value)
            ):
                params[name] = list(value) if isinstance(value, tuple) else value
        return params

    def _sae_state_dict(self) -> dict[str, Tensor]:
        """The weights of the exported SAE; learners with a bias (PCA's mean) override this."""
        return {"W_dec": self.W_dec.detach().clone(), "b_dec": self.W_dec.new_zeros(self.d_in)}

    def _load_sae_state(self, sae: SAE) -> None:
        """Inverse of `_sae_state_dict`: take the fitted state back from an SAE of this learner's architecture."""
        self.W_dec = sae.W_dec.detach().clone()

    def to_sae(self, hook_name: str | None = None) -> SAE:
        """This dictionary as a sae-lens `SAE` of the registered architecture `self.architecture`.

        `W_dec` rows are the concepts and `encode` gives the same codes as `self.encode`. Architecture options
        (`l1` for Semi-NMF, `activation` for KMeans) are read from the learner's attributes of the same name.
        `hook_name` (e.g. "blocks.3.hook_resid_post") is where `HookedSAETransformer.add_sae` attaches it;
        a dictionary loaded from disk keeps the hook name it was saved with.
        """
        from sae_lens.registry import get_sae_class
        from sae_lens.saes.sae import SAEConfig, SAEMetadata
        from sae_lens.util import dtype_to_str

        self._check_fitted()
        hook_name = hook_name if hook_name is not None else getattr(self, "hook_name_", None)
        sae_cls, cfg_cls = get_sae_class(self.architecture)
        base_fields = {f.name for f in fields(SAEConfig)}
        options = {
            f.name: getattr(self, f.name)
            for f in fields(cfg_cls)
            if f.name not in base_fields and hasattr(self, f.name)
        }
        metadata = SAEMetadata(
            hook_name=hook_name,
            **{
                METADATA_KEY: {
                    "learner": f"{type(self).__module__}:{type(self).__qualname__}",
                    "params": self.get_params(),
                }
            },
        )
        cfg = cfg_cls(
            d_in=self.d_in,
            d_sae=self.n_concepts,
            dtype=dtype_to_str(self.W_dec.dtype),
            device=str(self.W_dec.device),
            metadata=metadata,
            **options,
        )
        sae = sae_cls(cfg)
        sae.load_state_dict(self._sae_state_dict(), strict=True)
        return sae.eval()

    @classmethod
    def from_sae(cls, sae: SAE) -> ConceptDictionary:
        """A fitted learner of this class from an SAE that `to_sae` made (or any SAE of the same architecture)."""
        if sae.cfg.architecture() != cls.architecture:
            raise ValueError(
                f"{cls.__name__} exports to architecture {cls.architecture!r}, but this SAE is "
                f"{sae.cfg.architecture()!r}; load it with lmm_concepts.load_dictionary(path) instead"
            )
        record = sae.cfg.metadata.get(METADATA_KEY) or {}
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "n_concepts", "device", "dtype"}
        # the SAE config is the truth for what it computes (sae-lens may have folded a scale into `l1`)
        options = {f.name: getattr(sae.cfg, f.name) for f in fields(sae.cfg) if f.name in accepted}
        kwargs = {k: v for k, v in {**record.get("params", {}), **options}.items() if k in accepted}
        learner = cls(n_concepts=sae.cfg.d_sae, **kwargs, device=sae.W_dec.device, dtype=sae.W_dec.dtype)
        learner._load_sae_state(sae)
        learner.hook_name_ = sae.cfg.metadata.hook_name
        return learner

    def save(self, path: str | Path, hook_name: str | None = None) -> Path:
        """Write the dictionary to the folder `path` as sae-lens `cfg.json` + `sae_weights.safetensors`.

        sae-lens's own `save_model` writes the files, into a temporary folder that then replaces `path` in one
        rename, so a reader never sees a half-written dictionary. Load it back with `load_dictionary(path)`
        (our learner) or `sae_lens.SAE.load_from_disk(path)` (the SAE).
        """
        from lmm_concepts.dictionary.serialization import save_sae

        return save_sae(self.to_sae(hook_name), path)
