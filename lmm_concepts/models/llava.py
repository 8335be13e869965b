"""LLaVA-1.5: HF CLIP vision tower -> Linear-act-Linear projector -> visual tokens inside a Llama chat prompt.

Read from the checkpoint's own config, never assumed: `vision_feature_layer` (an int or a list of layers,
concatenated), `vision_feature_select_strategy` ("default" drops CLS), `projector_hidden_act`, the
projector's bias, the image token id, and, through HF's own `CLIPVisionModel` module, the vision tower's
`hidden_act` (quick_gelu for OpenAI CLIP). Image size, mean and std come from `preprocessor_config.json`.

TransformerLens cannot convert `LlavaForConditionalGeneration` itself, so its text half is rebuilt as a
`LlamaForCausalLM` that *shares* the LLaVA tensors (no copy), then converted block by block while the
LLaVA text weights are released (when we loaded the checkpoint ourselves).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from lmm_concepts.models.checkpoints import load_weights_checked
from lmm_concepts.models.config import CLIP_MEAN, CLIP_STD, LMMConfig
from lmm_concepts.models.connectors import LlavaProjector
from lmm_concepts.models.interface import LMM
from lmm_concepts.models.loading import hf_to_hooked, load_tokenizer
from lmm_concepts.models.preprocessing import read_hf_preprocessor_config
from lmm_concepts.models.vision import HFClipVision

LLAVA_PROMPT = "USER: <image>\nDescribe the image in one sentence. ASSISTANT:"
IMAGE_MARKER = "<image>"


def build_llava(cls: Any, path_or_model, dtype: torch.dtype = torch.float32, device=None,
                tokenizer=None, prompt: str = LLAVA_PROMPT) -> LMM:
    """LLaVA-1.5 as a `cls` (`HookedLMM`, passed in by `HookedLMM.llava`) from a folder or a loaded model."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    folder = None
    if isinstance(path_or_model, (str, Path)):
        folder = Path(path_or_model)
        llava = _load_llava(folder, dtype)
        owned = True
        tokenizer = tokenizer or load_tokenizer(folder)
    else:
        llava, owned = path_or_model, False
        if tokenizer is None:
            raise ValueError("pass tokenizer=... together with an in-memory LLaVA model")
    config = llava.config
    text_cfg = config.text_config
    if text_cfg.model_type != "llama":
        raise ValueError(f"the LLaVA text model is {text_cfg.model_type!r}; only Llama (LLaVA-1.5) is supported")

    vision = HFClipVision(llava.model.vision_tower, feature_layer=config.vision_feature_layer,
                          select_strategy=config.vision_feature_select_strategy)
    hf_proj = llava.model.multi_modal_projector
    projector = LlavaProjector(vision.d_vision, text_cfg.hidden_size, act=config.projector_hidden_act,
                               bias=getattr(config, "multimodal_projector_bias", True))
    load_weights_checked(projector, hf_proj.state_dict(), "the LLaVA multi_modal_projector")

    causal = _text_half(llava)
    hooked = hf_to_hooked(causal, tokenizer, dtype=dtype, device=device, release_hf=owned)
    del causal

    vcfg = config.vision_config
    n_patches = (vcfg.image_size // vcfg.patch_size) ** 2
    n_visual = n_patches + (1 if config.vision_feature_select_strategy == "full" else 0)
    pre = read_hf_preprocessor_config(folder) if folder is not None else {}
    lmm_cfg = LMMConfig(
        family="llava", n_visual_tokens=n_visual, image_token_id=int(config.image_token_id), prompt=prompt,
        image_marker=IMAGE_MARKER, image_size=int(pre.get("image_size", vcfg.image_size)),
        image_mean=pre.get("image_mean", CLIP_MEAN), image_std=pre.get("image_std", CLIP_STD),
        vision={"feature_layer": config.vision_feature_layer,
                "select_strategy": config.vision_feature_select_strategy,
                "hidden_act": vcfg.hidden_act, "projector_hidden_act": config.projector_hidden_act},
    )
    if lmm_cfg.image_size != vcfg.image_size:
        raise ValueError(f"preprocessor_config.json crops to {lmm_cfg.image_size} px but the vision tower takes "
                         f"{vcfg.image_size} px; the checkpoint folder is inconsistent")
    vision = vision.to(device=device, dtype=dtype).eval()
    projector = projector.to(device=device, dtype=dtype).eval()
    return cls.from_parts(hooked, vision, projector, lmm_cfg)


def _load_llava(folder: Path, dtype: torch.dtype):
    from transformers import AutoConfig, LlavaForConditionalGeneration

    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"no config.json in {folder}; pass a folder written by "
                                "LlavaForConditionalGeneration.save_pretrained")
    config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    archs = getattr(config, "architectures", None) or []
    if config.model_type != "llava":
        raise ValueError(f"{folder} holds a {config.model_type!r} model ({archs}), not LLaVA "
                         "(LlavaForConditionalGeneration); use HookedLMM.depalm for a plain language model")
    if not [*folder.glob("*.safetensors"), *folder.glob("pytorch_model*.bin")]:
        raise FileNotFoundError(f"no weights (*.safetensors or pytorch_model*.bin) in {folder}")
    try:
        return LlavaForConditionalGeneration.from_pretrained(str(folder), config=config, dtype=dtype,
                                                             local_files_only=True).eval()
    except (RuntimeError, ValueError) as e:
        if any(w in str(e) for w in ("size mismatch", "shape", "mismatched")):
            raise ValueError(f"the weights in {folder} do not fit its config.json: {e}") from e
        raise


def _text_half(llava: nn.Module) -> nn.Module:
    """A `LlamaForCausalLM` whose modules are LLaVA's own (shared tensors, nothing copied)."""
    from transformers import LlamaForCausalLM

    text_cfg = llava.config.text_config
    text_cfg.architectures = ["LlamaForCausalLM"]
    with torch.device("meta"):
        causal = LlamaForCausalLM(text_cfg)
    causal.model = llava.model.language_model
    causal.lm_head = llava.lm_head
    return causal
