"""Peak memory while loading a checkpoint, against the model's size in the chosen dtype.

Default: a random Llama of a few hundred million parameters is saved in bfloat16 (safetensors), then loaded in a
fresh process with `HookedLMM.depalm(folder, dtype=torch.bfloat16)`. Goal (issue 2): peak <= 1.5 x model size,
i.e. a 7B model in bf16 (13.5 GB) loads on a 24 GiB machine.

`--family llava` (or another bridge family below): a random multimodal checkpoint of that family, its language
model the same random Llama-shaped stack (`--layers`, `--hidden`), a small vision tower, saved in bfloat16 with
its tokenizer and the family's processor, then loaded with `lc.load_lmm(folder, dtype=torch.bfloat16)` (the
bridge backend). Goal (issue 11): peak <= 1.3 x the weights' size.

The child reports its resident memory just before loading (after imports) and its peak (VmHWM) after; the
difference is the loading peak.

    PYTHONPATH=. python benchmarks/bench_loading.py [--layers 24] [--hidden 1024] [--family llava]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

# what both children start with: quiet imports of this checkout and a reader of the process's memory counters
PRELUDE = r"""
import json, sys, torch, warnings
warnings.filterwarnings("ignore")
sys.path.insert(0, sys.argv[2])
import lmm_concepts as lc

def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
"""

BRIDGE_CHILD = PRELUDE + r"""
import sae_lens, transformers, transformer_lens  # imports out of the measure
before = rss("VmRSS")
model = lc.load_lmm(sys.argv[1], dtype=torch.bfloat16, device="cpu")
peak = rss("VmHWM")
after = {"after": rss("VmRSS"), "after_anon": rss("RssAnon"), "after_file": rss("RssFile")}
with torch.no_grad():  # read every weight (a forward would): pages still mapped from the file become resident
    for p in model.hf_model.parameters():
        p.view(-1)[:: 512].sum()
n_bytes = sum(p.numel() * p.element_size() for p in model.hf_model.parameters())
print(json.dumps({"before": before, "peak": peak, **after, "touched": rss("VmRSS"), "touched_peak": rss("VmHWM"),
                  "touched_file": rss("RssFile"), "model_bytes": n_bytes,
                  "dtype": str(next(model.hf_model.parameters()).dtype), "backend": type(model).__name__}))
"""

CHILD = PRELUDE + r"""
import open_clip
visual = open_clip.CLIP(16, open_clip.CLIPVisionCfg(layers=1, width=32, head_width=16, patch_size=8, image_size=32),
                        open_clip.CLIPTextCfg(context_length=8, vocab_size=64, width=32, heads=2, layers=1)).visual
before = rss("VmRSS")
model = lc.HookedLMM.depalm(sys.argv[1], vision=visual, dtype=torch.bfloat16, device="cpu", n_visual_tokens=4)
peak = rss("VmHWM")
n_bytes = sum(p.numel() * p.element_size() for p in model.parameters() if not p.is_meta)
print(json.dumps({"before": before, "peak": peak, "after": rss("VmRSS"), "model_bytes": n_bytes,
                  "dtype": str(model.W_E.dtype)}))
"""


def make_checkpoint(folder: Path, layers: int, hidden: int, vocab: int = 32000) -> int:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=int(hidden * 2.75) // 64 * 64,
                      num_hidden_layers=layers, num_attention_heads=hidden // 64, num_key_value_heads=hidden // 64,
                      max_position_embeddings=512, tie_word_embeddings=False, pad_token_id=0, bos_token_id=1,
                      eos_token_id=2, architectures=["LlamaForCausalLM"])
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    model = model.to_empty(device="cpu").to(torch.bfloat16)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    model.save_pretrained(folder)
    words = ["<pad>", "<s>", "</s>", "<unk>"] + [f"w{i}" for i in range(vocab - 4)]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def _word_tokenizer(vocab: int, extra: tuple[str, ...] = ()):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<s>", "</s>", "<unk>", *extra] + [f"w{i}" for i in range(vocab - 4 - len(extra))]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", additional_special_tokens=list(extra) or None)


def _llama_text(config_class, layers: int, hidden: int, vocab: int, **extra):
    return config_class(vocab_size=vocab, hidden_size=hidden, intermediate_size=int(hidden * 2.75) // 64 * 64,
                        num_hidden_layers=layers, num_attention_heads=hidden // 64, num_key_value_heads=hidden // 64,
                        max_position_embeddings=2048, tie_word_embeddings=False, pad_token_id=0, bos_token_id=1,
                        eos_token_id=2, **extra)


def _llava(layers: int, hidden: int, vocab: int):
    """LLaVA-1.5's layout: CLIP ViT (6 layers, width 384, 224 px / patch 14) -> MLP projector -> Llama."""
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tok = _word_tokenizer(vocab, ("<image>",))
    vision = CLIPVisionConfig(hidden_size=384, intermediate_size=1536, num_hidden_layers=6, num_attention_heads=6,
                              image_size=224, patch_size=14)
    config = LlavaConfig(vision_config=vision, text_config=_llama_text(LlamaConfig, layers, hidden, vocab),
                         image_token_id=tok.convert_tokens_to_ids("<image>"), pad_token_id=0)
    processor = LlavaProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 224},
                                                                  crop_size={"height": 224, "width": 224}),
                               tokenizer=tok, patch_size=14, vision_feature_select_strategy="default",
                               num_additional_image_tokens=1, image_token="<image>")
    return LlavaForConditionalGeneration, config, processor


