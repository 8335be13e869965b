"""LLaVA-NeXT (`LlavaNextForConditionalGeneration`, "any-res"): each image is cut into a base tile (the whole image
resized) plus a grid of tiles chosen from `image_grid_pinpoints`; the grid's features are un-padded back to the
image's aspect ratio and each of their rows ends with a learned newline vector. The number of visual tokens thus
varies with the image's size, which the processor hands over as `image_sizes` [batch, 2] (height, width).

`pixel_values` is [batch, tiles, 3, H, W], zero-padded to the batch's largest tile count; HF reads the real tile
count of each image from its `image_sizes`, so tiles added by padding (the processor's, or `ModelInputs.concat`'s)
never reach the vision tower.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from lmm_concepts.models.bridge.family import measured_parity, register_family
from lmm_concepts.models.bridge.llava import LlavaFamily
from lmm_concepts.models.interface import ModelInputs


class LlavaNextFamily(LlavaFamily):
    name = "llava_next"
    architectures = ("LlavaNextForConditionalGeneration",)
    image_keys = ("pixel_values", "image_sizes")
    parity = measured_parity(0.0, 6.6e-7)
    vision_rows = ("per tile: [real tiles of the batch, patches, d_vision] -> [real tiles, patches, d_model]; each "
                   "image's tiles one after the other (base tile, then the grid row by row), padding tiles dropped, "
                   "before un-padding and newlines")
    image_tokens_sit = ("inside the prompt, at <image>: the base tile's patches, then the tile grid's patches "
                        "un-padded to the image's aspect ratio, row by row, each row ending with the newline vector "
                        "(2928 tokens for a 672x672 image on LLaVA-1.6 at 336 px). vision_projector.hook_out holds "
                        "them per tile [tiles, patches, d_model], before un-padding and newlines; as placed in the "
                        "sequence they are blocks.0.hook_resid_pre at the placeholders")
    final_hook_is = "the text model's final RMSNorm output (model.language_model.norm), read by lm_head (no bias, no cap)"

    def image_token_counts(self, config: Any, inputs: ModelInputs) -> Int[Tensor, " batch"]:
        """Visual tokens of each row's image, from its `image_sizes` as HF's `pack_image_features` lays them out:
        the base tile's tokens, then the tile grid's feature map un-padded, plus one newline per map row."""
        base = super().image_token_counts(config, inputs)
        side = config.vision_config.image_size // config.vision_config.patch_size  # features per tile side
        counts = []
        for height, width in inputs.images["image_sizes"].tolist():
            rows, cols = self._feature_map(config, int(height), int(width), side)
            counts.append(base + rows * cols + rows)
        return torch.tensor(counts, dtype=torch.long)

    def _feature_map(self, config: Any, height: int, width: int, side: int) -> tuple[int, int]:
        """(rows, columns) of the tile grid's feature map once un-padded (HF's `unpad_image`)."""
        from transformers.models.llava_next.modeling_llava_next import get_anyres_image_grid_shape

        grid_rows, grid_cols = get_anyres_image_grid_shape((height, width), config.image_grid_pinpoints,
                                                           config.vision_config.image_size)
        rows, cols = grid_rows * side, grid_cols * side
        if width / height > cols / rows:  # wider than the grid: padding was added above and below
            padding = (rows - int(round(height * (cols / width), 7))) // 2
            rows -= 2 * padding
        else:
            padding = (cols - int(round(width * (rows / height), 7))) // 2
            cols -= 2 * padding
        return rows, cols


register_family(LlavaNextFamily())
