"""Captioning speed: batched `generate` (batch 32, KV cache) against one image at a time (the paper's code)
and against decoding without the KV cache (DePALM's own code), same model and images, one run.

The model is a random DePALM-shaped HookedLMM (open_clip ViT -> pooling resampler -> 10 visual tokens ->
GPT-2-style LLM); EOS is disabled so every caption has `--new-tokens` tokens and all runs do the same work.

    PYTHONPATH=. python benchmarks/bench_generate.py [--batch 32] [--new-tokens 20] [--d-model 256] [--layers 4]
"""

from __future__ import annotations

import argparse
import time
import warnings

import open_clip
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

import lmm_concepts as lc


def build_model(d_model: int, layers: int, vocab: int = 2000) -> lc.HookedLMM:
    words = ["<pad>", "<s>", "</s>", "<unk>"] + [f"w{i}" for i in range(vocab - 4)]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    cfg = GPT2Config(vocab_size=vocab, n_embd=d_model, n_layer=layers, n_head=d_model // 64, n_positions=256,
                     n_ctx=256, bos_token_id=1, eos_token_id=2, pad_token_id=0, architectures=["GPT2LMHeadModel"])
    llm = GPT2LMHeadModel(cfg).eval()
    visual = open_clip.CLIP(64, open_clip.CLIPVisionCfg(layers=4, width=256, head_width=64, patch_size=16, image_size=96),
                            open_clip.CLIPTextCfg(context_length=8, vocab_size=64, width=32, heads=2, layers=1)).visual
    return lc.HookedLMM.depalm(llm, vision=visual.eval(), tokenizer=tok, n_visual_tokens=10, device="cpu",
                               prompt="w1 w2")


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=20)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    model = build_model(args.d_model, args.layers)
    pixels = torch.randn(args.batch, 3, 96, 96)
    gen = dict(max_new_tokens=args.new_tokens, eos_token_id=None)
    model.generate(pixels[:2], **gen)  # warm-up

    t_batched, batched = timed(lambda: model.generate(pixels, **gen))
    t_single, singles = timed(lambda: [model.generate(pixels[i:i + 1], **gen) for i in range(args.batch)])
    t_nocache, nocache = timed(lambda: model.generate(pixels, use_kv_cache=False, **gen))

    same_single = sum(torch.equal(s.generated_ids[0], batched.generated_ids[i]) for i, s in enumerate(singles))
    same_nocache = int((nocache.generated_ids == batched.generated_ids).all(dim=1).sum())
    print(f"model: d_model {args.d_model}, {args.layers} layers, {model.lmm_cfg.n_visual_tokens} visual tokens; "
          f"{args.batch} images x {args.new_tokens} new tokens; torch threads {torch.get_num_threads()}")
    print(f"batched + KV cache : {t_batched:7.2f} s")
    print(f"one at a time      : {t_single:7.2f} s  (identical captions: {same_single}/{args.batch})")
    print(f"batched, no cache  : {t_nocache:7.2f} s  (identical captions: {same_nocache}/{args.batch})")
    print(f"speed-up over one-at-a-time: {t_single / t_batched:.1f}x   (goal >= 8x)")
    print(f"speed-up over no KV cache  : {t_nocache / t_batched:.1f}x")


if __name__ == "__main__":
    main()
