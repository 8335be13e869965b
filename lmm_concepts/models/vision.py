"""Vision encoders: pixel_values `[batch, 3, H, W]` -> features `[batch, n_tokens, d_vision]`.

- `OpenClipVision` wraps an open_clip `VisionTransformer` (DePALM): last-layer tokens, CLS first
  (257 tokens for ViT-L/14 at 224 px), optionally through the tower's final LayerNorm `ln_post`.
- `HFClipVision` wraps an HF `CLIPVisionModel` (LLaVA): hidden states of `feature_layer` (before
  `post_layernorm`; a list of layers is concatenated along features), CLS dropped when the select
  strategy is "default", as HF `LlavaModel.get_image_features` does.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn


class OpenClipVision(nn.Module):
    def __init__(self, visual: nn.Module, apply_ln_post: bool = True):
        super().__init__()
        if not hasattr(visual, "forward_intermediates") or not hasattr(visual, "transformer"):
            raise TypeError(f"OpenClipVision needs an open_clip VisionTransformer (model.visual), got {type(visual).__name__}")
        self.visual = visual
        self.apply_ln_post = apply_ln_post

    @property
    def d_vision(self) -> int:
        return self.visual.transformer.width

    @property
    def image_size(self) -> int:
        size = self.visual.image_size
        return size[0] if isinstance(size, (tuple, list)) else int(size)

    def forward(self, pixel_values: Float[Tensor, "batch 3 H W"]) -> Float[Tensor, "batch n_tokens d_vision"]:
        out = self.visual.forward_intermediates(
            pixel_values, indices=1, intermediates_only=True, output_fmt="NLC", output_extra_tokens=True,
            normalize_intermediates=self.apply_ln_post,
        )
        return torch.cat([out["image_intermediates_prefix"][0], out["image_intermediates"][0]], dim=1)


class HFClipVision(nn.Module):
    def __init__(self, vision_tower: nn.Module, feature_layer: int | list[int] = -2, select_strategy: str = "default"):
        super().__init__()
        if select_strategy not in ("default", "full"):
            raise ValueError(f"vision_feature_select_strategy must be 'default' or 'full', got {select_strategy!r}")
        self.vision_tower = vision_tower
        self.feature_layer = feature_layer
        self.select_strategy = select_strategy

    @property
    def d_vision(self) -> int:
        n = len(self.feature_layer) if isinstance(self.feature_layer, (list, tuple)) else 1
        return self.vision_tower.config.hidden_size * n

    @property
    def image_size(self) -> int:
        return int(self.vision_tower.config.image_size)

    def forward(self, pixel_values: Float[Tensor, "batch 3 H W"]) -> Float[Tensor, "batch n_tokens d_vision"]:
        hidden = self.vision_tower(pixel_values, output_hidden_states=True).hidden_states
        layers = self.feature_layer if isinstance(self.feature_layer, (list, tuple)) else [self.feature_layer]
        feats = torch.cat([hidden[i] for i in layers], dim=-1)
        return feats[:, 1:] if self.select_strategy == "default" else feats
