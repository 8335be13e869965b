"""Tiny random Idefics3 checkpoints, saved as a user's would be (`save_pretrained`, a small `tokenizers`
vocabulary, `Idefics3Processor` with a chat template), every 2-D weight redrawn with std 0.15.

Two configurations of the same class: "idefics3" (Llama text, pixel shuffle by 2, untied unembedding) and
"smolvlm" (SmolVLM's layout: a SmolLM text model, i.e. Llama with tied embeddings, pixel shuffle by 3). The
processor splits an image larger than a tile into a grid of tiles plus a global view; each tile takes
`image_seq_len` placeholders, framed by `<fake_token_around_image>` and a `<row_r_col_c>` / `<global-img>` tag.
"""

from __future__ import annotations

from pathlib import Path

import torch
from _bridge_fixtures import redraw_weights, save_checkpoint
from _model_fixtures import make_tokenizer

TILE_TAGS = tuple(f"<row_{r}_col_{c}>" for r in range(1, 4) for c in range(1, 4))
SPECIALS = ("<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>", "<|im_start|>", "User:",
            "Assistant:", *TILE_TAGS)
SMOLVLM_CHAT_TEMPLATE = (  # SmolVLM-Instruct's layout: "<|im_start|>User:<image>...<end_of_utterance>\nAssistant:"
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}:{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}{{ '<image>' }}{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
LAYOUTS = {  # tile side and pixel-shuffle factor: 4 visual tokens per tile in both
    "idefics3": dict(tile=32, scale_factor=2, tie_word_embeddings=False),
    "smolvlm": dict(tile=48, scale_factor=3, tie_word_embeddings=True),
}


def tiny_idefics3(layout: str = "idefics3", seed: int = 0):
    """(Idefics3ForConditionalGeneration, Idefics3Processor): SigLIP-like tiles of patch 8, Llama d_model 32,
    2 layers each; images up to 2x2 tiles (+ the global view)."""
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
        Idefics3VisionConfig,
        LlamaConfig,
    )

    spec = LAYOUTS[layout]
    tok = make_tokenizer(with_bos=True, extra_special=SPECIALS)
    text = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                       tie_word_embeddings=spec["tie_word_embeddings"], pad_token_id=0, bos_token_id=1,
                       eos_token_id=2)
    vision = Idefics3VisionConfig(hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                                  image_size=spec["tile"], patch_size=8)
    config = Idefics3Config(vision_config=vision, text_config=text, image_token_id=tok.convert_tokens_to_ids("<image>"),
                            scale_factor=spec["scale_factor"], pad_token_id=0,
                            tie_word_embeddings=spec["tie_word_embeddings"])
    torch.manual_seed(seed)
    model = redraw_weights(Idefics3ForConditionalGeneration(config).eval(), seed=seed)
    model.config.architectures = ["Idefics3ForConditionalGeneration"]
    image_processor = Idefics3ImageProcessor(size={"longest_edge": 2 * spec["tile"]},
                                             max_image_size={"longest_edge": spec["tile"]},
                                             image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3])
    image_seq_len = (spec["tile"] // 8) ** 2 // spec["scale_factor"] ** 2
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tok, image_seq_len=image_seq_len,
                                  chat_template=SMOLVLM_CHAT_TEMPLATE)
    return model, processor


def save_idefics3_checkpoint(folder: Path, seed: int = 0) -> Path:
    return save_checkpoint(folder, *tiny_idefics3("idefics3", seed))


def save_smolvlm_checkpoint(folder: Path, seed: int = 0) -> Path:
    """SmolVLM (v1) is the Idefics3 class with a SmolLM text model: served by the same family spec."""
    return save_checkpoint(folder, *tiny_idefics3("smolvlm", seed))
