"""Checks every bridge family's tests run the same way: figures that the tests compare with their tolerance.

- `predicts_gap`: the vectors a store keeps ("predicts" positions of the generated tokens, read by `capture` on
  `generate(...).inputs()`, a left-padded batch) against each image recomputed alone, unpadded;
- `concat_gap`: rows built one by one and stacked with `ModelInputs.concat` (image tensors zero-padded, e.g. to
  the largest tile count) against each row alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lmm_concepts.models.interface import GenerationOutput, ModelInputs


def single_sequence(model, image, prompt: str, generated: torch.Tensor) -> tuple[ModelInputs, int]:
    """One image alone (no padding) with `generated` appended: (inputs, prompt length)."""
    alone = model.build_inputs([image], prompt)
    ids = torch.cat([alone.input_ids[0], generated.to(alone.input_ids.device)])[None]
    return ModelInputs(ids, torch.ones_like(ids), alone.images), alone.input_ids.shape[1]


def predicts_gap(model, out: GenerationOutput, images: Sequence, prompts: Sequence[str],
                 names: Sequence[str]) -> float:
    """Max abs gap, over the rows, the hooks `names` and every generated token, between the vector at the position
    that predicts the token in the batch and in its row recomputed alone."""
    with torch.no_grad():
        batch = model.capture(out.inputs(), names)
    start, gap = out.prompt_length, 0.0
    for row, (image, prompt) in enumerate(zip(images, prompts, strict=True)):
        real = out.attention_mask[row, start:].bool()
        generated = out.generated_ids[row, : int(real.sum())]
        assert real[: len(generated)].all() and len(generated) > 1
        alone, length = single_sequence(model, image, prompt, generated)
        with torch.no_grad():
            acts = model.capture(alone, names)
        for name in names:
            ours = batch[name][row, start - 1: start - 1 + len(generated)]
            ref = acts[name][0, length - 1: length - 1 + len(generated)]
            gap = max(gap, float((ours - ref).abs().max()))
    return gap


def concat_gap(model, images: Sequence, prompts: Sequence[str]) -> float:
    """Rows built one by one, stacked by `ModelInputs.concat` (ids right-padded, image tensors zero-padded), against
    each row's logits alone, over the real positions."""
    parts = [model.build_inputs([im], p) for im, p in zip(images, prompts, strict=True)]
    stacked = ModelInputs.concat(parts, pad_token_id=model.tokenizer.pad_token_id)
    gap = 0.0
    with torch.no_grad():
        logits = model.logits(stacked)
        for row, part in enumerate(parts):
            n = part.input_ids.shape[1]
            gap = max(gap, float((logits[row, :n] - model.logits(part)[0]).abs().max()))
    return gap
