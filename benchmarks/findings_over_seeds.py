"""Do the demo's findings survive a reseed? The demo rerun over several world seeds, same toy model.

    PYTHONPATH=. python benchmarks/findings_over_seeds.py --seeds 0 1 2 3 4 --out /tmp/findings_seeds
    PYTHONPATH=. python benchmarks/findings_over_seeds.py --seeds 0 1 2 3 4 --n_train 750 --n_test 375   # faster

Each seed draws another synthetic world (`SyntheticWorld(seed=...)`) and seeds every learner (the demo's `--seed`);
the toy model is the shipped one throughout. Every other option is the demo's default unless given here; the layer
sweep is skipped (no finding reads it). Prints one line per seed (the findings' verdicts and the numbers behind
them), then how often each finding holds, as a markdown table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from lmm_concepts.demo import DemoConfig, run_demo
from lmm_concepts.demo.pipeline import STAGES

VERDICT = {True: "holds", False: "fails", None: "n/a"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument(
        "--out", default="/tmp/findings_over_seeds", help="one demo folder per seed is written here"
    )
    ap.add_argument("--n_train", type=int, default=DemoConfig.n_train)
    ap.add_argument("--n_test", type=int, default=DemoConfig.n_test)
    ap.add_argument("--n_concepts", type=int, default=DemoConfig.n_concepts)
    ap.add_argument("--sae_training_samples", type=int, default=DemoConfig.sae_training_samples)
    ap.add_argument("--faith_samples", type=int, default=DemoConfig.faith_samples)
    args = ap.parse_args()  # nargs="+": at least one seed

    stages = [(name, fn) for name, fn in STAGES if name not in ("layer sweep", "report")]
    tally: dict[str, list[bool | None]] = {}
    print(
        f"settings: n_train {args.n_train}, n_test {args.n_test}, K {args.n_concepts}, "
        f"sae_training_samples {args.sae_training_samples}, faith_samples {args.faith_samples}, seeds {args.seeds}\n",
        flush=True,
    )
    for seed in args.seeds:
        t0 = time.perf_counter()
        cfg = DemoConfig(
            out=str(Path(args.out) / f"seed{seed}"),
            overwrite=True,
            seed=seed,
            sweep=False,
            n_train=args.n_train,
            n_test=args.n_test,
            n_concepts=args.n_concepts,
            sae_training_samples=args.sae_training_samples,
            faith_samples=args.faith_samples,
        )
        state = run_demo(cfg, stages=stages)
        res = state.results
        for f in res["findings"]:
            tally.setdefault(f["claim"], []).append(f["holds"])
        rec = {k: m.get("recovery_auroc") for k, m in res["methods"].items()}
        print(
            f"seed {seed} ({res['n_train']} train / {res['n_test']} test kept, {time.perf_counter() - t0:.0f} s): "
            + " | ".join(f"{VERDICT[f['holds']]}" for f in res["findings"]),
            flush=True,
        )
        print(
            "  recovery "
            + ", ".join(f"{k} {v:.3f}" for k, v in rec.items() if v is not None)
            + f"; probe {res['probe']['mean_test_auroc']:.3f}; l1 {res['l1']:.4g} ({res['l1_choice']['rule']}"
            + (f" -> {res['l1_choice']['chosen']})" if "chosen" in res["l1_choice"] else ")"),
            flush=True,
        )
        for f in res["findings"]:
            print(f"  - {f['claim']}: {f['detail']}", flush=True)

    print("\n| finding | holds | fails | not measured |\n|---|---|---|---|")
    n = len(args.seeds)
    for claim, verdicts in tally.items():
        print(
            f"| {claim} | {verdicts.count(True)}/{n} | {verdicts.count(False)}/{n} | {verdicts.count(None)}/{n} |"
        )


if __name__ == "__main__":
    main()
