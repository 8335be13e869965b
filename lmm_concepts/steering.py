"""Steering: add α·u (a concept vector) to the activation at a layer during a forward pass or generation, and
measure how the model's output moves toward the concept's words.

    with lc.steer(model, expl.W_dec[k], alpha=8.0, layer=expl.hook_name):
        out = model.generate(images, max_new_tokens=20)          # every position, every generated step

With TransformerLens's KV cache, each generated step runs the hook on its one new position, so every token of the
prompt and of the continuation is steered.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from lmm_concepts.hooks import add_direction_hook
from lmm_concepts.models.interface import ModelInputs
from lmm_concepts.models.layers import resolve_layer


def _check_direction(model, direction: Tensor) -> Tensor:
    if not isinstance(direction, Tensor):
        direction = torch.as_tensor(direction)
    d_model = model.d_model
    if direction.shape[-1] != d_model:
        raise ValueError(f"the steering direction has d={direction.shape[-1]} but the model's d_model is {d_model}")
    return direction


def steering_hooks(model, direction: Tensor, alpha: float, layer: str | int, positions: Tensor | None = None):
    """The `fwd_hooks` list that adds α·direction at `layer` (a block index, "final" or a hook name)."""
    hook_name = resolve_layer(layer, model)
    return [(hook_name, add_direction_hook(_check_direction(model, direction), alpha, positions))]


@contextmanager
def steer(
    model, direction: Tensor, alpha: float, layer: str | int, positions: Tensor | None = None
) -> Iterator[object]:
    """Inside the block, every forward pass (and so generation) of `model` has α·direction added at `layer`."""
    with model.hooks(fwd_hooks=steering_hooks(model, direction, alpha, layer, positions)):
        yield model


@torch.no_grad()
def word_logit_shift(
    model,
    direction: Tensor,
    layer: str | int,
    word_token_ids: Sequence[Sequence[int]],
    inputs: ModelInputs | Mapping[str, Tensor],
    alphas: Sequence[float] = (0.0, 2.0, 4.0, 8.0),
) -> dict[float, float]:
    """Mean logit of the concept's word tokens at the last position, per α. `inputs`: a batch from
    `model.build_inputs(images)` (or a mapping of `input_ids`, optionally `attention_mask` and image tensors)."""
    ids = sorted({int(t) for word in word_token_ids for t in word})
    if not ids:
        raise ValueError("the concept has no grounded words to measure")
    inputs = ModelInputs.of(inputs)
    out = {}
    for a in alphas:
        logits = model.logits(inputs, fwd_hooks=steering_hooks(model, direction, a, layer))
        out[float(a)] = logits[:, -1, ids].float().mean().item()
    return out


@dataclass
class CaptionShift:
    """Captions generated under steering and how much they use the concept's words."""

    alphas: list[float]
    captions: list[list[str]]
    word_rate: list[float]
    """per α: share of generated words that are concept words"""
    mention_rate: list[float]
    """per α: share of captions containing at least one concept word"""
    words: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def caption_shift(
    model,
    direction: Tensor,
    layer: str | int,
    words: Sequence[str],
    generate: Callable[[], Sequence[str]],
    alphas: Sequence[float] = (0.0, 2.0, 4.0, 8.0),
) -> CaptionShift:
    """Generate captions at each α (via `generate()`, e.g. `lambda: model.generate(images).texts`) and count
    how often they use the concept's `words` (whole-word matches, case-insensitive)."""
    vocab = {w.lower() for w in words}
    if not vocab:
        raise ValueError("the concept has no grounded words to look for")
    captions, word_rate, mention_rate = [], [], []
    for a in alphas:
        with steer(model, direction, a, layer):
            texts = list(generate())
        toks = [_tokens(t) for t in texts]
        n_words = sum(len(t) for t in toks)
        word_rate.append(sum(w in vocab for t in toks for w in t) / max(n_words, 1))
        mention_rate.append(sum(any(w in vocab for w in t) for t in toks) / max(len(toks), 1))
        captions.append(texts)
    return CaptionShift([float(a) for a in alphas], captions, word_rate, mention_rate, list(words))
