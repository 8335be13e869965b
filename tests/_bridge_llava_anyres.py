"""Tiny random LLaVA-NeXT and LLaVA-OneVision checkpoints (any-res: a base tile plus a grid of tiles per image),
saved as a user's would be: `save_pretrained` for the model, a small `tokenizers` vocabulary and the family's own
processor with a chat template. Every 2-D weight is redrawn with std 0.15 (`redraw_weights`).

Tiles are 32 px, patches 8 px (16 patches per tile); the grid pinpoints allow 1x1, 1x2, 2x1 and 2x2 tiles, so
images of different aspect ratios take different tile counts and different numbers of visual tokens.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from _bridge_fixtures import LLAVA_CHAT_TEMPLATE, redraw_weights, save_checkpoint
from _model_fixtures import make_tokenizer
from PIL import Image

PINPOINTS = [[32, 32], [32, 64], [64, 32], [64, 64]]
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}{{ '<image>\n' }}{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{{ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def anyres_images(seed: int = 0) -> list[Image.Image]:
    """RGB noise of three aspect ratios (height x width): square (2x2 tiles + base), wide (1x2 + base), tall
    (2x1 + base)."""
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in [(60, 56), (30, 70), (72, 28)]]


def _text_config(config_cls, tok, **extra):
    return config_cls(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2, **extra)


def tiny_llava_next(seed: int = 0):
    """(LlavaNextForConditionalGeneration, LlavaNextProcessor): CLIP tiles (class token dropped, the "default"
    strategy), Llama d_model 32, 2 layers each."""
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
    )

    tok = make_tokenizer(with_bos=True, extra_special=("<image>",))
    vision = CLIPVisionConfig(hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                              image_size=32, patch_size=8, projection_dim=16)
    config = LlavaNextConfig(vision_config=vision, text_config=_text_config(LlamaConfig, tok),
                             image_token_id=tok.convert_tokens_to_ids("<image>"), image_grid_pinpoints=PINPOINTS,
                             vision_feature_layer=-2, vision_feature_select_strategy="default", pad_token_id=0,
                             tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = redraw_weights(LlavaNextForConditionalGeneration(config).eval(), seed=seed)
    model.config.architectures = ["LlavaNextForConditionalGeneration"]
    image_processor = LlavaNextImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                              image_grid_pinpoints=PINPOINTS, image_mean=[0.5, 0.4, 0.3],
                                              image_std=[0.2, 0.25, 0.3])
    processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tok, patch_size=8,
                                   vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                   image_token="<image>", chat_template=LLAVA_CHAT_TEMPLATE)
    return model, processor


def tiny_llava_onevision(seed: int = 0, vision_aspect_ratio: str = "anyres_max_1"):
    """(LlavaOnevisionForConditionalGeneration, LlavaOnevisionProcessor): SigLIP tiles (no class token, the "full"
    strategy), Qwen2 d_model 32, 2 layers each. `anyres_max_1` caps the unpadded grid at one tile's worth of
    features, so a 2x2-tile image goes through OneVision's bilinear downsampling."""
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
        Qwen2Config,
        SiglipVisionConfig,
    )

    tok = make_tokenizer(with_bos=False, extra_special=("<image>", "<video>", "<|im_start|>", "<|im_end|>", "user",
                                                        "assistant"))
    vision = SiglipVisionConfig(hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                                image_size=32, patch_size=8)
    config = LlavaOnevisionConfig(vision_config=vision, text_config=_text_config(Qwen2Config, tok),
                                  image_token_id=tok.convert_tokens_to_ids("<image>"),
                                  video_token_id=tok.convert_tokens_to_ids("<video>"), image_grid_pinpoints=PINPOINTS,
                                  vision_feature_layer=-1, vision_feature_select_strategy="full",
                                  vision_aspect_ratio=vision_aspect_ratio, pad_token_id=0, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = redraw_weights(LlavaOnevisionForConditionalGeneration(config).eval(), seed=seed)
    model.config.architectures = ["LlavaOnevisionForConditionalGeneration"]
    image_processor = LlavaOnevisionImageProcessor(size={"height": 32, "width": 32}, image_grid_pinpoints=PINPOINTS,
                                                   image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3])
    processor = LlavaOnevisionProcessor(image_processor=image_processor, tokenizer=tok, num_image_tokens=16,
                                        vision_feature_select_strategy="full", vision_aspect_ratio=vision_aspect_ratio,
                                        video_processor=LlavaOnevisionVideoProcessor(),
                                        chat_template=QWEN_CHAT_TEMPLATE)
    return model, processor


def save_llava_next_checkpoint(folder: Path, seed: int = 0) -> Path:
    return save_checkpoint(folder, *tiny_llava_next(seed))


def save_llava_onevision_checkpoint(folder: Path, seed: int = 0) -> Path:
    return save_checkpoint(folder, *tiny_llava_onevision(seed))


def save_llava_next_generating_its_placeholder(folder: Path, prompts: list[str], images) -> Path:
    """A tiny LLaVA-NeXT whose greedy caption of the last of `images` holds its own `<image>` token: the image
    token's unembedding row is made twice that of the first token that row would generate."""
    model, processor = tiny_llava_next()
    processor.tokenizer.padding_side = "left"
    batch = processor(text=prompts, images=images, padding=True, return_tensors="pt")
    with torch.no_grad():
        first = model.generate(**batch, do_sample=False, max_new_tokens=1, pad_token_id=0)[-1, -1]
        lm_head = model.get_output_embeddings().weight
        lm_head[model.config.image_token_id] = 2 * lm_head[first]
    return save_checkpoint(folder, model, processor)
