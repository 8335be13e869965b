"""LLaVA-OneVision (`LlavaOnevisionForConditionalGeneration`): LLaVA-NeXT's any-res tiling (SigLIP tiles, Qwen2
text), with one more step: a tile grid whose un-padded feature map exceeds `vision_aspect_ratio`'s budget
("anyres_max_9": nine tiles' worth) is shrunk by bilinear interpolation before the newline vectors are added.
Its processor also hands over `batch_num_images` [batch] (1 per sample here: each image is tiled)."""

from __future__ import annotations

import math
from typing import Any

from lmm_concepts.models.bridge.family import measured_parity, register_family
from lmm_concepts.models.bridge.llava_next import LlavaNextFamily


class LlavaOnevisionFamily(LlavaNextFamily):
    name = "llava_onevision"
    architectures = ("LlavaOnevisionForConditionalGeneration",)
    image_keys = ("pixel_values", "image_sizes", "batch_num_images")
    parity = measured_parity(0.0, 0.0)
    image_tokens_sit = ("inside the prompt, at <image>: the base tile's patches, then the tile grid's patches "
                        "un-padded to the image's aspect ratio (shrunk bilinearly past vision_aspect_ratio's "
                        "budget), row by row, each row ending with the newline vector. vision_projector.hook_out "
                        "holds them per tile [tiles, patches, d_model], before un-padding, shrinking and newlines; "
                        "as placed in the sequence they are blocks.0.hook_resid_pre at the placeholders")
    final_hook_is = "the Qwen2 text model's final RMSNorm output (model.language_model.norm), read by lm_head (no bias)"

    def _feature_map(self, config: Any, height: int, width: int, side: int) -> tuple[int, int]:
        """LLaVA-NeXT's un-padded map, then HF's `anyres_max_N` cap: past N tiles' worth of features (by more than
        10 %), both sides are divided by the excess ratio."""
        rows, cols = super()._feature_map(config, height, width, side)
        max_tiles = int(config.vision_aspect_ratio.removeprefix("anyres_max_"))
        ratio = math.sqrt(rows * cols / (max_tiles * side**2))
        if ratio > 1.1:
            rows, cols = int(rows // ratio), int(cols // ratio)
        return rows, cols


register_family(LlavaOnevisionFamily())
