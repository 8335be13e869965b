"""Faithfulness: is a concept *used* by the model to predict its words?

For each concept k and each sample where it is active (v_k > min_activation), remove its component v_k·u_k from
the activation at the explanations' hook (the layer the dictionary was fitted on), at the sample's token, and
measure the drop in log-probability of the concept's grounded words at that token's prediction:

    drop_k = mean over samples, words of [log p(w | clean) − log p(w | v_k·u_k removed)]

(a word's probability sums its case / leading-space variant tokens). The control removes random directions of the
same norm (‖v_k·u_k‖ per sample) from the same place; a faithful concept's drop exceeds theirs. Reported per
concept (drop, random mean and std, the share of random directions it beats) and in aggregate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import torch
from jaxtyping import Float, Int
from torch import Tensor

from lmm_concepts.hooks import capture_hook, remove_component_hook


@dataclass
class ConceptFaithfulness:
    index: int
    drop: float
    random_drop_mean: float
    random_drop_std: float
    beats_random: float
    """share of random directions whose drop is below the concept's"""
    n_samples: int


@dataclass
class FaithfulnessResult:
    per_concept: list[ConceptFaithfulness]
    mean_drop: float
    mean_random_drop: float
    frac_above_random: float
    """share of scored concepts whose drop exceeds the mean random drop"""
    hook_name: str
    n_random: int
    skipped: list[int] = field(default_factory=list)
    """concepts without words or without an active sample"""

    def to_dict(self) -> dict:
        return asdict(self)


def _rows(inputs: Mapping[str, Tensor], idx: Tensor) -> dict[str, Tensor]:
    return {k: (v[idx.to(v.device)] if isinstance(v, Tensor) and v.ndim > 0 else v) for k, v in inputs.items()}


SEQUENCE_KEYS = ("input", "input_ids", "tokens", "attention_mask")
FINAL = "ln_final.hook_normalized"


def _logprobs_at(model, inputs: Mapping[str, Tensor], hooks, positions: Tensor) -> Tensor:
    """Next-token log-probs [batch, d_vocab] at each row's position, under `hooks`.

    Sequences are cut after the last needed position (a causal model's earlier positions do not see later ones)
    and only those rows are unembedded, not every position of every sequence.
    """
    end = int(positions.max()) + 1
    cut = {k: (v[:, :end] if k in SEQUENCE_KEYS and isinstance(v, Tensor) and v.ndim == 2 else v)
           for k, v in inputs.items()}
    cache: dict[str, Tensor] = {}
    model.run_with_hooks(**cut, fwd_hooks=[*hooks, (FINAL, capture_hook(cache, positions))], return_type=None)
    return model.unembed(cache[FINAL][:, None, :])[:, 0].float().log_softmax(-1).cpu()


def _word_logprob(logprobs: Float[Tensor, "n d_vocab"], word_token_ids: list[list[int]]) -> Float[Tensor, "n n_words"]:
    return torch.stack([logprobs[:, ids].logsumexp(-1) for ids in word_token_ids], dim=1)


@torch.no_grad()
def faithfulness(
    model,
    explanations,
    inputs: Mapping[str, Tensor],
    positions: Int[Tensor, "n"],  # noqa: F821
    *,
    dictionary=None,
    codes: Float[Tensor, "n K"] | None = None,
    concepts: list[int] | None = None,
    n_random: int = 10,
    min_activation: float = 0.0,
    batch_size: int = 16,
    seed: int = 0,
) -> FaithfulnessResult:
    """Per-concept and aggregate faithfulness on a batch of model inputs.

    Args:
        inputs: keyword arguments of `model.run_with_hooks` for n sequences (a HookedTransformer: {"input": tokens};
            a HookedLMM: {"input_ids", "pixel_values", "attention_mask"}).
        positions: the token of each sequence whose activation the concepts explain (and whose next-token
            distribution is scored).
        codes: V [n, K] at those tokens; by default computed by encoding the activations captured at the hook.
    """
    hook_name = explanations.hook_name
    n = positions.shape[0]
    if n == 0:
        raise ValueError("faithfulness needs at least one sample; the test set is empty")
    W_dec = explanations.W_dec
    if W_dec.shape[1] != model.cfg.d_model:
        raise ValueError(
            f"the explanations' concept vectors have d={W_dec.shape[1]} but the model's d_model is "
            f"{model.cfg.d_model}: they were grounded on another model"
        )
    positions = positions.long()
    # clean pass: activations at the hook and log-probs at each sample's token
    captured, clean_lp = [], []
    for s in range(0, n, batch_size):
        idx = torch.arange(s, min(s + batch_size, n))
        cache: dict[str, Tensor] = {}
        hooks = [(hook_name, capture_hook(cache, positions[idx]))]
        clean_lp.append(_logprobs_at(model, _rows(inputs, idx), hooks, positions[idx]))
        captured.append(cache[hook_name].float().cpu())
    Z, clean_lp = torch.cat(captured), torch.cat(clean_lp)
    if codes is None:
        dictionary = dictionary if dictionary is not None else explanations.dictionary
        if dictionary is None:
            raise ValueError("pass codes=V or the fitted dictionary (dictionary=...) to find where each concept is active")
        from lmm_concepts.grounding.store_access import encode_all

        codes = encode_all(dictionary, Z.to(dictionary.W_dec))
    codes = codes.float().cpu()
    gen = torch.Generator().manual_seed(seed)
    W_dec = W_dec.float().cpu()
    results, skipped = [], []
    for k in concepts if concepts is not None else range(len(explanations)):
        word_ids = explanations[k].word_token_ids
        active = (codes[:, k] > min_activation).nonzero().flatten()
        if not word_ids or len(active) == 0:
            skipped.append(k)
            continue
        base = _word_logprob(clean_lp[active], word_ids)
        comp = codes[active, k, None] * W_dec[k]  # [n_active, d]
        norms = comp.norm(dim=1, keepdim=True)
        directions = [comp] + [
            norms * torch.nn.functional.normalize(torch.randn(W_dec.shape[1], generator=gen), dim=0)
            for _ in range(n_random)
        ]
        drops = []
        for delta in directions:
            lp = []
            for s in range(0, len(active), batch_size):
                idx = active[s : s + batch_size]
                hook = remove_component_hook(delta[s : s + batch_size], positions[idx])
                lp.append(_logprobs_at(model, _rows(inputs, idx), [(hook_name, hook)], positions[idx]))
            drops.append((base - _word_logprob(torch.cat(lp), word_ids)).mean().item())
        rand = torch.tensor(drops[1:]) if n_random else torch.zeros(1)
        results.append(
            ConceptFaithfulness(
                index=k,
                drop=drops[0],
                random_drop_mean=rand.mean().item(),
                random_drop_std=rand.std(unbiased=False).item(),
                beats_random=(rand < drops[0]).float().mean().item() if n_random else float("nan"),
                n_samples=len(active),
            )
        )
    if not results:
        raise ValueError("no concept could be scored: none has grounded words and an active sample in this data")
    return FaithfulnessResult(
        per_concept=results,
        mean_drop=sum(r.drop for r in results) / len(results),
        mean_random_drop=sum(r.random_drop_mean for r in results) / len(results),
        frac_above_random=sum(r.drop > r.random_drop_mean for r in results) / len(results),
        hook_name=hook_name,
        n_random=n_random,
        skipped=skipped,
    )
