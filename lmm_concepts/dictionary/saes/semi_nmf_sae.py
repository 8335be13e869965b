"""The "semi_nmf" sae-lens architecture: concepts as decoder rows, codes by non-negative lasso.

Notation (see docs/design.md): x [..., d_in] a representation, W_dec [d_sae, d_in] the concepts u_k (signed rows,
‖u_k‖ ≤ 1), b_dec [d_in] a bias (zero for dictionaries we fit), codes v [..., d_sae] ≥ 0. The encoder solves,
for each row independently,

    v(x) = argmin_{v ≥ 0} ½‖(x − b_dec) − v·W_dec‖² + l1·Σ_k v_k

with `lmm_concepts.dictionary.lasso.nonneg_lasso`, the same solver `SemiNMF.encode` uses, so the SAE and the
learner give identical codes. The decoder is linear: x̂ = v·W_dec + b_dec. The codes are an argmin, yet linear in x
on each row's support, so `encode` passes gradients to x and W_dec by implicit differentiation there
(`lmm_concepts.dictionary.lasso_grad`): attribution patching and backward hooks on `hook_sae_acts_post` work.

Training (`SemiNMFTrainingSAE` with sae-lens's `SAETrainer`) minimises the same objective per batch: codes are
solved exactly with W_dec fixed (as constants: no gradient through them), the optimiser steps W_dec on
½‖x − v·W_dec‖² (by the envelope theorem this is the gradient of the objective minimised over v), and each forward
pass first projects the rows of W_dec back onto the unit ball — the projection sae-lens cannot do after its
optimiser step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from sae_lens.saes.sae import (
    SAE,
    SAEConfig,
    TrainCoefficientConfig,
    TrainingSAE,
    TrainingSAEConfig,
    TrainStepInput,
    TrainStepOutput,
)
from torch import Tensor
from typing_extensions import override

from lmm_concepts.dictionary.l1_rule import L1Rule, resolve_l1
from lmm_concepts.dictionary.lasso import init_kmeanspp, init_random, init_svd, reseed_atoms
from lmm_concepts.dictionary.lasso_grad import lasso_codes
from lmm_concepts.dictionary.saes._tied import TiedEncoder, flat_rows, project_rows_to_unit_ball
from lmm_concepts.dictionary.semi_nmf import semi_nmf_probe

ARCHITECTURE = "semi_nmf"
#: starts of the training SAE's concepts from its first batch [batch, d] -> [d_sae, d], unit rows
FIRST_BATCH_STARTS = {"svd": init_svd, "kmeans++": init_kmeanspp, "random": init_random}


class LassoOptions(Protocol):
    """What the code solver reads: an SAE config here, or a learner (SemiNMF, NMF, RandomDictionary)."""

    l1: float
    encode_max_iter: int
    encode_tol: float
    lasso_method: str


def encode_semi_nmf(
    sae_in: Tensor, W_dec: Tensor, opts: LassoOptions, *, differentiable: bool = True
) -> Tensor:
    """Codes [..., d_sae] ≥ 0 of `sae_in` [..., d_in] (bias already removed) by non-negative lasso.

    Learners and SAEs both call this with the same options, so their codes are identical. The codes are
    differentiable with respect to `sae_in` and `W_dec` (implicit differentiation on each row's support,
    `lasso_grad.py`) unless `differentiable=False`; with autograd off they cost the solver's call and nothing more.
    """
    rows, lead = flat_rows(sae_in)
    if not differentiable:
        rows, W_dec = rows.detach(), W_dec.detach()
    codes = lasso_codes(
        rows, W_dec, opts.l1, max_iter=opts.encode_max_iter, tol=opts.encode_tol, method=opts.lasso_method
    )
    return codes.reshape(*lead, W_dec.shape[0])


def _check_penalty(cfg: SemiNMFSAEConfig | SemiNMFTrainingSAEConfig) -> None:
    L1Rule.absolute(cfg.l1)  # a finite l1 >= 0, or a clear error
    if cfg.l1_rule is not None:
        rule = L1Rule.parse(cfg.l1_rule)
        if rule.is_absolute:
            raise ValueError(f"l1_rule names a data-relative rule ('rms:0.1', 'active:8'); for an absolute penalty "
                             f"set l1={rule.value:g} instead of l1_rule={cfg.l1_rule!r}")
        rule.check_concepts(cfg.d_sae)


def _fold_scale(sae: SAE, scaling_factor: float) -> None:
    """Fold an input scale s (the SAE saw s·x) so the raw x gives the same codes and outputs in x's units.

    argmin ½‖s·x − v·W‖² + l1·Σv = argmin ½‖x − v·(W/s)‖² + (l1/s²)·Σv, so W_dec and b_dec shrink by s and
    l1 by s² (the rows of W_dec then have norm ≤ 1/s).
    """
    with torch.no_grad():
        sae.W_dec.data /= scaling_factor
        sae.b_dec.data /= scaling_factor
    sae.cfg.l1 /= scaling_factor**2
    sae.cfg.normalize_activations = "none"


# --- inference ---


@dataclass
class SemiNMFSAEConfig(SAEConfig):
    """Config of the "semi_nmf" SAE.

    Args:
        l1: weight of the L1 penalty on the codes (scikit-learn's `alpha`; the paper's λ is 2·l1), absolute.
        encode_max_iter, encode_tol, lasso_method: options of the code solver `nonneg_lasso` (max_iter, tol,
            method), the same names and defaults as `SemiNMF`'s.
        l1_rule: the data-relative rule `l1` was resolved from ("rms:0.1", "active:8"; see `l1_rule.py`), kept
            as a record; None when `l1` was given as such.
    """

    l1: float = 1.0
    encode_max_iter: int = 1000
    encode_tol: float = 1e-5
    lasso_method: str = "auto"
    l1_rule: str | None = None

    @override
    @classmethod
    def architecture(cls) -> str:
        return ARCHITECTURE

    def __post_init__(self):
        super().__post_init__()
        _check_penalty(self)


class SemiNMFSAE(TiedEncoder, SAE[SemiNMFSAEConfig]):
    """Inference SAE of a Semi-NMF dictionary: `encode` is the non-negative lasso on `W_dec`."""

    @override
    def encode(self, x: Tensor) -> Tensor:
        sae_in = self.process_sae_in(x)
        return self.hook_sae_acts_post(encode_semi_nmf(sae_in, self.W_dec, self.cfg))

    @override
    def fold_W_dec_norm(self) -> None:
        raise NotImplementedError(
            "rescaling the rows of W_dec changes the lasso's solution: it cannot be folded"
        )

    @override
    def fold_activation_norm_scaling_factor(self, scaling_factor: float) -> None:
        _fold_scale(self, scaling_factor)


# --- training ---


@dataclass
class SemiNMFTrainingSAEConfig(TrainingSAEConfig):
    """Config for training a "semi_nmf" SAE with sae-lens's `SAETrainer`.

    Args:
        l1: weight of the L1 penalty on the codes, as in `SemiNMFSAEConfig`.
        l1_rule: set `l1` from the data instead: "rms:0.1" (a fraction of the rows' RMS norm) or "active:8"
            (active concepts per sample), resolved once on the first training batch (`l1_rule.resolve_l1`); the
            saved SAE holds the resolved `l1` and this rule.
        encode_max_iter, encode_tol, lasso_method: code-solver options, as in `SemiNMFSAEConfig`.
        init: start of the concepts, from the first batch: "svd" (its top right singular vectors, signed
            towards the data, as `SemiNMF`'s default), "kmeans++" or "random" (normalised samples), or "none"
            (sae-lens's random unit directions).
        reseed_dead: replace concepts that `SAETrainer` reports dead (no code for `dead_feature_window`
            steps) by the batch's worst-reconstructed samples, as the full-batch solver does.
        decoder_init_norm: norm of the random initial concepts (1.0: on the unit sphere).
    """

    l1: float = 1.0
    encode_max_iter: int = 1000
    encode_tol: float = 1e-5
    lasso_method: str = "auto"
    l1_rule: str | None = None
    init: str = "svd"
    reseed_dead: bool = True
    decoder_init_norm: float | None = 1.0

    @override
    @classmethod
    def architecture(cls) -> str:
        return ARCHITECTURE

    @override
    def __post_init__(self):
        if self.init not in FIRST_BATCH_STARTS and self.init != "none":
            raise ValueError(f"init must be one of {sorted(FIRST_BATCH_STARTS)} or 'none', got {self.init!r}")
        _check_penalty(self)
        if self.normalize_activations == "covariance_whitening":
            raise ValueError(
                "normalize_activations='covariance_whitening' cannot be folded into a tied encoder"
            )
        super().__post_init__()


class SemiNMFTrainingSAE(TiedEncoder, TrainingSAE[SemiNMFTrainingSAEConfig]):
    """Semi-NMF trained by sae-lens: exact codes per batch, a gradient step on W_dec, projection in forward.

    Each forward pass first projects the rows of W_dec back onto the unit ball (in place), then uses them
    through `concepts()`, which makes the gradient of rows on the sphere tangent to it.

    The reported losses are the objective per sample: `mse_loss` = mean ½‖x − x̂‖², `l1_loss` = mean l1·Σv.
    `b_dec` stays zero (the objective has no bias) and is not trained.
    """

    @override
    def __init__(self, cfg: SemiNMFTrainingSAEConfig, use_error_term: bool = False):
        super().__init__(cfg, use_error_term)
        self.b_dec.requires_grad_(False)
        self.mse_loss_fn = lambda pred, target: 0.5 * (pred - target).pow(2)
        self.concept_norm_bound = 1.0  # becomes 1/s when an input scale s is folded in

    @override
    def get_coefficients(self) -> dict[str, float | TrainCoefficientConfig]:
        return {}

    @override
    def encode_with_hidden_pre(self, x: Tensor) -> tuple[Tensor, Tensor]:
        project_rows_to_unit_ball(self.W_dec, self.concept_norm_bound)
        sae_in = self.process_sae_in(x)
        # codes without autograd: by the envelope theorem the fixed-code gradient is the objective's
        acts = self.hook_sae_acts_post(
            encode_semi_nmf(sae_in, self.concepts(), self.cfg, differentiable=False)
        )
        return acts, torch.zeros_like(acts)  # there is no single pre-activation (as for matching pursuit)

    @override
    def decode(self, feature_acts: Tensor) -> Tensor:
        sae_out = self.hook_sae_recons(feature_acts @ self.concepts() + self.b_dec)
        sae_out = self.run_time_activation_norm_fn_out(sae_out)
        return self.reshape_fn_out(sae_out, self.d_head)

    def concepts(self) -> Tensor:
        """W_dec with the rows on (or beyond) the sphere of radius `concept_norm_bound` divided by their norm.

        The division is part of the graph, so the gradient those rows receive is tangent to the sphere: its
        radial part, which the constraint absorbs at the optimum, never reaches Adam. (Projecting after an
        Adam step instead does not converge to the constrained optimum: Adam rescales each coordinate, so
        its step is not parallel to the gradient and the projection leaves a drift; measured 4-5 % above
        the full-batch objective, against < 1 % with this parametrisation.)
        """
        bound = self.concept_norm_bound
        norms = self.W_dec.norm(dim=1, keepdim=True)
        on_sphere = norms >= bound * (1 - 1e-4)
        return self.W_dec * torch.where(on_sphere, bound / norms.clamp_min(1e-30), torch.ones_like(norms))

    @override
    def calculate_aux_loss(
        self, step_input: TrainStepInput, feature_acts: Tensor, hidden_pre: Tensor, sae_out: Tensor
    ) -> dict[str, Tensor]:
        # constant in W_dec at the optimal codes: reported so that the total loss is the objective
        return {"l1_loss": self.cfg.l1 * feature_acts.sum(-1).mean()}

    @override
    def training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput:
        with torch.no_grad():
            sae_in = self.process_sae_in(step_input.sae_in)
            if step_input.n_training_steps == 0 and self.cfg.l1_rule is not None:
                # the first batch is training data: the rule's scale comes from it, once
                self.cfg.l1 = resolve_l1(self.cfg.l1_rule, sae_in, self.cfg.d_sae, probe=semi_nmf_probe(self.cfg.d_sae))
            if self.cfg.init != "none" and step_input.n_training_steps == 0:
                start = FIRST_BATCH_STARTS[self.cfg.init](sae_in, self.cfg.d_sae)
                self.W_dec.data.copy_(self.concept_norm_bound * start)
            elif (
                self.cfg.reseed_dead
                and step_input.dead_neuron_mask is not None
                and step_input.dead_neuron_mask.any()
            ):
                self._reseed_dead(step_input.dead_neuron_mask.nonzero().flatten(), sae_in)
        return super().training_forward_pass(step_input)

    def _reseed_dead(self, dead: Tensor, samples: Tensor) -> None:
        """Dead concepts restart at the normalised residuals of the batch's worst-reconstructed samples."""
        project_rows_to_unit_ball(self.W_dec, self.concept_norm_bound)
        codes = encode_semi_nmf(samples, self.W_dec, self.cfg)
        residuals = samples - codes @ self.W_dec
        worst = residuals.norm(dim=1).topk(min(len(dead), samples.shape[0])).indices
        mask = torch.zeros(self.cfg.d_sae, dtype=torch.bool, device=dead.device)
        mask[dead] = True
        W = reseed_atoms(self.W_dec.data, mask, residuals[worst])
        self.W_dec.data.copy_(W * self.concept_norm_bound)

    @override
    def fold_W_dec_norm(self) -> None:
        raise NotImplementedError(
            "rescaling the rows of W_dec changes the lasso's solution: it cannot be folded"
        )

    @override
    def fold_activation_norm_scaling_factor(self, scaling_factor: float) -> None:
        project_rows_to_unit_ball(self.W_dec, self.concept_norm_bound)
        _fold_scale(self, scaling_factor)
        self.concept_norm_bound /= scaling_factor

    @override
    def process_state_dict_for_saving(self, state_dict: dict) -> None:
        # the last optimiser step may have left rows outside the unit ball: save the projected concepts
        W = state_dict["W_dec"].detach().clone()
        project_rows_to_unit_ball(W, self.concept_norm_bound)
        state_dict["W_dec"] = W
