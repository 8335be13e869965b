"""Corrections to TransformerLens 3.9's `TransformerBridge`, applied to every bridge `BridgeLMM` boots.

Each was found by comparing a tiny random model through the bridge with the same Hugging Face model run alone
(eager attention on both sides, every 2-D weight redrawn with std 0.15), hook by hook.

1. **Norms.** `NormalizationBridge` recomputes a LayerNorm from scratch with the *text* model's settings
   (`cfg.eps`, `cfg.rmsnorm_uses_offset`) instead of the wrapped module's. Vision towers' LayerNorms are wrapped
   this way: CLIP's `pre_layrnorm` (eps 1e-5) ran with Llama's eps 1e-6 (LLaVA: 5e-4 max abs on the logits,
   already at `vision_projector.hook_out`), and SigLIP's `post_layernorm` in Gemma 3 was scaled by Gemma's
   `1 + weight` convention (logits off by 1.07, scale 4.4; at the default init the bias is 0 and Gemma's
   projector RMSNorm divides the factor 2 away, which hid it). Fix: `use_native_layernorm_autograd`, the
   bridge's own switch that runs the HF module itself whenever hooks only read (`hook_scale` / `hook_normalized`
   still fire). Measured after: 0.0 (bit-identical) on both. Left as is: a hook that *edits* `hook_scale` or
   `hook_normalized` falls back to the from-scratch formula, with the same wrong settings on those norms.
2. **KV cache.** transformers 5.24 hands the attention module its cache as `cache=`; the bridge's reimplemented
   attention (`AttentionBridge._update_kv_cache`) reads only `past_key_values=` / `layer_past=`, so the cache
   was never filled: HF `generate` through the bridge attended, at each new token, to that token alone (greedy
   tokens diverged from HF's from the second one; TransformerLens's own `generate` gives the same wrong tokens).
   Fix: on attention bridges that reimplement the forward (those that override `AttentionBridge.forward`; the
   base class hands everything to the HF module, which reads `cache=` itself), a forward pre-hook passes the
   cache under the name the bridge reads. Measured after: greedy and beam tokens identical to HF `generate` on
   left-padded batches (LLaVA), and on LLaVA-NeXT, LLaVA-OneVision, Gemma 3, Qwen2.5-VL and Idefics3 probes.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge
from transformer_lens.model_bridge.generalized_components.normalization import NormalizationBridge


def repair_bridge(bridge: nn.Module) -> None:
    """Apply every correction above to `bridge` in place."""
    delegate_norms_to_hf(bridge)
    pass_kv_cache_to_attention(bridge)


def delegate_norms_to_hf(bridge: nn.Module) -> None:
    for module in bridge.modules():
        if isinstance(module, NormalizationBridge):
            module.use_native_layernorm_autograd = True


def _cache_as_past_key_values(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
    if kwargs.get("cache") is not None and kwargs.get("past_key_values") is None:
        kwargs["past_key_values"] = kwargs.pop("cache")
    return args, kwargs


def is_repair_hook(fn: Any) -> bool:
    """Whether a module hook is one of these corrections (not a user's: generation may skip the bridge)."""
    return fn is _cache_as_past_key_values


def pass_kv_cache_to_attention(bridge: nn.Module) -> None:
    for module in bridge.modules():
        reimplemented = isinstance(module, AttentionBridge) and type(module).forward is not AttentionBridge.forward
        if reimplemented and not getattr(module, "_lmm_cache_hook", False):
            module.register_forward_pre_hook(_cache_as_past_key_values, with_kwargs=True)
            module._lmm_cache_hook = True
