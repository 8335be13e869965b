"""Faithfulness of the demo's dictionaries on the toy model, at the final norm and at a residual layer before the last.

    PYTHONPATH=. python -m lmm_concepts demo --out /tmp/faith_demo --methods semi_nmf   # builds reps/{train,test}
    PYTHONPATH=. python benchmarks/faithfulness_toy.py /tmp/faith_demo [--n_random 10]

For each dictionary (Semi-NMF l1 = 1 and 0.1, PCA, random directions; K = 20, seed 0, fitted on the train store's
layer) and each layer, grounds it on the train store and measures `lc.faithfulness` on the test store's sequences.
Prints one markdown row per (layer, dictionary, effect): mean drop, mean random drop, share of concepts above random
(drop > random mean + 2 std). At the final norm every effect is definitional (see lmm_concepts/metrics/faithfulness.py).
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("demo", help="a demo output folder holding reps/train and reps/test")
    ap.add_argument("--n_random", type=int, default=10)
    ap.add_argument("--layers", nargs="+", default=["final", "blocks.0.hook_resid_post"])
    args = ap.parse_args()
    import lmm_concepts as lc
    from lmm_concepts.metrics.sequences import store_sequences

    torch.set_num_threads(1)
    model = lc.load_lmm("toy")
    train = lc.RepresentationStore.open(f"{args.demo}/reps/train")
    test = lc.RepresentationStore.open(f"{args.demo}/reps/test")
    seqs = store_sequences(model, test, batch_size=64)
    print(f"{len(seqs)} test sequences ({len(seqs.dropped)} dropped), n_random = {args.n_random}\n")
    dictionaries = {
        "Semi-NMF l1=1": lambda: lc.SemiNMF(20, l1=1.0, seed=0),
        "Semi-NMF l1=0.1": lambda: lc.SemiNMF(20, l1=0.1, seed=0),
        "PCA": lambda: lc.PCA(20, seed=0),
        "random (l1=1)": lambda: lc.RandomDictionary(20, l1=1.0, seed=0),
    }
    print("| layer | dictionary | effect | mean drop | random | above random |")
    print("|---|---|---|---|---|---|")
    for layer in args.layers:
        for name, make in dictionaries.items():
            t = time.perf_counter()
            dico = make().fit(train.layer(layer))
            expl = lc.ground(model, dico, train, layer=layer)
            res = lc.faithfulness(model, expl, seqs, n_random=args.n_random)
            for effect, s in res.effects.items():
                head = " (headline)" if effect == res.score else ""
                print(f"| {expl.hook_name} | {name} | {effect}{head} | {s.mean_drop:.3f} | {s.mean_random_drop:.3f} "
                      f"| {s.frac_above_random:.2f} |")
            print(f"<!-- {name} at {layer}: {time.perf_counter() - t:.1f} s, {len(res.skipped)} skipped -->", flush=True)


if __name__ == "__main__":
    main()
