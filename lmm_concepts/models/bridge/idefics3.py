"""Idefics3 (`Idefics3ForConditionalGeneration`), and SmolVLM (v1), which is this class with a SmolLM text model.

The processor resizes an image, cuts it into a grid of square tiles (unless it fits one tile) and adds the whole
image resized to one tile as a global view; the `<image>` marker becomes, per tile, `<fake_token_around_image>`,
a `<row_r_col_c>` tag (`<global-img>` for the global view) and `image_seq_len` placeholders. The SigLIP-like
encoder reads each tile; the connector pixel-shuffles its patches by `scale_factor` and projects them. Image
tokens are thus not contiguous, and each row's image takes (its tiles) x `image_seq_len` of them.

`pixel_values` is [batch, tiles, 3, H, W] and `pixel_attention_mask` [batch, tiles, H, W], zero-padded to the
batch's largest tile count; HF drops every tile whose pixels are all 0 as padding (the processor's, or
`ModelInputs.concat`'s), and so does `image_token_counts`.
"""

from __future__ import annotations

from typing import Any

from jaxtyping import Int
from torch import Tensor

from lmm_concepts.models.bridge.family import FamilySpec, measured_parity, register_family
from lmm_concepts.models.interface import ModelInputs


class Idefics3Family(FamilySpec):
    name = "idefics3"
    architectures = ("Idefics3ForConditionalGeneration",)
    image_keys = ("pixel_values", "pixel_attention_mask")
    parity = measured_parity(0.0, 0.0, " (Idefics3 and SmolVLM)")
    vision_rows = ("per tile: [real tiles of the batch, patches, d_vision] -> [real tiles, image_seq_len, d_model] "
                   "(after the pixel shuffle); each image's tiles one after the other (grid row by row, the global "
                   "view last), all-zero padding tiles dropped")
    fallback_template = "<|im_start|>User:{image}{text}<end_of_utterance>\nAssistant:"  # SmolVLM's layout
    vision_features_hook = "vision_projector.hook_in"  # the encoder's patches [real tiles, patches, d_vision]
    visual_tokens_hook = "vision_projector.hook_out"  # [real tiles, image_seq_len, d_model], in sequence order
    image_tokens_sit = ("inside the prompt, at <image>: per tile (row by row, the global view last) "
                        "<fake_token_around_image>, a <row_r_col_c> or <global-img> tag, then image_seq_len "
                        "placeholders (not contiguous: the tags sit between tiles); 169 per tile on "
                        "Idefics3-8B, 81 on SmolVLM-Instruct")
    final_hook_is = ("the text model's final RMSNorm output (model.text_model.norm; Llama, or SmolLM on SmolVLM), read by "
                "lm_head (no bias; tied to the token embedding on SmolVLM)")

    def image_token_counts(self, config: Any, inputs: ModelInputs) -> Int[Tensor, " batch"]:
        """Real tiles of each row's image (HF's rule: a tile whose pixels are all 0 is padding) times the visual
        tokens of one tile (its patches after the connector's pixel shuffle)."""
        vision = config.vision_config
        per_tile = int((vision.image_size // vision.patch_size) ** 2 / config.scale_factor**2)
        pixels = inputs.images["pixel_values"]
        real_tiles = (pixels != 0).flatten(2).any(dim=2).sum(dim=1)
        return real_tiles.long().cpu() * per_tile


register_family(Idefics3Family())
