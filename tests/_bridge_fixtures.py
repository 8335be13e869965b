"""Tiny random checkpoints of the bridge families, saved as a user's would be, and the parity checks every family
runs against its own Hugging Face model.

Each family gets one `save_tiny_<family>` builder: `save_pretrained` for the model, a small `tokenizers` vocabulary
wrapped in `PreTrainedTokenizerFast`, and the family's own processor (with a chat template). Every 2-D weight is
redrawn with std 0.15: at transformers' default init (0.02) structural differences hide (a tiny Gemma 3 matched
HF to 1.6e-7 there and missed it by 1.07 once redrawn).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from _model_fixtures import D_MODEL, make_tokenizer
from PIL import Image

PARITY_STD = 0.15
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'].upper() + ': ' }}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}{{ '<image>\n' }}{% else %}{{ c['text'] + ' ' }}{% endif %}{% endfor %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def redraw_weights(model: torch.nn.Module, std: float = PARITY_STD, seed: int = 0) -> torch.nn.Module:
    """Every 2-D weight ~ N(0, std), drawn in parameter order from `seed`."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model


def random_images(n: int, seed: int = 0) -> list[Image.Image]:
    """RGB noise images of different sizes (the processor resizes and crops them)."""
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (36 + 4 * i, 44 + 6 * i, 3), dtype=np.uint8)) for i in range(n)]


def tiny_llava(select_strategy: str = "default", seed: int = 0):
    """(LlavaForConditionalGeneration, LlavaProcessor): CLIP 32 px / patch 8, Llama d_model 32, 2 layers each."""
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tok = make_tokenizer(with_bos=True, extra_special=("<image>",))
    text = LlamaConfig(vocab_size=len(tok), hidden_size=D_MODEL, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                       tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    vision = CLIPVisionConfig(hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                              image_size=32, patch_size=8, projection_dim=16)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=tok.convert_tokens_to_ids("<image>"),
                         vision_feature_layer=-2, vision_feature_select_strategy=select_strategy, pad_token_id=0)
    torch.manual_seed(seed)
    model = redraw_weights(LlavaForConditionalGeneration(config).eval(), seed=seed)
    model.config.architectures = ["LlavaForConditionalGeneration"]
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                         image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3])
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=8,
                               vision_feature_select_strategy=select_strategy, num_additional_image_tokens=1,
                               image_token="<image>", chat_template=LLAVA_CHAT_TEMPLATE)
    return model, processor


def save_llava_checkpoint(folder: Path, select_strategy: str = "default", seed: int = 0) -> Path:
    model, processor = tiny_llava(select_strategy, seed)
    return save_checkpoint(folder, model, processor)


def save_checkpoint(folder: Path, model: torch.nn.Module, processor) -> Path:
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def hf_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """HF generate's positions for left-padded rows (HF's plain forward would count the padding)."""
    return (attention_mask.cumsum(1) - 1).clamp(min=0)


def max_logit_gap(model, hf, inputs) -> float:
    """Max abs difference between the model's logits and HF's own forward, over the real (unpadded) positions."""
    with torch.no_grad():
        ours = model.logits(inputs)
        ref = hf(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask,
                 position_ids=hf_positions(inputs.attention_mask), **inputs.images).logits
    return float((ours - ref)[inputs.attention_mask.bool()].abs().max())


def hf_generate(hf, inputs, max_new_tokens: int, num_beams: int = 1, **kwargs) -> torch.Tensor:
    """HF's own generated tokens `[batch, new]` for the same batch and settings as `LMM.generate`."""
    with torch.no_grad():
        out = hf.generate(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask, **inputs.images,
                          do_sample=False, num_beams=num_beams, max_new_tokens=max_new_tokens, pad_token_id=0,
                          eos_token_id=2, **kwargs)
    return out


def save_llava_generating_its_placeholder(folder: Path, prompts: list[str], images) -> Path:
    """A tiny LLaVA ("full" strategy, as a user would build it) whose greedy caption of `images` holds its own
    `<image>` token: the image token's unembedding row is made twice that of the first token row 0 would
    generate, so the placeholder wins that step (its logit doubles a positive maximum)."""
    model, processor = tiny_llava(select_strategy="full")
    processor.tokenizer.padding_side = "left"
    batch = processor(text=prompts, images=images, padding=True, return_tensors="pt")
    with torch.no_grad():
        first = model.generate(**batch, do_sample=False, max_new_tokens=1, pad_token_id=0)[0, -1]
        lm_head = model.get_output_embeddings().weight
        lm_head[model.config.image_token_id] = 2 * lm_head[first]
    return save_checkpoint(folder, model, processor)


def check_sae_with_error_term(model, inputs, hook: str = "blocks.0.hook_resid_post") -> None:
    """sae-lens's `add_sae(dico.to_sae(hook), use_error_term=True)` on the model leaves its logits unchanged, and
    the SAE's codes there are the dictionary's own (a Semi-NMF fitted on the hook's activations)."""
    import lmm_concepts as lc

    with torch.no_grad():
        clean = model.logits(inputs)
        Z = model.capture(inputs, [hook])[hook][inputs.attention_mask.bool()]
    dico = lc.SemiNMF(n_concepts=4, l1=0.1).fit(Z)
    codes_hook = f"{model.hook_dict[hook].name}.hook_sae_acts_post"  # the SAE sits at the canonical name
    model.add_sae(dico.to_sae(hook), use_error_term=True)
    try:
        with torch.no_grad():
            logits = model.logits(inputs)
            acts = model.capture(inputs, [codes_hook])
    finally:
        model.reset_saes()
    assert (logits - clean).abs().max() <= 1e-5
    torch.testing.assert_close(acts[codes_hook][inputs.attention_mask.bool()], dico.encode(Z), rtol=1e-4, atol=1e-4)
    with torch.no_grad():  # the SAE removed, the hook point it sat on is reached by its name again
        after = model.capture(inputs, [hook])[hook][inputs.attention_mask.bool()]
    torch.testing.assert_close(after, Z, rtol=0, atol=0)
