"""Probe: do tiny random checkpoints of the next bridge families boot offline, and match HF's own model?

For each family: a tiny random config (every 2-D weight redrawn with std 0.15), its own processor and a small
`tokenizers` vocabulary, saved with `save_pretrained`; then the bridge booted as `BridgeLMM` boots it (with the
corrections of `lmm_concepts/models/bridge/repairs.py`, or without them: `--no-repair`), one image through the
processor, logits against HF's eager forward and 6 greedy tokens of HF `generate` on the bridged model against
HF's. Single image, no padding: a first look, not the parity test each family needs.

    python scripts/probe_bridge_families.py [--no-repair] [llava_next llava_onevision gemma3 qwen2_5_vl idefics3]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import transformers as T
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers, processors

WORDS = [f"w{i}" for i in range(60)]


def tokenizer(specials: tuple[str, ...], named: dict[str, str] | None = None) -> T.PreTrainedTokenizerFast:
    vocab = {w: i for i, w in enumerate(["<pad>", "<s>", "</s>", "<unk>", *WORDS, *specials])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    named_kwargs = {"extra_special_tokens": named} if named else {}  # an empty dict drops the specials
    return T.PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                     unk_token="<unk>", additional_special_tokens=list(specials), **named_kwargs)


def text_kwargs(tok) -> dict:
    return dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=512, pad_token_id=0, bos_token_id=1, eos_token_id=2)


def clip():
    return T.CLIPVisionConfig(hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                              image_size=32, patch_size=8)


def siglip():
    return T.SiglipVisionConfig(hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                                image_size=32, patch_size=8)


PINPOINTS = [[32, 32], [32, 64], [64, 32]]


def llava_next():
    tok = tokenizer(("<image>",))
    cfg = T.LlavaNextConfig(vision_config=clip(), text_config=T.LlamaConfig(**text_kwargs(tok)),
                            image_token_id=tok.convert_tokens_to_ids("<image>"), image_grid_pinpoints=PINPOINTS,
                            vision_feature_layer=-2, pad_token_id=0)
    ip = T.LlavaNextImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                   image_grid_pinpoints=PINPOINTS)
    proc = T.LlavaNextProcessor(image_processor=ip, tokenizer=tok, patch_size=8,
                                vision_feature_select_strategy="default", num_additional_image_tokens=1)
    return T.LlavaNextForConditionalGeneration, cfg, proc, "<image>\nw1 w2"


def llava_onevision():
    tok = tokenizer(("<image>", "<video>"))
    cfg = T.LlavaOnevisionConfig(vision_config=siglip(), text_config=T.Qwen2Config(**text_kwargs(tok)),
                                 image_token_id=tok.convert_tokens_to_ids("<image>"),
                                 video_token_id=tok.convert_tokens_to_ids("<video>"), image_grid_pinpoints=PINPOINTS,
                                 vision_feature_layer=-1, vision_feature_select_strategy="full", pad_token_id=0)
    ip = T.LlavaOnevisionImageProcessor(size={"height": 32, "width": 32}, image_grid_pinpoints=PINPOINTS)
    proc = T.LlavaOnevisionProcessor(image_processor=ip, tokenizer=tok, num_image_tokens=16,
                                     vision_feature_select_strategy="full",
                                     video_processor=T.LlavaOnevisionVideoProcessor())
    return T.LlavaOnevisionForConditionalGeneration, cfg, proc, "<image>\nw1 w2"


def gemma3():
    named = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
    tok = tokenizer(tuple(named.values()), named)
    boi, eoi, image = (tok.convert_tokens_to_ids(t) for t in named.values())
    text = T.Gemma3TextConfig(**text_kwargs(tok), head_dim=8, sliding_window=8,
                              layer_types=["sliding_attention", "full_attention"])
    cfg = T.Gemma3Config(text_config=text, vision_config=siglip(), mm_tokens_per_image=4, boi_token_index=boi,
                         eoi_token_index=eoi, image_token_index=image, pad_token_id=0)
    proc = T.Gemma3Processor(image_processor=T.Gemma3ImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok,
                             image_seq_length=4)
    return T.Gemma3ForConditionalGeneration, cfg, proc, "<start_of_image> w1 w2"


def qwen2_5_vl():
    named = {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"}
    tok = tokenizer(("<|vision_start|>", "<|vision_end|>", *named.values()), named)
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|vision_start|>", "<|vision_end|>", *named.values())}
    text = T.Qwen2_5_VLTextConfig(**text_kwargs(tok),  # head_dim 8: the 3 rotary sections split its 4 frequencies
                                  rope_parameters={"rope_type": "default", "rope_theta": 1e4, "mrope_section": [1, 1, 2]})
    vision = T.Qwen2_5_VLVisionConfig(depth=2, hidden_size=32, intermediate_size=48, num_heads=4, out_hidden_size=32,
                                      patch_size=8, spatial_merge_size=2, temporal_patch_size=2, window_size=16,
                                      fullatt_block_indexes=[1])
    cfg = T.Qwen2_5_VLConfig(text_config=text.to_dict(), vision_config=vision.to_dict(),
                             image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                             vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
                             pad_token_id=0)
    ip = T.Qwen2VLImageProcessor(patch_size=8, merge_size=2, temporal_patch_size=2, min_pixels=32 * 32,
                                 max_pixels=64 * 64)
    vp = T.Qwen2VLVideoProcessor(patch_size=8, merge_size=2, temporal_patch_size=2)
    proc = T.Qwen2_5_VLProcessor(image_processor=ip, tokenizer=tok, video_processor=vp)
    return T.Qwen2_5_VLForConditionalGeneration, cfg, proc, "<|vision_start|><|image_pad|><|vision_end|> w1 w2"


def idefics3():
    tiles = tuple(f"<row_{r}_col_{c}>" for r in range(1, 4) for c in range(1, 4))
    tok = tokenizer(("<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>", *tiles))
    vision = T.Idefics3VisionConfig(hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                                    image_size=32, patch_size=8)
    cfg = T.Idefics3Config(vision_config=vision, text_config=T.LlamaConfig(**text_kwargs(tok)),
                           image_token_id=tok.convert_tokens_to_ids("<image>"), scale_factor=2, pad_token_id=0)
    ip = T.Idefics3ImageProcessor(size={"longest_edge": 64}, max_image_size={"longest_edge": 32})
    proc = T.Idefics3Processor(image_processor=ip, tokenizer=tok, image_seq_len=4)
    return T.Idefics3ForConditionalGeneration, cfg, proc, "<image> w1 w2"


FAMILIES = {f.__name__: f for f in (llava_next, llava_onevision, gemma3, qwen2_5_vl, idefics3)}


def probe(name: str, root: Path, repair: bool) -> str:
    from lmm_concepts.models.bridge import loading

    cls, cfg, proc, prompt = FAMILIES[name]()
    torch.manual_seed(0)
    model = cls(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0, 0.15)
    model.config.architectures = [cls.__name__]
    folder = root / name
    model.save_pretrained(folder)
    proc.save_pretrained(folder)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8))
    batch = T.AutoProcessor.from_pretrained(folder, local_files_only=True)(text=[prompt], images=[image],
                                                                           return_tensors="pt")
    hf = cls.from_pretrained(folder, attn_implementation="eager").eval()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not repair:
            loading.repair_bridge = lambda bridge: None
        bridge = loading.boot_bridge(folder, torch.float32, "cpu")
    boot = time.perf_counter() - start
    greedy = dict(do_sample=False, max_new_tokens=6, pad_token_id=0, eos_token_id=[])
    with torch.no_grad():
        ref = hf(**batch).logits
        ours = bridge(batch["input_ids"], **{k: v for k, v in batch.items() if k != "input_ids"})
        same = torch.equal(hf.generate(**batch, **greedy), bridge.original_model.generate(**batch, **greedy))
    n_image = int((batch["input_ids"] == hf.config.image_token_id).sum())
    return (f"{name}: boots in {boot:.2f} s with {type(bridge.processor).__name__}; processor gives {sorted(batch)}; "
            f"{n_image} image tokens; logits max abs gap {(ours - ref).abs().max().item():.2e} "
            f"(logit scale {ref.abs().max().item():.1f}); 6 greedy tokens equal HF's: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("families", nargs="*", help=f"any of {list(FAMILIES)} (default: all)")
    parser.add_argument("--no-repair", action="store_true", help="boot without repairs.py's corrections")
    args = parser.parse_args()
    unknown = sorted(set(args.families) - set(FAMILIES))
    if unknown:
        parser.error(f"unknown families {unknown}; choose among {list(FAMILIES)}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.families or FAMILIES:
            try:
                print(probe(name, Path(tmp), repair=not args.no_repair))
            except Exception as e:  # a probe: report and go on to the next family
                print(f"{name}: FAILED {type(e).__name__}: {e}")
            shutil.rmtree(Path(tmp) / name, ignore_errors=True)


if __name__ == "__main__":
    main()