def _qwen2_5_vl(layers: int, hidden: int, vocab: int):
    """Qwen2.5-VL's layout: windowed ViT (6 blocks, width 384, patch 14) -> 2x2 merger -> Qwen2 text."""
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2_5_VLTextConfig,
        Qwen2_5_VLVisionConfig,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    named = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
    tok = _word_tokenizer(vocab, named)
    ids = dict(zip(("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id"),
                   tok.convert_tokens_to_ids(list(named)), strict=True))
    head = 64
    text = _llama_text(Qwen2_5_VLTextConfig, layers, hidden, vocab,
                       rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                        "mrope_section": [head // 8, head * 3 // 16, head * 3 // 16]})
    vision = Qwen2_5_VLVisionConfig(depth=6, hidden_size=384, intermediate_size=1536, num_heads=6,
                                    out_hidden_size=hidden, fullatt_block_indexes=[5])
    config = Qwen2_5_VLConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), tie_word_embeddings=False,
                              pad_token_id=0, **ids)
    sizes = {"patch_size": 14, "merge_size": 2, "temporal_patch_size": 2}
    processor = Qwen2_5_VLProcessor(tokenizer=tok, image_processor=Qwen2VLImageProcessor(**sizes),
                                    video_processor=Qwen2VLVideoProcessor(**sizes))
    return Qwen2_5_VLForConditionalGeneration, config, processor


FAMILIES = {"llava": _llava, "qwen2_5_vl": _qwen2_5_vl}
"""Bridge families this benchmark can build: name -> (layers, hidden, vocab) -> (HF class, config, processor)."""


def make_family_checkpoint(folder: Path, family: str, layers: int, hidden: int, vocab: int = 32000,
                           dtype: str = "bfloat16") -> int:
    """A random checkpoint of `family` in `dtype` with its tokenizer and processor; returns its parameter count."""
    import torch

    model_class, config, processor = FAMILIES[family](layers, hidden, vocab)
    config.architectures = [model_class.__name__]
    with torch.device("meta"):
        model = model_class(config)
    model = model.to_empty(device="cpu").to(getattr(torch, dtype))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def measure(layers: int = 24, hidden: int = 1024, family: str | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_load_") as tmp:
        root = str(Path(__file__).resolve().parents[1])
        if family is None:
            folder = Path(tmp) / "random-llama-bf16"  # "llama" in the path on purpose
            n_params = make_checkpoint(folder, layers, hidden)
            child = CHILD
        else:
            folder = Path(tmp) / f"random-{family}-bf16"
            n_params = make_family_checkpoint(folder, family, layers, hidden)
            child = BRIDGE_CHILD
        out = subprocess.run([sys.executable, "-c", child, str(folder), root], capture_output=True, text=True,
                             check=True)
        stats = json.loads(out.stdout.strip().splitlines()[-1])
    stats["n_params"] = n_params
    # the bridge keeps the weights mapped from the safetensors file until read: the peak counts them once read
    stats["peak_over_size"] = (stats.get("touched_peak", stats["peak"]) - stats["before"]) / stats["model_bytes"]
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--family", choices=sorted(FAMILIES),
                        help="a bridge family's checkpoint loaded with lc.load_lmm (default: HookedLMM.depalm)")
    args = parser.parse_args()
    s = measure(args.layers, args.hidden, args.family)
    gib = 2**30
    what = f"random {args.family} (loaded as {s['backend']})" if args.family else "random Llama"
    print(f"{what}: {s['n_params'] / 1e6:.0f} M parameters, {s['model_bytes'] / gib:.3f} GiB in {s['dtype']}")
    print(f"resident before loading {s['before'] / gib:.3f} GiB, peak {s['peak'] / gib:.3f} GiB, "
          f"after {s['after'] / gib:.3f} GiB")
    if args.family:
        print(f"the weights stay mapped from the checkpoint file until read ({s['after_file'] / gib:.3f} GiB "
              f"file-backed after loading); once every weight is read: resident {s['touched'] / gib:.3f} GiB "
              f"({s['touched_file'] / gib:.3f} GiB file-backed), peak {s['touched_peak'] / gib:.3f} GiB")
    read = " (every weight read)" if args.family else ""
    print(f"loading peak{read} / model size = {s['peak_over_size']:.2f}  (goal <= {1.3 if args.family else 1.5})")


if __name__ == "__main__":
    main()
