"""Tiny random HF language models, tokenizers, open_clip towers and LLaVA checkpoints for the model tests.

Everything is built in memory from configs (no download) and saved to temporary folders, so loading goes
through the same offline path a user's local checkpoint does. Models have d_model 32, 2 layers.
"""

from __future__ import annotations

from pathlib import Path

import open_clip
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    OPTConfig,
    OPTForCausalLM,
    PreTrainedTokenizerFast,
)

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
WORDS = [f"w{i}" for i in range(60)]
D_MODEL = 32


def make_tokenizer(with_bos: bool, extra_special: tuple[str, ...] = (),
                   named: dict[str, str] | None = None) -> PreTrainedTokenizerFast:
    """The word-level test vocabulary plus special tokens; `named` ones are also reachable as attributes
    (`tok.boi_token`, `tok.image_token`, ...), as some families' processors expect."""
    named = named or {}
    vocab = {w: i for i, w in enumerate([*SPECIALS, *WORDS, *extra_special, *named.values()])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    if with_bos:
        tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    specials = {"extra_special_tokens": named} if named else {"additional_special_tokens": list(extra_special) or None}
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>", **specials)
    if named:  # transformers 5 drops additional_special_tokens given beside named ones
        tok.add_tokens(list(extra_special), special_tokens=True)
    return tok


def make_llm(family: str, vocab_size: int) -> torch.nn.Module:
    torch.manual_seed({"gpt2": 0, "opt": 1, "llama": 2}[family])  # same weights whatever ran before
    common = dict(vocab_size=vocab_size, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    if family == "gpt2":
        cfg = GPT2Config(n_embd=D_MODEL, n_layer=2, n_head=4, n_positions=128, n_ctx=128, **common)
        model = GPT2LMHeadModel(cfg)
    elif family == "opt":
        cfg = OPTConfig(hidden_size=D_MODEL, num_hidden_layers=2, ffn_dim=64, num_attention_heads=4,
                        max_position_embeddings=128, word_embed_proj_dim=D_MODEL, **common)
        model = OPTForCausalLM(cfg)
    elif family == "llama":
        cfg = LlamaConfig(hidden_size=D_MODEL, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=False, **common)
        model = LlamaForCausalLM(cfg)
    else:
        raise ValueError(family)
    model.config.architectures = [type(model).__name__]
    with torch.no_grad():  # random init is tiny; widen it so logits have clear top-2 gaps
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0, 0.2)
    return model.eval()


def save_llm(family: str, folder: Path) -> Path:
    tok = make_tokenizer(with_bos=family != "gpt2")
    model = make_llm(family, len(tok))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def tiny_open_clip_visual(image_size: int = 32) -> torch.nn.Module:
    vision_cfg = open_clip.CLIPVisionCfg(layers=1, width=32, head_width=16, patch_size=8, image_size=image_size)
    text_cfg = open_clip.CLIPTextCfg(context_length=8, vocab_size=64, width=32, heads=2, layers=1)
    return open_clip.CLIP(embed_dim=16, vision_cfg=vision_cfg, text_cfg=text_cfg).visual.eval()


def save_tiny_llava(folder: Path, feature_layer=-2, select_strategy: str = "default",
                    projector_act: str = "gelu") -> Path:
    """A random `LlavaForConditionalGeneration` (CLIP 32 px / patch 8 -> 16 patches, Llama d_model 32) with its
    tokenizer (holding "<image>") and a CLIP preprocessor config, saved with save_pretrained."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration

    tok = make_tokenizer(with_bos=True, extra_special=("<image>",))
    image_token_id = tok.convert_tokens_to_ids("<image>")
    text = LlamaConfig(vocab_size=len(tok), hidden_size=D_MODEL, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                       tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    vision = CLIPVisionConfig(hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                              image_size=32, patch_size=8, projection_dim=16)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=image_token_id,
                         vision_feature_layer=feature_layer, vision_feature_select_strategy=select_strategy,
                         projector_hidden_act=projector_act, pad_token_id=0)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2 and "vision_tower" not in name:
                p.normal_(0, 0.2)
    model.config.architectures = ["LlavaForConditionalGeneration"]
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},  # not CLIP's mean/std:
                       image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3]).save_pretrained(folder)  # read, not assumed
    return folder
