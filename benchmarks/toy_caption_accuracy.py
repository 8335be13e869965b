"""Caption quality of the shipped toy DePALM on the synthetic world's test split.

    PYTHONPATH=. python benchmarks/toy_caption_accuracy.py [--n 500]

Prints, for one-object and multi-object images, how often a greedy caption names each ground-truth attribute
(and no other value of it), and a few example captions.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from lmm_concepts.data.synthetic import SyntheticWorld
from lmm_concepts.zoo import caption_accuracy, load_toy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="test images to caption (the recipe's split has 500)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    model = load_toy()
    loaded = time.time() - t0
    world = SyntheticWorld(seed=0, n_train=0, n_test=500)  # the recipe's world; its test split is held out
    acc = caption_accuracy(model, world, n=args.n)
    print(json.dumps({"load_seconds": round(loaded, 2), "caption_seconds": round(time.time() - t0 - loaded, 1),
                      **acc.to_dict()}, indent=1))


if __name__ == "__main__":
    main()
