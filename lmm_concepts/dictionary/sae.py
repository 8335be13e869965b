"""SAE baseline: a sparse autoencoder trained by sae-lens's own `SAETrainer` on the same representations.

Notation: Z [n, d] samples as rows; the SAE's decoder rows W_dec [K, d] are the concepts and its encoder gives
the codes V [n, K] ≥ 0 ("standard": ReLU(x·W_enc + b_enc) with an L1 penalty; "topk": the k largest
pre-activations). Training feeds shuffled minibatches of Z to `SAETrainer` (sae-lens's ActivationsStore cannot
feed images), with sae-lens's input normalisation, which it folds back into the weights at the end, so the
saved SAE works on raw representations. Any other sae-lens SAE loaded with `load_dictionary` is wrapped here too.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import ClassVar, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from lmm_concepts.dictionary.base import METADATA_KEY, ArrayLike, ConceptDictionary

Kind = Literal["standard", "topk"]


def _kind_options(learner: SAEDictionary) -> dict:
    """The architecture-specific training options of each kind we train (a table, not an if-chain)."""
    return {
        "standard": {"l1_coefficient": learner.l1_coefficient},
        "topk": {"k": min(learner.k, learner.n_concepts)},
    }[learner.kind]


def shuffled_batches(Z: Tensor, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Endless epochs of Z [n, d] in a fresh seeded order each epoch, as batches [batch_size, d]."""
    n = Z.shape[0]
    batch_size = min(batch_size, n)
    while True:
        order = torch.randperm(n, generator=generator).to(Z.device)
        for start in range(0, n - batch_size + 1, batch_size):
            yield Z[order[start : start + batch_size]]


def inference_sae(training_sae):
    """The inference SAE (sae-lens's class for the architecture) holding a training SAE's weights."""
    from sae_lens import SAE

    sae = SAE.from_dict(training_sae.cfg.get_inference_sae_cfg_dict())
    state = training_sae.state_dict()
    training_sae.process_state_dict_for_saving_inference(state)
    sae.load_state_dict(state, strict=True)
    return sae.to(device=training_sae.W_dec.device, dtype=training_sae.W_dec.dtype).eval()


class SAEDictionary(ConceptDictionary):
    """A sparse autoencoder as a concept dictionary, trained with sae-lens's `SAETrainer`.

    Args:
        n_concepts: the SAE width K (d_sae).
        kind: "standard" (ReLU + L1) or "topk".
        l1_coefficient: L1 weight of the standard SAE (on normalised inputs of norm √d).
        k: active latents per sample of the TopK SAE.
        training_samples: samples seen in training (epochs × n); a small default budget for a baseline.
        batch_size: samples per optimiser step.
        lr: Adam learning rate.
        seed: seeds the initial weights and the batch order: one seed, one SAE.
    """

    architecture: ClassVar[str] = "standard"

    def __init__(
        self,
        n_concepts: int,
        *,
        kind: Kind = "standard",
        l1_coefficient: float = 1.0,
        k: int = 8,
        training_samples: int = 100_000,
        batch_size: int = 256,
        lr: float = 5e-3,
        seed: int = 0,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__(n_concepts, device=device, dtype=dtype)
        self.kind = kind
        self.l1_coefficient = l1_coefficient
        self.k = k
        self.training_samples = training_samples
        self.batch_size = batch_size
        self.lr = lr
        self.seed = seed
        self.sae = None

    def fit(self, Z: ArrayLike) -> SAEDictionary:
        from sae_lens.config import SAETrainerConfig
        from sae_lens.registry import get_sae_training_class
        from sae_lens.training.sae_trainer import SAETrainer
        from sae_lens.util import dtype_to_str

        if self.kind not in ("standard", "topk"):
            raise ValueError(f"kind must be 'standard' or 'topk', got {self.kind!r}")
        Z = self._as_tensor(Z, fitting=True)
        n, d = Z.shape
        train_cls, cfg_cls = get_sae_training_class(self.kind)
        cfg = cfg_cls(
            d_in=d,
            d_sae=self.n_concepts,
            dtype=dtype_to_str(Z.dtype),
            device=str(Z.device),
            normalize_activations="expected_average_only_in",
            **_kind_options(self),
        )
        batch_size = min(self.batch_size, n)
        trainer_cfg = SAETrainerConfig(
            total_training_samples=self.training_samples,
            train_batch_size_samples=batch_size,
            lr=self.lr,
            lr_end=self.lr / 10,
            lr_decay_steps=self.training_samples // batch_size // 5,  # anneal over the last fifth
            device=str(Z.device),
            n_batches_for_norm_estimate=max(1, math.ceil(n / self.batch_size)),
        )
        cuda = [Z.device] if Z.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):  # the seed fixes this fit without touching the caller's RNG
            torch.manual_seed(self.seed)
            training_sae = train_cls(cfg)
            batches = shuffled_batches(Z, batch_size, torch.Generator().manual_seed(self.seed))
            SAETrainer(cfg=trainer_cfg, sae=training_sae, data_provider=batches).fit()
        self._load_sae_state(inference_sae(training_sae))
        return self

    def _rescale(self, c: float) -> None:
        """An SAE trained on Z/c accepts Z once the scale is folded into its weights (sae-lens's own folding)."""
        if self.sae is not None:
            self.sae.fold_activation_norm_scaling_factor(1.0 / c)
            self.W_dec = self.sae.W_dec.detach().clone()

    def encode(self, Z: ArrayLike) -> Float[Tensor, "n n_concepts"]:
        Z = self._as_tensor(Z, fitting=False)
        with torch.no_grad():
            return self.sae.encode(Z)

    def decode(self, V: Float[Tensor, "n n_concepts"]) -> Float[Tensor, "n d"]:
        self._check_fitted()
        with torch.no_grad():
            return self.sae.decode(V.to(self.W_dec))

    def _load_sae_state(self, sae) -> None:
        with torch.no_grad():  # aligned copies of weights a file handed back: bitwise-stable BLAS results
            for param in sae.parameters():
                param.data = param.data.clone()
        self.sae = sae.eval()
        self.kind = sae.cfg.architecture()
        self.W_dec = sae.W_dec.detach().clone()

    def to_sae(self, hook_name: str | None = None):
        """A copy of the trained SAE (its own sae-lens architecture), with `hook_name` and our metadata set."""
        from sae_lens import SAE

        self._check_fitted()
        cfg = self.sae.cfg.to_dict()
        cfg["metadata"] = {
            **cfg["metadata"],
            "hook_name": hook_name if hook_name is not None else cfg["metadata"].get("hook_name"),
            METADATA_KEY: {
                "learner": f"{type(self).__module__}:{type(self).__qualname__}",
                "params": self.get_params(),
            },
        }
        sae = SAE.from_dict(cfg)
        sae.load_state_dict(self.sae.state_dict(), strict=True)
        return sae.to(device=self.W_dec.device, dtype=self.W_dec.dtype).eval()

    @classmethod
    def from_sae(cls, sae) -> SAEDictionary:
        """Wrap any sae-lens SAE (trained here or elsewhere): its decoder rows become the concepts."""
        record = sae.cfg.metadata.get(METADATA_KEY) or {}
        import inspect

        accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "n_concepts", "device", "dtype"}
        params = {k: v for k, v in record.get("params", {}).items() if k in accepted}
        learner = cls(sae.cfg.d_sae, **params, device=sae.W_dec.device, dtype=sae.W_dec.dtype)
        learner._load_sae_state(sae)
        return learner
