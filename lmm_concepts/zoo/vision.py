"""The toy CLIP's image tower as a DePALM vision encoder: pixels -> ``[batch, 1 + grid², d_vision]`` tokens.

The toy CLIP uses open_clip's `ModifiedResNet` (CLIP's RN design: a conv trunk closed by an attention pool),
because a tiny ViT trained from scratch on a CPU budget does not learn the world's shapes (measured: ~28 %
shape accuracy after 600 warm-up steps, chance is 20 %), whereas the ResNet does. Its tokens are the attention
pool's full output — the pooled query first (the CLIP embedding, like ViT's CLS), then one token per cell of
the final feature grid — the RN counterpart of the last-layer ViT tokens DePALM feeds its connector.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn


class ResNetClipVision(nn.Module):
    """Wrap ``open_clip.CLIP(...).visual`` (a `ModifiedResNet`) to return its attention-pool tokens."""

    def __init__(self, visual: nn.Module):
        super().__init__()
        if not hasattr(visual, "attnpool") or not hasattr(visual, "stem"):
            raise TypeError(f"ResNetClipVision needs an open_clip ModifiedResNet, got {type(visual).__name__}")
        self.visual = visual

    @property
    def d_vision(self) -> int:
        return self.visual.attnpool.c_proj.out_features

    @property
    def image_size(self) -> int:
        return int(self.visual.image_size)

    def forward(self, pixel_values: Float[Tensor, "batch 3 H W"]) -> Float[Tensor, "batch n_tokens d_vision"]:
        v = self.visual
        x = v.stem(pixel_values)
        x = v.layer4(v.layer3(v.layer2(v.layer1(x))))
        pool = v.attnpool
        x = x.flatten(2).permute(2, 0, 1)  # [grid², batch, C]
        x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0) + pool.positional_embedding[:, None, :].to(x.dtype)
        x, _ = F.multi_head_attention_forward(
            query=x, key=x, value=x, embed_dim_to_check=x.shape[-1], num_heads=pool.num_heads,
            q_proj_weight=pool.q_proj.weight, k_proj_weight=pool.k_proj.weight, v_proj_weight=pool.v_proj.weight,
            in_proj_weight=None, in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
            bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0, out_proj_weight=pool.c_proj.weight,
            out_proj_bias=pool.c_proj.bias, use_separate_proj_weight=True, training=self.training,
            need_weights=False,
        )
        return x.permute(1, 0, 2)  # [batch, 1 + grid², d_vision]; token 0 is the CLIP image embedding
