"""A tiny, deterministic DePALM-style `HookedLMM` for the extraction tests, benchmarks and CLI runs.

`tiny_lmm()` builds the same weights in every process (fixed seed), so a killed run resumed in another process
sees the same model (the store checks a digest of the weights). Words are "w0" … "w59" (a WordLevel tokenizer).
"""

from __future__ import annotations

import time

import open_clip
import torch
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

WORDS = [f"w{i}" for i in range(60)]


def word_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {w: i for i, w in enumerate(["<pad>", "<eos>", "<unk>", *WORDS])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def tiny_lmm(d_model: int = 32, n_layers: int = 2, image_size: int = 16, n_visual: int = 4, seed: int = 0):
    """GPT-2 LLM + one-layer open_clip ViT + pooling resampler, random weights from `seed`, float32, CPU."""
    from lmm_concepts.models import HookedLMM

    torch.manual_seed(seed)
    tok = word_tokenizer()
    cfg = GPT2Config(
        n_embd=d_model, n_layer=n_layers, n_head=4, n_positions=64, n_ctx=64, vocab_size=len(tok),
        pad_token_id=0, eos_token_id=1, bos_token_id=1,
    )  # fmt: skip
    llm = GPT2LMHeadModel(cfg)
    llm.config.architectures = ["GPT2LMHeadModel"]
    with torch.no_grad():  # wider than the default init, so greedy choices are not near-ties
        for p in llm.parameters():
            if p.ndim == 2:
                p.normal_(0, 0.3)
    vision_cfg = open_clip.CLIPVisionCfg(layers=1, width=32, head_width=16, patch_size=4, image_size=image_size)
    text_cfg = open_clip.CLIPTextCfg(context_length=8, vocab_size=64, width=32, heads=2, layers=1)
    visual = open_clip.CLIP(embed_dim=16, vision_cfg=vision_cfg, text_cfg=text_cfg).visual.eval()
    model = HookedLMM.depalm(
        llm=llm.eval(), vision=visual, tokenizer=tok, n_visual_tokens=n_visual, prompt="w0", device="cpu",
    )  # fmt: skip
    with torch.no_grad():  # the connector too, so different images give different captions
        for p in model.connector.parameters():
            p.normal_(0, 0.5)
    return model.eval()


def noise_images(n: int, size: int = 16, seed: int = 1) -> list[Image.Image]:
    g = torch.Generator().manual_seed(seed)
    arrays = (torch.rand(n, size, size, 3, generator=g) * 255).to(torch.uint8).numpy()
    return [Image.fromarray(a) for a in arrays]


def slow_tiny_lmm():
    """`tiny_lmm()` whose captioning takes at least 0.3 s a batch, so a test can kill a run mid-way on any machine."""
    model = tiny_lmm()
    generate = model.generate

    def slow_generate(*args, **kwargs):
        time.sleep(0.3)
        return generate(*args, **kwargs)

    model.generate = slow_generate
    return model


def gated_tiny_lmm():
    """`tiny_lmm()` whose captioning waits until the file named by $LMM_TEST_GATE exists, so a test can hold a run
    in the middle (with the store's lock taken) for as long as it needs, on any machine."""
    import os
    from pathlib import Path

    model = tiny_lmm()
    generate = model.generate
    gate = Path(os.environ["LMM_TEST_GATE"])

    def gated_generate(*args, **kwargs):
        deadline = time.time() + 300
        while not gate.exists() and time.time() < deadline:
            time.sleep(0.02)
        return generate(*args, **kwargs)

    model.generate = gated_generate
    return model


def broken_lmm():
    """A model factory that fails the way a bug would (not bad input): the CLI's exit status 1."""
    raise RuntimeError("the GPU caught fire")
