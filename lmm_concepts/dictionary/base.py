"""The interface every concept learner shares: Z ≈ V·W_dec.

Notation (one for the whole code base, see docs/design.md):
    Z      [n, d]   token representations, one sample per row, signed
    V      [n, K]   concept activations (codes); non-negative for every learner except PCA
    W_dec  [K, d]   concept vectors u_k as rows (sae-lens's name); signed

Every learner's `fit` (and `fit_transform`) is wrapped once, here, when its class is defined (`__init_subclass__`),
so no learner can skip two guards:
  - scale: data whose largest |entry| is outside `lasso.SAFE_SCALE` (2^±20) is fitted as Z/s, s a power of two
    near the RMS row norm (exact), and the learner maps its parameters and fitted state back with `_rescale(s)`.
    Under Z → c·Z the Semi-NMF objective ½‖Z − V·W_dec‖² + l1·ΣV with l1 → c·l1 scales by c², its dictionary is
    unchanged and its codes scale by c; prototypes (KMeans, Simple) and PCA's mean scale by c.
  - result: `check_result` raises `FitError` unless the dictionary is finite, its atoms meet their norm bound,
    codes of the training rows are finite (and >= 0 where non-negative), and a fit that reports convergence did
    not end on a rising objective.
"""

from __future__ import annotations

import functools
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

from lmm_concepts.dictionary.lasso import SAFE_SCALE, data_scale
from lmm_concepts.dictionary.sae_folder import save_sae
from lmm_concepts.errors import InputError

if TYPE_CHECKING:
    from sae_lens import SAE

ArrayLike = Tensor | np.ndarray

#: key under `cfg.metadata` where a saved dictionary records which learner made it, with its parameters
METADATA_KEY = "lmm_concepts"
_JSON_SCALARS = (bool, int, float, str, type(None))


class FitError(RuntimeError):
    """A fit ended with a result that breaks the learner's own guarantees (NaN, an atom outside its bound, ...)."""


