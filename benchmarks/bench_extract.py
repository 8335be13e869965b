"""Throughput of `lmm_concepts.extract` against the paper's code's approach, same model and images, one run.

The paper's code (xl-vlms) captions one image at a time with HF `generate(output_hidden_states=True)`: at every
decoding step it keeps the hidden states of every layer at every position fed that step, and only after decoding
locates the word (the first generated occurrence of its first sub-token) and reads its vector out of what it kept.
That is reproduced here on the same `HookedLMM` (greedy, KV cache, every `hook_resid_post` and the final norm
cached and moved to the CPU at each step). `extract` captions batches, rejects samples before any model call when
their captions lack the word, and runs one forward pass over the kept sequences caching only the requested layers.

Every caption in the data holds the word, so both do the same captioning work (on COCO, where most captions lack
it, `extract` saves far more). Both take the same layers (every block + "final"). Prints both rates and the ratio;
goal (issue 4): >= 10x on 2 CPU cores. Also prints peak RssAnon for 1x and 10x the images.

    PYTHONPATH=. python benchmarks/bench_extract.py [--images 32] [--batch-size 32] [--d-model 256] [--layers 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import torch
from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

import lmm_concepts as lc
from lmm_concepts._memory import peak_rss_anon_mb
from lmm_concepts.models.interface import FINAL_HOOK
from tests._extract_models import noise_images, tiny_lmm

warnings.filterwarnings("ignore")


@torch.no_grad()
def paper_style(model, images, word: str, hooks: list[str], max_new_tokens: int) -> dict[int, dict[str, torch.Tensor]]:
    """One image at a time; all hidden states of every step kept; the word located afterwards."""
    tok = model.tokenizer
    first_sub_token = tok.encode(" " + word, add_special_tokens=False)[0]
    kept = {}
    for n, image in enumerate(images):
        inputs = model.build_inputs([image], max_new_tokens=max_new_tokens)
        visual = model.encode_images(inputs["pixel_values"])
        kv = TransformerLensKeyValueCache.init_cache(model.cfg, model.cfg.device, 1)
        steps: list[dict[str, torch.Tensor]] = []  # per step: {hook: [1, pos fed this step, d]}
        generated: list[int] = []
        for step in range(max_new_tokens):
            if step == 0:
                args = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"], "visual_tokens": visual}
            else:
                args = {"input_ids": torch.tensor([[generated[-1]]]), "attention_mask": torch.ones(1, 1, dtype=torch.long)}
            logits, cache = model.run_with_cache(**args, past_kv_cache=kv, names_filter=hooks)
            steps.append({h: cache[h].to("cpu") for h in hooks})
            generated.append(int(logits[0, -1].argmax()))
            if generated[-1] == tok.eos_token_id:
                break
        if first_sub_token in generated:  # located afterwards; the state that predicts it is step j's last position
            j = generated.index(first_sub_token)
            kept[n] = {h: steps[j][h][0, -1] for h in hooks}
    return kept


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=12)
    a = p.parse_args()
    torch.set_grad_enabled(False)
    model = tiny_lmm(d_model=a.d_model, n_layers=a.layers, image_size=32, n_visual=10)
    images = noise_images(a.images, size=32)
    texts = model.generate(images[: a.batch_size], max_new_tokens=a.max_new_tokens).texts
    word = Counter(w for t in texts for w in set(t.split())).most_common(1)[0][0]
    hooks = [f"blocks.{i}.hook_resid_post" for i in range(a.layers)] + [FINAL_HOOK]
    items = [(f"i{n}", im, [f"a {word}"]) for n, im in enumerate(images)]
    print(f"model: DePALM-shaped, GPT-2 LLM d_model={a.d_model} x {a.layers} layers, 10 visual tokens; "
          f"{a.images} images, word {word!r}, max_new_tokens={a.max_new_tokens}, torch threads {torch.get_num_threads()}")

    t0 = time.perf_counter()
    ref = paper_style(model, images, word, hooks, a.max_new_tokens)
    t_ref = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        store = lc.extract(model, items, word, list(range(a.layers)) + ["final"], Path(tmp) / "s",
                           batch_size=a.batch_size, max_new_tokens=a.max_new_tokens, progress=False)
        t_ours = time.perf_counter() - t0
        ours_ids = [int(i[1:]) for i in store.sample_ids]
        common = [k for k in ours_ids if k in ref]
        Z = store.layer("final")
        diff = max(
            (float((Z[ours_ids.index(k)] - ref[k][FINAL_HOOK]).abs().max()) for k in common), default=0.0
        )
    print(f"paper's approach : {a.images / t_ref:7.2f} images/s ({t_ref:.1f} s), kept {len(ref)}")
    print(f"lmm_concepts     : {a.images / t_ours:7.2f} images/s ({t_ours:.1f} s), kept {len(ours_ids)}")
    print(f"same samples kept: {sorted(ref) == sorted(ours_ids)}; max |Δ| of the 'final' vectors on common ones: {diff:.2e}")
    print(f"speed-up: {t_ref / t_ours:.1f}x (goal >= 10x)")

    def run(n: int, out: str) -> None:
        many = ((f"i{k}", images[k % len(images)], [word]) for k in range(n))
        lc.extract(model, many, word, [-1, "final"], out, batch_size=a.batch_size, max_new_tokens=4, progress=False)

    with tempfile.TemporaryDirectory() as tmp:
        run(a.batch_size, f"{tmp}/warm")
        small = peak_rss_anon_mb(lambda: run(a.images, f"{tmp}/small"))
        large = peak_rss_anon_mb(lambda: run(10 * a.images, f"{tmp}/large"))
    print(f"peak RssAnon: {small:.1f} MiB for {a.images} images, {large:.1f} MiB for {10 * a.images} "
          f"(+{large - small:.1f} MiB)")


if __name__ == "__main__":
    main()
