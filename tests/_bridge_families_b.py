"""Tiny random checkpoints of Gemma 3, Qwen2.5-VL, Mistral 3 and Qwen3-VL, saved as a user's would be
(`save_pretrained` for the model, a small `tokenizers` vocabulary wrapped in `PreTrainedTokenizerFast`, the
family's own processor with a chat template shaped like the released one), every 2-D weight redrawn with std 0.15
(`redraw_weights`), and one `FamilyCase` per family: the left-padded batch of two images with prompts of different
lengths its parity tests run on, and how HF's own processor and forward are called on it.

Each keeps what makes its family differ from LLaVA where a tiny config can: Gemma 3's embedding scaling,
(1 + weight) norms, a query scale that is not 1/sqrt(head_dim), sliding-window layers shorter than a prompt,
linear-scaled rotary on global layers, and a final-logit soft-cap in its config (which HF's multimodal forward
ignores); Qwen2.5-VL's windowed ViT and 3-D rotary positions; Mistral 3's Pixtral tower and [IMG_BREAK] rows;
Qwen3-VL's DeepStack and interleaved 3-D rotary. The last three get images of different sizes (different
numbers of patches and visual tokens).

`save_<family>_checkpoint(folder, seed)` writes one family's checkpoint (for a pipeline test over every family).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from _bridge_fixtures import hf_positions, redraw_weights, save_checkpoint
from _model_fixtures import D_MODEL, make_tokenizer
from PIL import Image

from lmm_concepts.models.interface import ModelInputs

GEMMA3_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' "
    "else message['role']) + '\n' }}{% for c in message['content'] %}{% if c['type'] == 'image' %}"
    "{{ '<start_of_image>' }}{% else %}{{ c['text'] }}{% endif %}{% endfor %}{{ '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}{% else %}{{ c['text'] }}"
    "{% endif %}{% endfor %}{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
MISTRAL3_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST]' }}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}{{ '[IMG]' }}{% else %}{{ c['text'] }}{% endif %}{% endfor %}{{ '[/INST]' }}"
    "{% else %}{% for c in message['content'] %}{{ c['text'] }}{% endfor %}{{ '</s>' }}{% endif %}{% endfor %}"
)


def sized_images(sizes: list[tuple[int, int]], seed: int = 0) -> list[Image.Image]:
    """RGB noise images of the given (height, width)."""
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes]


def _siglip():
    from transformers import SiglipVisionConfig

    return SiglipVisionConfig(hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                              image_size=32, patch_size=8)


def tiny_gemma3(seed: int = 0):
    """(Gemma3ForConditionalGeneration, Gemma3Processor): SigLIP 32 px / patch 8 pooled to 4 visual tokens,
    Gemma 3 text d_model 32, 2 layers (sliding window 6, then global)."""
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessor,
        Gemma3Processor,
        Gemma3TextConfig,
    )

    named = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
    tok = make_tokenizer(True, ("<start_of_turn>", "<end_of_turn>"), named)
    boi, eoi, image = (tok.convert_tokens_to_ids(t) for t in named.values())
    text = Gemma3TextConfig(
        vocab_size=len(tok), hidden_size=D_MODEL, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, query_pre_attn_scalar=12, sliding_window=6,
        layer_types=["sliding_attention", "full_attention"], max_position_embeddings=256,
        rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
                         "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6}},
        final_logit_softcapping=3.0, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    config = Gemma3Config(text_config=text, vision_config=_siglip(), mm_tokens_per_image=4, boi_token_index=boi,
                          eoi_token_index=eoi, image_token_index=image, pad_token_id=0)
    torch.manual_seed(seed)
    model = redraw_weights(Gemma3ForConditionalGeneration(config).eval(), seed=seed)
    model.config.architectures = ["Gemma3ForConditionalGeneration"]
    image_processor = Gemma3ImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5, 0.4, 0.3],
                                           image_std=[0.2, 0.25, 0.3])
    processor = Gemma3Processor(image_processor=image_processor, tokenizer=tok, image_seq_length=4,
                                chat_template=GEMMA3_CHAT_TEMPLATE)
    return model, processor


def _tiny_qwen_vl(prefix: str, video_processor: str, seed: int, text: dict, vision: dict, config: dict):
    """(`{prefix}ForConditionalGeneration`, `{prefix}Processor`) of a Qwen-VL generation: its ViT (patch 8, 2x2
    merge, 2 blocks) on images of 32 to 64 px a side, its text model d_model 32, 2 layers, rotary sections
    [1, 1, 2] of head_dim 8; `text`, `vision` and `config` add the generation's own settings."""
    import transformers

    def make(name: str, **kwargs):
        return getattr(transformers, name)(**kwargs)

    named = {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>", "vision_start_token": "<|vision_start|>",
             "vision_end_token": "<|vision_end|>"}
    tok = make_tokenizer(False, ("<|im_start|>", "<|im_end|>"), named)
    ids = {f"{k}_id": tok.convert_tokens_to_ids(v) for k, v in named.items()}
    rope = {"rope_type": "default", "rope_theta": 1e4, "mrope_section": [1, 1, 2], **text.pop("rope", {})}
    text_config = make(f"{prefix}TextConfig", vocab_size=len(tok), hidden_size=D_MODEL, intermediate_size=64,
                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                       rope_parameters=rope, pad_token_id=0, bos_token_id=1, eos_token_id=2, **text)
    vision_config = make(f"{prefix}VisionConfig", depth=2, hidden_size=32, intermediate_size=48, num_heads=4,
                         out_hidden_size=D_MODEL, patch_size=8, spatial_merge_size=2, temporal_patch_size=2, **vision)
    model_config = make(f"{prefix}Config", text_config=text_config.to_dict(), vision_config=vision_config.to_dict(),
                        tie_word_embeddings=False, **ids, **config)
    torch.manual_seed(seed)
    model = redraw_weights(make(f"{prefix}ForConditionalGeneration", config=model_config).eval(), seed=seed)
    model.config.architectures = [f"{prefix}ForConditionalGeneration"]
    sizes = {"patch_size": 8, "merge_size": 2, "temporal_patch_size": 2}
    processor = make(f"{prefix}Processor", tokenizer=tok, chat_template=QWEN_CHAT_TEMPLATE,
                     image_processor=make("Qwen2VLImageProcessor", min_pixels=32 * 32, max_pixels=64 * 64, **sizes),
                     video_processor=make(video_processor, **sizes))
    return model, processor


