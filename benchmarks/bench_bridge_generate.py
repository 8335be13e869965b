"""Batched greedy captioning through `BridgeLMM` against HF `generate` on the same model, batch and settings,
and the cost of a caching hook at every decoding step.

A random checkpoint of a bridge family (`bench_loading.py`'s builders: a small vision tower, a Llama-shaped
language model of `--layers` x `--hidden`) is saved in fp32 and loaded twice: `lc.load_lmm(folder)` (the HF model
under TransformerLens's bridge, `BridgeLMM.generate`) and the family's HF class with `from_pretrained` (the same
attention implementation). Both caption the same left-padded batch (`build_inputs`, prompts of different
lengths), greedy, KV cache, EOS off so every row makes `--new-tokens` tokens; the captions are checked identical.
Runs alternate, `--repeats` of each; the median wall time is reported.

Goal (issue 11): BridgeLMM's throughput >= 0.8 x HF generate's. "hooked" adds a forward hook at
`blocks.{L//2}.hook_resid_post` and at `"final"` that keeps each step's activation (as steering or a cache would).

    PYTHONPATH=. python benchmarks/bench_bridge_generate.py [--family llava] [--batch 8] [--new-tokens 20]
        [--layers 8] [--hidden 512] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_loading import FAMILIES, make_family_checkpoint  # noqa: E402

import lmm_concepts as lc  # noqa: E402
from lmm_concepts.models.interface import FINAL_HOOK, resid_hook  # noqa: E402


def images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(rng.integers(0, 256, (224 + 8 * (i % 3), 224, 3), dtype=np.uint8)) for i in range(n)
    ]


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=sorted(FAMILIES), default="llava")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=20)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="bench_bridge_generate_") as tmp:
        folder = Path(tmp) / f"random-{args.family}"
        n_params = make_family_checkpoint(
            folder, args.family, args.layers, args.hidden, args.vocab, dtype="float32"
        )
        model = lc.load_lmm(folder, device="cpu")
        import transformers

        hf_class = getattr(transformers, model.architecture)
        hf = hf_class.from_pretrained(folder, attn_implementation=model.config._attn_implementation).eval()

    words = [" ".join(f"w{i}" for i in range(k)) for k in range(1, args.batch + 1)]
    marker = model.family.image_marker(model.processor)
    prompt = model.family.caption_prompt(model.processor)
    prompts = [prompt.replace(marker, f"{marker} {w}", 1) for w in words]  # different lengths: left padding
    inputs = model.build_inputs(images(args.batch), prompts)
    kwargs, _ = model._forward_kwargs(inputs)
    image_kwargs = {k: v for k, v in kwargs.items() if k not in ("input", "attention_mask", "position_ids")}
    n = args.new_tokens

    def ours():
        return model.generate_from_inputs(inputs, max_new_tokens=n, eos_token_id=None)

    @torch.no_grad()
    def theirs():
        return hf.generate(
            input_ids=inputs.input_ids,
            attention_mask=inputs.attention_mask,
            **image_kwargs,
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            num_beams=1,
            pad_token_id=0,
            eos_token_id=[],
            use_cache=True,
        )

    kept: list[torch.Tensor] = []

    def keep(activation, hook):
        kept.append(activation.detach())

    hook_names = [resid_hook(model.n_layers // 2), FINAL_HOOK]

    def hooked():
        kept.clear()
        with model.hooks(fwd_hooks=[(name, keep) for name in hook_names]):
            return ours()

    same = torch.equal(ours().sequences, theirs()[:, : inputs.input_ids.shape[1] + n])  # also the warm-up
    hooked()
    t = {"bridge": [], "hf": [], "hooked": []}
    for _ in range(args.repeats):  # alternate, so that a busy machine slows all three alike
        t["hf"].append(seconds(theirs))
        t["bridge"].append(seconds(ours))
        t["hooked"].append(seconds(hooked))
    med = {k: statistics.median(v) for k, v in t.items()}
    tokens = args.batch * n
    print(
        f"{args.family}: {n_params / 1e6:.0f} M parameters (language model {args.layers} x {args.hidden}), fp32, "
        f"batch {args.batch} x {n} new tokens, prompt {inputs.input_ids.shape[1]} tokens, "
        f"torch threads {torch.get_num_threads()}, captions identical to HF: {same}"
    )
    for name, label in (
        ("hf", "HF generate"),
        ("bridge", "BridgeLMM.generate"),
        ("hooked", "BridgeLMM + 2 hooks"),
    ):
        print(
            f"{label:20s}: {med[name]:7.3f} s  ({tokens / med[name]:7.1f} tokens/s)   runs {[round(x, 3) for x in t[name]]}"
        )
    print(f"BridgeLMM / HF throughput      = {med['hf'] / med['bridge']:.2f}  (goal >= 0.8)")
    print(
        f"hooked / unhooked throughput   = {med['bridge'] / med['hooked']:.2f}  ({len(kept)} activations kept per run)"
    )


if __name__ == "__main__":
    main()