def _guarded(method, *, returns_codes: bool):
    """`method` (a learner's fit or fit_transform) with the scale guard and the result check of the module
    docstring; a nested call (fit_transform calling fit, a subclass calling super().fit) runs unguarded."""

    @functools.wraps(method)
    def guarded(self: ConceptDictionary, Z, *args, **kwargs):
        if self._in_fit:
            return method(self, Z, *args, **kwargs)
        self._in_fit = True
        scale, sample = 1.0, None
        try:
            if isinstance(Z, (Tensor, np.ndarray)) and Z.ndim == 2:
                # a copy of the first rows (a memmap stays on disk, a read-only array is not handed to torch)
                sample = Z[:256].clone() if isinstance(Z, Tensor) else torch.from_numpy(np.array(Z[:256]))
                if not self.rescales_itself:
                    Zt = Z if isinstance(Z, Tensor) else torch.from_numpy(Z)
                    scale = data_scale(Zt)
                    if scale != 1.0:
                        self._rescale(1.0 / scale)  # parameters in data units (l1) into the units of Z/s
                        Z = Zt / scale
            try:
                out = method(self, Z, *args, **kwargs)
            finally:
                if scale != 1.0:
                    self._rescale(scale)
            if scale != 1.0 and returns_codes:
                out = self._rescale_codes(out, scale)
            self.check_result(sample)
        finally:
            self._in_fit = False
        return out

    return guarded


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
    #: the bound on every atom's norm (Semi-NMF's ‖u_k‖ <= 1, PCA's unit axes); None for atoms in data units
    max_atom_norm: ClassVar[float | None] = None
    #: True for learners that handle extreme scales themselves (streamed data cannot be divided up front)
    rescales_itself: ClassVar[bool] = False

    W_dec: Tensor | None

    def __init__(
        self, n_concepts: int, *, device: str | torch.device | None = None, dtype: torch.dtype = torch.float32
    ):
        super().__init__()
        if not isinstance(n_concepts, int) or n_concepts < 1:
            raise InputError(f"n_concepts must be a positive integer, got {n_concepts!r}")
        self.n_concepts = n_concepts
        self.device_ = torch.device(device) if device is not None else None
        self.dtype = dtype
        self._in_fit = False
        self.register_buffer("W_dec", None)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in ("fit", "fit_transform"):
            if name in vars(cls):
                setattr(cls, name, _guarded(vars(cls)[name], returns_codes=name == "fit_transform"))

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
            raise InputError(
                f"Z must be 2-D [n_samples, d] (one representation per row), got shape {tuple(Z.shape)}; "
                "flatten extra dimensions with Z.reshape(-1, Z.shape[-1])"
            )
        device = self.device_ or (self.W_dec.device if self.W_dec is not None else Z.device)
        Z = Z.to(device=device, dtype=self.dtype)
        if not all_finite(Z):
            bad = (~torch.isfinite(Z)).any(dim=1).nonzero().flatten()
            raise InputError(
                f"Z holds NaN or inf in {len(bad)} rows (first: {bad[:5].tolist()}); drop or repair those rows first"
            )
        if fitting:
            if Z.shape[0] < self.n_concepts:
                raise InputError(
                    f"{Z.shape[0]} samples is fewer than n_concepts={self.n_concepts}; "
                    "collect more samples or ask for fewer concepts"
                )
        else:
            self._check_fitted()
            if Z.shape[1] != self.d_in:
                raise InputError(f"Z has d={Z.shape[1]} but the dictionary was fitted on d={self.d_in}")
        return Z

    def check_result(self, sample: Float[Tensor, "m d"] | None = None) -> None:
        """Raise `FitError` unless the fit's result keeps the learner's guarantees: a finite W_dec; atoms within
        `max_atom_norm` (up to rounding); finite codes of `sample` (training rows), >= 0 unless `signed_codes`;
        and, when `stop_reason_` says "converged", an objective (`history_`) that did not rise at the end."""
        name = type(self).__name__
        if self.W_dec is None:
            raise FitError(f"{name}.fit ended without a dictionary")
        hint = "; if the data's scale is extreme, divide Z by a constant (the dictionary does not change)"
        W = self.W_dec
        if not all_finite(W):
            bad = int((~torch.isfinite(W)).any(dim=1).sum())
            raise FitError(f"{name}.fit produced NaN or inf in {bad} of {W.shape[0]} concept vectors{hint}")
        eps = torch.finfo(W.dtype).eps if W.is_floating_point() else 0.0
        if self.max_atom_norm is not None and W.numel():
            worst = float(torch.linalg.vector_norm(W.double(), dim=1).max())
            if worst > self.max_atom_norm * (1 + 64 * eps):
                raise FitError(f"{name}.fit produced a concept vector of norm {worst:.6g}, above its bound "
                               f"{self.max_atom_norm:g}")
        if sample is not None and sample.shape[0] > 0:
            V = self.encode(sample)
            if not all_finite(V):
                raise FitError(f"{name}: the fitted dictionary gives NaN or inf codes on the training rows{hint}")
            if not self.signed_codes and float(V.min()) < 0:
                raise FitError(f"{name}: the fitted dictionary gives negative codes ({float(V.min()):.3g}) where "
                               "codes are non-negative")
        history, reason = getattr(self, "history_", None), getattr(self, "stop_reason_", None)
        if isinstance(reason, str) and reason.startswith("converged") and history and len(history) >= 2:
            prev, last = history[-2], history[-1]
            # learners whose objective carries an absolute rounding (Semi-NMF's, from statistics, cancels terms of
            # the size of ½‖Z‖²) say how large it is in `history_rounding_`
            rounding = getattr(self, "history_rounding_", 64 * max(eps, 1e-15) * abs(prev))
            if not last <= prev + rounding:
                raise FitError(f"{name}.fit reports '{reason}' but its objective rose in the last iteration "
                               f"({prev:.8g} -> {last:.8g}){hint}")

    def _rescale(self, c: float) -> None:
        """Put the learner in the units of c·Z: every parameter and fitted quantity in data units times c (squares
        times c²). Learners override it; the base refuses, so data of extreme scale gets a clear error."""
        lo, hi = SAFE_SCALE
        raise InputError(
            f"{type(self).__name__} cannot rescale data internally, and this Z's largest |entry| is outside "
            f"[{lo:g}, {hi:g}] where it works as it is: divide Z by a constant first"
        )

    def _rescale_codes(self, V: Tensor, c: float) -> Tensor:
        """Codes of c·Z from the codes V of Z (linear for lasso and PCA codes; prototypes override)."""
        return V * c

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
            raise InputError(
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
        return save_sae(self.to_sae(hook_name), path)
