"""Mistral 3 (`Mistral3ForConditionalGeneration`, e.g. Mistral-Small-3.1): a Pixtral ViT at the image's own size
(up to the processor's longest edge, in multiples of patch · merge), a 2 x 2 patch merger and a projector into
a Mistral language model; the processor expands the prompt's `[IMG]` into the image's grid of visual tokens,
one `[IMG]` each, row by row, each row closed by `[IMG_BREAK]` and the last by `[IMG_END]`.

What differs from LLaVA: images of different sizes take different numbers of visual tokens. The processor pads
`pixel_values` to the batch's largest image and gives each image's own size as `image_sizes` [batch, 2]; the
vision tower crops by it, so both keep the sample on dim 0 and zero padding (`ModelInputs.concat`) is ignored.
The vision hooks are not per sample: Pixtral runs every image of the batch as one sequence (a block-diagonal
mask), so `vision_projector.hook_in` / `hook_out` hold every patch / visual token of the batch in one [n, d]
tensor, images one after the other, each in row-major order.
"""

from __future__ import annotations

from typing import Any

from jaxtyping import Int
from torch import Tensor

from lmm_concepts.models.bridge.family import FamilySpec, measured_parity, register_family
from lmm_concepts.models.interface import ModelInputs


class Mistral3Family(FamilySpec):
    name = "mistral3"
    architectures = ("Mistral3ForConditionalGeneration",)
    image_keys = ("pixel_values", "image_sizes")
    parity = measured_parity(0.0, 0.0)
    vision_rows = ("every image of the batch in one tensor: [all patches, d_vision] -> [all visual tokens, d_model] "
                   "(2 x 2 patches merged into one), images one after the other, each row-major (the [IMG_BREAK] "
                   "tokens are the sequence's, not these hooks')")
    fallback_template = "[INST]{image}{text}[/INST]"
    image_tokens_sit = ("inside the prompt, at [IMG]: one [IMG] per visual token, row by row over the image's "
                        "merged patch grid, each row closed by [IMG_BREAK], the last by [IMG_END] (the count "
                        "follows the image's size)")
    vision_features_hook = "vision_projector.hook_in"  # Pixtral's output, [all patches of the batch, d_vision]
    visual_tokens_hook = "vision_projector.hook_out"  # [all visual tokens of the batch, d_model]

    def image_token_counts(self, config: Any, inputs: ModelInputs) -> Int[Tensor, " batch"]:
        """Rows x columns of the merged patch grid of each image's own size."""
        step = int(config.vision_config.patch_size) * int(config.spatial_merge_size)
        sizes = inputs.images["image_sizes"]
        return (sizes[:, 0] // step) * (sizes[:, 1] // step)


register_family(Mistral3Family())
