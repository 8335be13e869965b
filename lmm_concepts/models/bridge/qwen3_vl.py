"""Qwen3-VL (`Qwen3VLForConditionalGeneration`): Qwen2.5-VL's layout (`qwen2_5_vl.py`: patches stored one image
per row, `mm_token_type_ids` derived from the placeholders, 3-D rotary positions left to the model) with a ViT
that has learned position embeddings and no window attention, interleaved rotary sections, and DeepStack:
features of early ViT blocks, merged like the visual tokens, are added to the residual stream at the visual
tokens after each of the first language-model layers.

That addition happens between the HF decoder layers, not inside one, so `blocks.{L}.hook_resid_post` omits it
at the visual tokens for the first `len(vision_config.deepstack_visual_indexes)` layers (the next block's
input has it). Text and caption positions, where extraction reads, are not touched by it.
"""

from __future__ import annotations

from lmm_concepts.models.bridge.family import measured_parity, register_family
from lmm_concepts.models.bridge.qwen2_5_vl import Qwen2_5_VLFamily


class Qwen3VLFamily(Qwen2_5_VLFamily):
    name = "qwen3_vl"
    architectures = ("Qwen3VLForConditionalGeneration",)
    parity = measured_parity(0.0, 0.0)
    vision_rows = ("every image of the batch in one tensor: [all patches, d_vision] -> [all visual tokens, d_model] "
                   "(2 x 2 patches merged into one), images one after the other, each in raster order of the merged "
                   "grid (hook_in: the 4 patches of a merged token next to each); the DeepStack features are in "
                   "neither")
    image_tokens_sit = ("inside the prompt, between <|vision_start|> and <|vision_end|>: one <|image_pad|> per "
                        "visual token, prod(image_grid_thw) / merge_size² (the count follows the image's size); "
                        "3-D rotary positions there; DeepStack features are added there after each of the first "
                        "layers, outside blocks.{L}.hook_resid_post (the next block's hook_in has them)")
    vision_features_hook = "vision_projector.hook_in"  # ViT output, [all patches of the batch, d_vision]
    visual_tokens_hook = "vision_projector.hook_out"  # merger output, [all visual tokens of the batch, d_model]


register_family(Qwen3VLFamily())
