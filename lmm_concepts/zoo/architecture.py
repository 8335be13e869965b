"""The toy's modules, as the recipe trains them and the loader rebuilds them: the tiny open_clip CLIP, the
TransformerLens language model, and the captions' token layout."""

from __future__ import annotations

import torch
from jaxtyping import Int
from torch import Tensor, nn

from lmm_concepts.zoo.config import ClipConfig


def build_clip(cfg: ClipConfig, image_size: int, vocab_size: int, pad_id: int, eos_id: int) -> nn.Module:
    import open_clip

    return open_clip.CLIP(
        embed_dim=cfg.embed_dim,
        vision_cfg=dict(layers=(cfg.blocks,) * 4, width=cfg.width, head_width=32, image_size=image_size),
        text_cfg=dict(context_length=cfg.context_length, vocab_size=vocab_size, width=cfg.text_width,
                      heads=max(1, cfg.text_width // 32), layers=cfg.text_layers, pad_id=pad_id, eos_id=eos_id,
                      pool_type="eos"),
    )


def build_lm(cfg_dict_or_cfg, tokenizer):
    """A `HookedTransformer` with random weights and the world tokenizer attached as it is."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from lmm_concepts.models.loading import attach_tokenizer

    tl_cfg = (HookedTransformerConfig.from_dict(cfg_dict_or_cfg) if isinstance(cfg_dict_or_cfg, dict)
              else cfg_dict_or_cfg)
    lm = HookedTransformer(tl_cfg, tokenizer=None, move_to_device=False)
    attach_tokenizer(lm, tokenizer)
    return lm


def encode_texts(tokenizer, texts: list[str], length: int, bos: bool = False) -> Int[Tensor, "b length"]:
    """Word ids, [EOS]-terminated, [PAD]-padded to `length` (truncated captions keep their [EOS])."""
    out = torch.full((len(texts), length), tokenizer.pad_token_id, dtype=torch.long)
    for i, t in enumerate(texts):
        ids = tokenizer(t, add_special_tokens=False)["input_ids"]
        ids = ([tokenizer.bos_token_id] if bos else []) + ids[: length - 1 - bos] + [tokenizer.eos_token_id]
        out[i, : len(ids)] = torch.tensor(ids)
    return out
