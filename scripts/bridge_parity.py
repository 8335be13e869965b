"""The parity table of the bridge families whose tiny checkpoints `tests/_bridge_families_b.py` builds: for each,
fp32 logits against HF's own forward on a left-padded batch of two images (max abs gap), greedy and 3-beam
captions against HF `generate` (token-identical?), and the "predicts" vectors of that batch against each image
alone, unpadded (max abs gap at `blocks.0.hook_resid_post` and the final norm's output). The numbers the parity
tests assert (<= 1e-4), printed; `--describe` adds each family's README row.

    PYTHONPATH=. python scripts/bridge_parity.py [--describe] [gemma3 qwen2_5_vl mistral3 qwen3_vl]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test fixtures build the checkpoints

from _bridge_families_b import CASES, captions_equal, logit_gap, predicts_gaps  # noqa: E402

from lmm_concepts.models.bridge import BridgeLMM  # noqa: E402
from lmm_concepts.models.interface import FINAL_HOOK, resid_hook  # noqa: E402


def measure(name: str, root: Path) -> tuple[str, dict[str, str]]:
    case = CASES[name]
    folder = case.save(root / name, 0)
    model, hf = BridgeLMM.from_folder(folder, device="cpu"), case.hf_model(folder)
    inputs = model.build_inputs(case.images(), list(case.prompts))
    gaps = predicts_gaps(case, model, inputs, [resid_hook(0), FINAL_HOOK])
    row = (f"| {name} | {logit_gap(case, model, hf, inputs):.1e} | {captions_equal(case, model, hf, inputs)} | "
           f"{captions_equal(case, model, hf, inputs, num_beams=3)} | {gaps[resid_hook(0)]:.1e} | "
           f"{gaps[FINAL_HOOK]:.1e} |")
    return row, model.family.describe()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("families", nargs="*", help=f"any of {list(CASES)} (default: all)")
    parser.add_argument("--describe", action="store_true", help="also print each family's describe() row")
    args = parser.parse_args()
    unknown = sorted(set(args.families) - set(CASES))
    if unknown:
        parser.error(f"unknown families {unknown}; choose among {list(CASES)}")
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    print("| family | logits max abs gap | greedy = HF | beam 3 = HF | predicts gap, blocks.0 | predicts gap, final |")
    print("|---|---|---|---|---|---|")
    described = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.families or CASES:
            row, description = measure(name, Path(tmp))
            print(row, flush=True)
            described.append(description)
    if args.describe:
        for description in described:
            print("\n".join(f"{key}: {value}" for key, value in description.items()), end="\n\n")


if __name__ == "__main__":
    main()