def tiny_qwen2_5_vl(seed: int = 0):
    """Qwen2.5-VL: a windowed ViT (one window block, one full-attention block), Qwen2 text."""
    return _tiny_qwen_vl("Qwen2_5_VL", "Qwen2VLVideoProcessor", seed, text={},
                         vision={"window_size": 32, "fullatt_block_indexes": [1]}, config={"pad_token_id": 0})


def tiny_qwen3_vl(seed: int = 0):
    """Qwen3-VL: a ViT with learned + 2-D rotary positions whose block 0 also feeds DeepStack features (added to
    the language model's layer-0 output at the visual tokens), Qwen3 text (QK-norm), interleaved rotary."""
    return _tiny_qwen_vl("Qwen3VL", "Qwen3VLVideoProcessor", seed,
                         text={"head_dim": 8, "rope": {"mrope_interleaved": True}},
                         vision={"num_position_embeddings": 16, "deepstack_visual_indexes": [0]}, config={})


def tiny_mistral3(seed: int = 0):
    """(Mistral3ForConditionalGeneration, PixtralProcessor): Pixtral ViT (patch 8) at the image's own size (up to
    64 px a side, 2x2 patch merger: 2 to 16 visual tokens, in rows closed by [IMG_BREAK]), Mistral text d_model
    32, 2 layers."""
    from transformers import (
        Mistral3Config,
        Mistral3ForConditionalGeneration,
        MistralConfig,
        PixtralImageProcessor,
        PixtralProcessor,
        PixtralVisionConfig,
    )

    tok = make_tokenizer(True, ("[IMG]", "[IMG_BREAK]", "[IMG_END]", "[INST]", "[/INST]"))
    text = MistralConfig(vocab_size=len(tok), hidden_size=D_MODEL, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=256,
                         sliding_window=None, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    vision = PixtralVisionConfig(hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                                 image_size=64, patch_size=8, head_dim=6)
    config = Mistral3Config(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("[IMG]"),
                            spatial_merge_size=2, vision_feature_layer=-1, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = redraw_weights(Mistral3ForConditionalGeneration(config).eval(), seed=seed)
    model.config.architectures = ["Mistral3ForConditionalGeneration"]
    image_processor = PixtralImageProcessor(size={"longest_edge": 64}, patch_size=8, image_mean=[0.5, 0.4, 0.3],
                                            image_std=[0.2, 0.25, 0.3])
    processor = PixtralProcessor(image_processor=image_processor, tokenizer=tok, patch_size=8, spatial_merge_size=2,
                                 chat_template=MISTRAL3_CHAT_TEMPLATE)
    return model, processor


@dataclass(frozen=True)
class FamilyCase:
    """One family's parity setting: its checkpoint builder, HF class, a left-padded batch of two images with
    prompts of different lengths, and how HF's own processor and forward are called on it."""

    name: str
    tiny: Callable[[int], tuple]
    """seed -> (HF model, processor), weights redrawn."""
    hf_class: str
    prompts: tuple[str, str]
    image_sizes: tuple[tuple[int, int], tuple[int, int]]
    nested_images: bool
    """The processor reads `[[image], ...]` (a flat list is every image for one sample)."""
    explicit_positions: bool
    """HF's plain forward counts left padding in its positions: pass generate's (`hf_positions`)."""
    marker: str
    token_counts_follow_size: bool
    """The two images take different numbers of visual tokens (their sizes differ)."""

    def save(self, folder: Path, seed: int = 0) -> Path:
        return save_checkpoint(folder, *self.tiny(seed))

    def hf_model(self, folder: Path):
        import transformers

        return getattr(transformers, self.hf_class).from_pretrained(folder, attn_implementation="eager").eval()

    def images(self, seed: int = 0) -> list[Image.Image]:
        return sized_images(list(self.image_sizes), seed)

    def hf_batch(self, processor, prompts=None, images=None) -> dict[str, torch.Tensor]:
        """HF's own processor on the batch, left-padded, and generate's positions where HF's forward needs them."""
        prompts = list(prompts or self.prompts)
        images = images or self.images()[: len(prompts)]
        processor.tokenizer.padding_side = "left"
        batch = dict(processor(text=prompts, images=[[im] for im in images] if self.nested_images else images,
                               padding=True, return_tensors="pt"))
        if self.explicit_positions:
            batch["position_ids"] = hf_positions(batch["attention_mask"])
        return batch


QWEN_PROMPTS = ("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>w1 w2 w3<|im_end|>\n<|im_start|>assistant\n",
                "<|vision_start|><|image_pad|><|vision_end|> w4")
CASES = {
    "gemma3": FamilyCase(
        "gemma3", tiny_gemma3, "Gemma3ForConditionalGeneration",
        ("<start_of_turn>user\n<start_of_image>w1 w2 w3 w4 w5<end_of_turn>\n<start_of_turn>model\n",
         "<start_of_image> w6"),
        ((36, 44), (40, 50)), nested_images=True, explicit_positions=True, marker="<start_of_image>",
        token_counts_follow_size=False),
    "qwen2_5_vl": FamilyCase(
        "qwen2_5_vl", tiny_qwen2_5_vl, "Qwen2_5_VLForConditionalGeneration",
        QWEN_PROMPTS,
        ((32, 64), (64, 48)), nested_images=False, explicit_positions=False, marker="<|image_pad|>",
        token_counts_follow_size=True),
    "mistral3": FamilyCase(
        "mistral3", tiny_mistral3, "Mistral3ForConditionalGeneration", ("[INST][IMG]w1 w2 w3 w4[/INST]", "[IMG] w5"),
        ((32, 64), (64, 48)), nested_images=False, explicit_positions=True, marker="[IMG]",
        token_counts_follow_size=True),
    "qwen3_vl": FamilyCase(
        "qwen3_vl", tiny_qwen3_vl, "Qwen3VLForConditionalGeneration",
        QWEN_PROMPTS,
        ((32, 64), (64, 48)), nested_images=False, explicit_positions=False, marker="<|image_pad|>",
        token_counts_follow_size=True),
}


def generate_kwargs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An HF batch for `generate`, which derives its own positions."""
    return {k: v for k, v in batch.items() if k != "position_ids"}


def logit_gap(case: FamilyCase, model, hf, inputs) -> float:
    """Max abs difference between `model.logits(inputs)` and HF's own forward on its own processor's batch, over
    the real (unpadded) positions."""
    batch = case.hf_batch(model.processor)
    if not torch.equal(inputs.input_ids, batch["input_ids"]):
        raise AssertionError(f"{case.name}: build_inputs gives other token ids than HF's processor")
    with torch.no_grad():
        return float((model.logits(inputs) - hf(**batch).logits)[inputs.attention_mask.bool()].abs().max())


def captions_equal(case: FamilyCase, model, hf, inputs, num_beams: int = 1, max_new_tokens: int = 8) -> bool:
    """`model.generate_from_inputs` gives HF `generate`'s tokens on HF's own processor batch."""
    out = model.generate_from_inputs(inputs, max_new_tokens=max_new_tokens, num_beams=num_beams)
    with torch.no_grad():
        ref = hf.generate(**generate_kwargs(case.hf_batch(model.processor)), do_sample=False, num_beams=num_beams,
                          max_new_tokens=max_new_tokens, pad_token_id=0, eos_token_id=2)
    return out.generated_ids.shape[1] == max_new_tokens and torch.equal(out.sequences[:, : ref.shape[1]], ref)


def predicts_gaps(case: FamilyCase, model, inputs, names: list[str], max_new_tokens: int = 6) -> dict[str, float]:
    """Max abs difference, per hook, between the vectors extraction stores (at the position before each generated
    token, read from the padded batch's whole sequences: `generate(...).inputs()`) and those of each image alone,
    unpadded (its own `build_inputs`, then the same generated tokens)."""
    out = model.generate_from_inputs(inputs, max_new_tokens=max_new_tokens)
    with torch.no_grad():
        batched = model.capture(out.inputs(), names)
    start, images = out.prompt_length, case.images()
    gaps = dict.fromkeys(names, 0.0)
    for b in range(inputs.batch_size):
        n_new = int(out.attention_mask[b, start:].sum())
        if n_new < 2:
            raise AssertionError(f"{case.name}: row {b} generated {n_new} tokens; too few to compare")
        alone = model.build_inputs(images[b: b + 1], case.prompts[b])
        ids = torch.cat([alone.input_ids, out.generated_ids[b: b + 1, :n_new]], dim=1)
        with torch.no_grad():
            acts = model.capture(ModelInputs(ids, torch.ones_like(ids), alone.images), names)
        first = alone.input_ids.shape[1] - 1
        for name in names:
            gap = (batched[name][b, start - 1: start - 1 + n_new] - acts[name][0, first: first + n_new]).abs().max()
            gaps[name] = max(gaps[name], float(gap))
    return gaps


def save_generating_its_placeholder(case: FamilyCase, folder: Path) -> Path:
    """The family's tiny checkpoint, changed so that its greedy caption of row 0 starts with its own image
    placeholder: the placeholder's unembedding row is made twice that of the token row 0 would generate first
    (its logit doubles a positive maximum; where the embedding is tied, the placeholder's embedding changes too)."""
    model, processor = case.tiny(0)
    with torch.no_grad():
        first = model.generate(**generate_kwargs(case.hf_batch(processor)), do_sample=False, max_new_tokens=1,
                               pad_token_id=0)[0, -1]
        lm_head = model.get_output_embeddings().weight
        lm_head[model.config.image_token_id] = 2 * lm_head[first]
    return save_checkpoint(folder, model, processor)


def save_gemma3_checkpoint(folder: Path, seed: int = 0) -> Path:
    return CASES["gemma3"].save(folder, seed)


def save_qwen2_5_vl_checkpoint(folder: Path, seed: int = 0) -> Path:
    return CASES["qwen2_5_vl"].save(folder, seed)


def save_mistral3_checkpoint(folder: Path, seed: int = 0) -> Path:
    return CASES["mistral3"].save(folder, seed)


def save_qwen3_vl_checkpoint(folder: Path, seed: int = 0) -> Path:
    return CASES["qwen3_vl"].save(folder, seed)
