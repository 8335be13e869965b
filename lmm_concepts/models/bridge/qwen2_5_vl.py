"""Qwen2.5-VL (`Qwen2_5_VLForConditionalGeneration`): a windowed ViT at the image's own size (patches of 14 px,
grouped 2 x 2 by the merger into one visual token) and 3-D rotary positions (temporal, height, width) in the
language model; the processor expands the prompt's `<|image_pad|>` (between `<|vision_start|>` and
`<|vision_end|>`) into one placeholder per visual token: prod(image_grid_thw) / merge_size².

What differs from LLaVA:
- the processor gives `pixel_values` as [every patch of every image, channels · patch volume], images one after
  the other, and `image_grid_thw` [image, 3]. `ModelInputs` needs the sample on dim 0, so `process` stores them
  one image per row, zero-padded to the longest ([batch, patches, patch dim]), and `forward_kwargs` joins the real
  rows back (their count is prod(image_grid_thw)): select / truncate / concat then work unchanged;
- positions: the model derives its own 3-D positions from the placeholders (`mm_token_type_ids`, 1 where a
  placeholder takes the image) and the attention mask, so `position_ids` stays None (the bridge passes none to
  mRoPE models either). The mask-based derivation handles left padding; `mm_token_type_ids` is derived here from
  the placeholders, so a placeholder the model generated later is a text token, as in HF `generate`. HF keeps
  `rope_deltas` on the model between calls; a forward with token ids and no cache recomputes them, so a batch
  never inherits the state of a previous `generate` (tests/test_bridge_families_b.py checks both orders).
- the vision hooks are not per sample: `vision_projector.hook_in` / `hook_out` (the merger's input and output)
  hold every patch / visual token of the batch in one [n, d] tensor, images one after the other and, inside an
  image, in the ViT's window order (HF restores raster order after the merger).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from lmm_concepts.models.bridge.family import FamilySpec, measured_parity, register_family
from lmm_concepts.models.interface import ModelInputs


class Qwen2_5_VLFamily(FamilySpec):
    name = "qwen2_5_vl"
    architectures = ("Qwen2_5_VLForConditionalGeneration",)
    image_keys = ("pixel_values", "image_grid_thw")
    parity = measured_parity(0.0, 0.0)
    vision_rows = ("every image of the batch in one tensor: [all patches, d_vision] -> [all visual tokens, d_model] "
                   "(2 x 2 patches merged into one), images one after the other, inside an image in the ViT's window "
                   "order (HF restores raster order after the merger)")
    fallback_template = "<|im_start|>user\n<|vision_start|>{image}<|vision_end|>{text}<|im_end|>\n<|im_start|>assistant\n"
    image_tokens_sit = ("inside the prompt, between <|vision_start|> and <|vision_end|>: one <|image_pad|> per "
                        "visual token, prod(image_grid_thw) / merge_size² (the count follows the image's size); "
                        "3-D rotary positions (temporal, row, column) there, text positions after it continue "
                        "from the image's largest")
    vision_features_hook = "vision_projector.hook_in"  # ViT output, [all patches of the batch, d_vision]
    visual_tokens_hook = "vision_projector.hook_out"  # merger output, [all visual tokens of the batch, d_model]

    def process(self, processor: Any, prompts: Sequence[str], images: Sequence[Any]) -> Any:
        batch = super().process(processor, prompts, images)
        grid = batch["image_grid_thw"]
        if grid.shape[0] != len(images):
            raise ValueError(f"the processor read {grid.shape[0]} images for {len(images)} samples")
        rows = torch.split(batch["pixel_values"], grid.prod(-1).tolist())
        batch["pixel_values"] = torch.nn.utils.rnn.pad_sequence(list(rows), batch_first=True)  # one image per row
        return batch

    def forward_kwargs(self, inputs: ModelInputs, takes_image: Bool[Tensor, "batch pos"]) -> dict[str, Any]:
        """Every image's real patches in one tensor, as the processor gives them, its grid, and the placeholders
        that take an image as `mm_token_type_ids` (the 3-D positions follow them)."""
        grid = inputs.images["image_grid_thw"]
        rows = inputs.images["pixel_values"]
        patches = torch.cat([rows[i, :n] for i, n in enumerate(grid.prod(-1).tolist())])
        return {"pixel_values": patches, "image_grid_thw": grid, "mm_token_type_ids": takes_image.long()}

    def position_ids(self, inputs: ModelInputs) -> None:
        return None  # the model derives its 3-D positions (see the module docstring)

    def image_token_counts(self, config: Any, inputs: ModelInputs) -> Int[Tensor, " batch"]:
        merge = int(config.vision_config.spatial_merge_size)
        return inputs.images["image_grid_thw"].prod(-1) // merge**2


register_family(Qwen2_5_VLFamily())
