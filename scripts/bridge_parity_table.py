"""Parity of the bridge backend with each family's own Hugging Face model, as a markdown table.

Builds the tests' tiny random checkpoints (tests/_bridge_cases.py: every 2-D weight redrawn with std 0.15), boots
each through `BridgeLMM`, and measures on a left-padded batch of 2 images (prompts of different lengths; for the
tiled families, images of different aspect ratios and tile counts), fp32 on CPU:
- logits: max abs gap to HF's eager forward over the real positions;
- greedy / beam: generated tokens identical to HF `generate` (up to 8 new tokens, EOS `</s>`; beam: 3 beams);
- predicts: max abs gap of the vectors at the positions predicting each generated token (resid_hook(0) and
  FINAL_HOOK, read on `generate(...).inputs()`) to each image recomputed alone, unpadded;
- concat: rows stacked by `ModelInputs.concat` (image tensors zero-padded) against each row alone.

    PYTHONPATH=. python scripts/bridge_parity_table.py [family ...]   (default: every family of CASES)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _bridge_cases import CASES, TILED  # noqa: E402
from _bridge_checks import concat_gap, predicts_gap  # noqa: E402
from _bridge_fixtures import hf_generate, max_logit_gap, random_images  # noqa: E402
from _bridge_llava_anyres import anyres_images  # noqa: E402

from lmm_concepts.models.bridge import BridgeLMM  # noqa: E402
from lmm_concepts.models.interface import FINAL_HOOK, resid_hook  # noqa: E402


def measure(name: str, root: Path) -> str:
    case = CASES[name]
    prompts = list(case.prompts)
    images = anyres_images()[:2] if name in TILED else random_images(2)
    folder = case.save(root / name)
    model = BridgeLMM.from_folder(folder, device="cpu")
    hf = case.hf_class.from_pretrained(folder, attn_implementation="eager").eval()
    inputs = model.build_inputs(images, prompts)
    logits = max_logit_gap(model, hf, inputs)
    same = {}
    for beams in (1, 3):
        out = model.generate_from_inputs(inputs, max_new_tokens=8, num_beams=beams)  # EOS: </s>, as HF's below
        ref = hf_generate(hf, inputs, 8, num_beams=beams)
        after = out.sequences[:, ref.shape[1]:]  # HF stops once every row ended; we pad to max_new_tokens
        same[beams] = torch.equal(out.sequences[:, : ref.shape[1]], ref) and bool((after == 0).all())
        if beams == 1:
            greedy = out
    predicts = predicts_gap(model, greedy, images, prompts, [resid_hook(0), FINAL_HOOK])
    stacked = concat_gap(model, images[::-1], prompts)
    tiles = tuple(inputs.pixel_values.shape[1:2]) if inputs.pixel_values.ndim == 5 else ()
    new = greedy.attention_mask[:, greedy.prompt_length:].sum(1).tolist()
    return (f"| {name} | {logits:.1e} | {same[1]} ({new} tokens) | {same[3]} | {predicts:.1e} | {stacked:.1e} | "
            f"{(inputs.attention_mask == 0).sum(1).tolist()} | {tiles[0] if tiles else 1} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("families", nargs="*", help=f"any of {list(CASES)} (default: all)")
    args = parser.parse_args()
    unknown = sorted(set(args.families) - set(CASES))
    if unknown:
        parser.error(f"unknown families {unknown}; choose among {list(CASES)}")
    torch.set_num_threads(1)
    print("| family | logits max abs gap | greedy = HF | beam 3 = HF | predicts gap | concat gap | "
          "left padding per row | tiles (max per row) |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in args.families or CASES:
            print(measure(name, Path(tmp)), flush=True)


if __name__ == "__main__":
    main()
