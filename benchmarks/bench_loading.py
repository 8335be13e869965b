"""Peak memory while loading a checkpoint into a HookedLMM, against the model's size in the chosen dtype.

A random Llama of a few hundred million parameters is saved in bfloat16 (safetensors), then loaded in a fresh
process with `HookedLMM.depalm(folder, dtype=torch.bfloat16)`. The child reports its resident memory just
before loading (after imports) and its peak (VmHWM) after; the difference is the loading peak.
Goal (issue 2): peak <= 1.5 x model size, i.e. a 7B model in bf16 (13.5 GB) loads on a 24 GiB machine.

    PYTHONPATH=. python benchmarks/bench_loading.py [--layers 24] [--hidden 1024]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, sys, torch, warnings
warnings.filterwarnings("ignore")
sys.path.insert(0, sys.argv[2])
import open_clip
import lmm_concepts as lc

def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
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


def measure(layers: int = 24, hidden: int = 1024) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_load_") as tmp:
        folder = Path(tmp) / "random-llama-bf16"  # "llama" in the path on purpose
        n_params = make_checkpoint(folder, layers, hidden)
        root = str(Path(__file__).resolve().parents[1])
        out = subprocess.run([sys.executable, "-c", CHILD, str(folder), root], capture_output=True, text=True,
                             check=True)
        stats = json.loads(out.stdout.strip().splitlines()[-1])
    stats["n_params"] = n_params
    stats["peak_over_size"] = (stats["peak"] - stats["before"]) / stats["model_bytes"]
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--hidden", type=int, default=1024)
    args = parser.parse_args()
    s = measure(args.layers, args.hidden)
    gib = 2**30
    print(f"random Llama: {s['n_params'] / 1e6:.0f} M parameters, {s['model_bytes'] / gib:.3f} GiB in {s['dtype']}")
    print(f"resident before loading {s['before'] / gib:.3f} GiB, peak {s['peak'] / gib:.3f} GiB, "
          f"after {s['after'] / gib:.3f} GiB")
    print(f"loading peak / model size = {s['peak_over_size']:.2f}  (goal <= 1.5)")


if __name__ == "__main__":
    main()
