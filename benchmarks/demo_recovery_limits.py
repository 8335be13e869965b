"""What limits Semi-NMF's recovery in the demo? Recovery per attribute, per K, per l1 and per layer, beside PCA's and
the linear probe's (the ceiling), on a demo's own stores.

    PYTHONPATH=. python -m lmm_concepts demo --out /tmp/demo_limits            # default settings, layer sweep on
    PYTHONPATH=. python benchmarks/demo_recovery_limits.py /tmp/demo_limits [--ks 12 16 20 24 32] [--l1s 1 0.3 0.1 0.03]

For each layer of the stores (blocks' outputs and "final"): the probe's held-out AUROC per attribute; PCA's recovery
per K; Semi-NMF's (seed 0) per K and l1 with its mean number of active concepts per training sample. The world,
the toy model, the recovery metric and the split are the demo's; nothing is chosen on the test split here — this is
the map the demo's choice is read against. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("demo", help="a demo output folder holding reps/train and reps/test")
    ap.add_argument("--ks", type=int, nargs="+", default=[12, 16, 20, 24, 32])
    ap.add_argument("--l1s", type=float, nargs="+", default=[1.0, 0.3, 0.1, 0.03])
    ap.add_argument("--layers", nargs="+", default=None, help="store layers (default: all)")
    args = ap.parse_args()
    import lmm_concepts as lc
    from lmm_concepts.metrics.probe import probe_recovery
    from lmm_concepts.metrics.recovery import concept_recovery

    torch.set_num_threads(1)
    train = lc.RepresentationStore.open(f"{args.demo}/reps/train")
    test = lc.RepresentationStore.open(f"{args.demo}/reps/test")
    attrs = {
        s: [r.get("attributes", {}) for r in st.metadata] for s, st in (("train", train), ("test", test))
    }
    layers = args.layers or [str(x) for x in train.layers]
    print(f"{len(train)} train / {len(test)} test samples\n")
    print("| layer | method | K | l1 | active / sample | mean | " + " | ".join(ATTRS) + " |")
    print("|---|---|---|---|---|---|" + "---|" * len(ATTRS))

    def row(layer, method, k, l1, active, rec):
        by = rec.by_attribute()
        print(
            f"| {layer} | {method} | {k} | {l1} | {active} | {rec.mean_test_auroc:.3f} | "
            + " | ".join(f"{by[a]:.3f}" if a in by else "–" for a in ATTRS)
            + " |",
            flush=True,
        )

    for layer in layers:
        Ztr, Zte = train.layer(layer).float(), test.layer(layer).float()
        row(layer, "linear probe", "–", "–", "–", probe_recovery(Ztr, attrs["train"], Zte, attrs["test"]))
        for k in args.ks:
            pca = lc.PCA(k, seed=0).fit(Ztr)
            row(
                layer,
                "PCA",
                k,
                "–",
                "–",
                concept_recovery(
                    pca.encode(Ztr), attrs["train"], pca.encode(Zte), attrs["test"], signed=True
                ),
            )
            for l1 in args.l1s:
                t = time.perf_counter()
                dico = lc.SemiNMF(k, l1=l1, seed=0).fit(Ztr)
                Vtr, Vte = dico.encode(Ztr), dico.encode(Zte)
                active = f"{(Vtr > 0).sum(1).float().mean():.1f}"
                row(
                    layer,
                    "Semi-NMF",
                    k,
                    l1,
                    active,
                    concept_recovery(Vtr, attrs["train"], Vte, attrs["test"]),
                )
                print(f"<!-- {time.perf_counter() - t:.1f} s -->", flush=True)


ATTRS = ("background", "color", "count", "position", "size")

if __name__ == "__main__":
    main()
