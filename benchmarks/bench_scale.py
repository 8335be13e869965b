"""Out-of-core and data-parallel Semi-NMF: rows/s, peak anonymous memory, 1 vs N processes.

    PYTHONPATH=. python benchmarks/bench_scale.py                       # the issue's size: 1,000,000 x 4,096 fp16 (8 GB)
    PYTHONPATH=. python benchmarks/bench_scale.py --n 100000 --d 1024   # a smaller run

1. Writes a planted RepresentationStore on disk (one float16 layer [n, d], streamed in chunks, never whole in
   memory): each row is the sum of `n_active` of K unit atoms with weights in [0.5, 2], plus noise.
2. Fits `OnlineSemiNMF(K)` on it for `--epochs` passes in a fresh process (world size 1), then in `--procs`
   processes joined by torch.distributed (gloo, launched like torchrun: RANK / WORLD_SIZE / MASTER_ADDR in the
   environment), one thread per process, same data and seed.
3. Prints per run: wall time, rows/s, the peak RssAnon of each rank (sampled from /proc/self/status every
   0.1 s: file-backed pages of the memory map are not counted, they are page cache), how well the planted
   atoms are recovered (mean best |cos|), and the speed-up of N processes over 1.

On a shared machine the speed-up measures the cores you actually got; the real scaling figure comes from
`benchmarks/gpu_check.sh` on GPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch


# ---------------------------------------------------------------------------------------------- the store
def atoms(K: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(K, d, generator=g)
    return W / torch.linalg.vector_norm(W, dim=1, keepdim=True)


def write_planted_store(path: Path, n: int, d: int, K: int, n_active: int, noise: float, seed: int,
                        chunk: int | None = None) -> None:
    """A complete single-layer RepresentationStore of planted float16 rows, written chunk by chunk."""
    from lmm_concepts._io import write_json
    from lmm_concepts.extraction.shards import write_streamed
    from lmm_concepts.extraction.store import LAYERS_DIR, MANIFEST, STORE_FORMAT

    W = atoms(K, d, seed)
    chunk = chunk or max(1, 2**27 // (n_active * d * 4))  # the gathered atoms of a chunk: 128 MB

    def chunks():
        g = torch.Generator().manual_seed(seed + 1)
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            support = torch.rand(m, K, generator=g).argsort(dim=1)[:, :n_active]
            weights = 0.5 + 1.5 * torch.rand(m, n_active, 1, generator=g)
            Z = (weights * W[support]).sum(dim=1) + noise * torch.randn(m, d, generator=g)
            yield Z.to(torch.float16)
            print(f"\r  wrote {start + m:,} / {n:,} rows", end="", file=sys.stderr, flush=True)

    write_json(path / MANIFEST, {"format": STORE_FORMAT, "format_version": 1, "complete": False})
    write_streamed(path / LAYERS_DIR / "planted.safetensors", chunks(), n, d, torch.float16)
    print(file=sys.stderr)
    write_json(path / MANIFEST, {
        "format": STORE_FORMAT, "format_version": 1, "complete": True, "word": "planted", "layers": ["planted"],
        "model": {"class": "planted", "n_layers": 1, "d_model": d}, "dtype": "float16", "n_kept": n,
        "planted": {"n": n, "d": d, "K": K, "n_active": n_active, "noise": noise, "seed": seed},
    })


# ---------------------------------------------------------------------------------------------- one rank
def worker(args) -> None:
    """One rank of a fit (world size from the environment, as torchrun sets it); prints one JSON line."""
    torch.set_num_threads(args.threads)
    from lmm_concepts.dictionary.distributed import init_distributed
    from lmm_concepts.dictionary.online import OnlineSemiNMF

    comm = init_distributed(backend="gloo")
    from lmm_concepts._memory import PeakRssAnon

    with PeakRssAnon(every=0.1) as monitor:
        model = OnlineSemiNMF(args.k, l1=args.l1, batch_size=args.batch_size, max_epochs=args.epochs, tol=0.0,
                              init_rows=args.init_rows, lasso_max_iter=args.lasso_max_iter,
                              lasso_tol=args.lasso_tol)
        start = time.perf_counter()
        model.fit(args.store, layer="planted")
        seconds = time.perf_counter() - start
    peak = monitor.peak_mb
    meta = json.loads((args.store / "manifest.json").read_text())["planted"]
    truth = atoms(meta["K"], meta["d"], meta["seed"])
    recovery = (truth @ model.W_dec.float().T).abs().max(dim=1).values.mean().item()
    print(json.dumps({"rank": comm.rank, "world": comm.world_size, "seconds": seconds, "peak_rss_anon_mb": peak,
                      "rows": meta["n"] * model.n_epochs_, "recovery": recovery,
                      "running_objective": model.history_}), flush=True)


def launch(args, world: int) -> list[dict]:
    """Run `world` ranks as torchrun would (environment rendezvous on localhost) and collect their reports."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, __file__, "--worker", "--store", str(args.store), "--k", str(args.k), "--l1", str(args.l1),
           "--batch-size", str(args.batch_size), "--epochs", str(args.epochs), "--threads", str(args.threads),
           "--init-rows", str(args.init_rows), "--lasso-max-iter", str(args.lasso_max_iter),
           "--lasso-tol", str(args.lasso_tol)]
    procs = []
    for rank in range(world):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), OMP_NUM_THREADS=str(args.threads), PYTHONPATH=str(Path(__file__).parents[1]))
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True))
    reports = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"a rank failed (exit {p.returncode}); its output: {out}")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="rows in the store")
    ap.add_argument("--d", type=int, default=4096, help="width of a row")
    ap.add_argument("--k", type=int, default=256, help="concepts fitted (and planted)")
    ap.add_argument("--n-active", type=int, default=8, help="planted atoms per row")
    ap.add_argument("--noise", type=float, default=0.05)
    ap.add_argument("--l1", type=float, default=0.1)
    ap.add_argument("--store", type=Path, default=Path("/tmp/lmm_concepts_bench_scale"))
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--init-rows", type=int, default=8192)
    ap.add_argument("--lasso-max-iter", type=int, default=100)
    ap.add_argument("--lasso-tol", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--procs", type=int, default=2, help="processes of the data-parallel run (0: skip it)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    manifest = args.store / "manifest.json"
    planted = json.loads(manifest.read_text()).get("planted") if manifest.exists() else None
    want = {"n": args.n, "d": args.d, "K": args.k, "n_active": args.n_active, "noise": args.noise, "seed": 0}
    if planted != want:
        print(f"writing a planted store {args.n:,} x {args.d:,} float16 ({args.n * args.d * 2 / 1e9:.1f} GB) "
              f"to {args.store}", file=sys.stderr)
        start = time.perf_counter()
        write_planted_store(args.store, args.n, args.d, args.k, args.n_active, args.noise, seed=0)
        print(f"  {time.perf_counter() - start:.0f} s", file=sys.stderr)
    flops_note = "(each row costs 4·d·K flops for Z·W_decᵀ and ZᵀV, plus the K×K code solve)"
    results = {}
    for world in [1] + ([args.procs] if args.procs > 1 else []):
        reports = launch(args, world)
        seconds = max(r["seconds"] for r in reports)
        rows = reports[0]["rows"]
        results[world] = seconds
        peaks = ", ".join(f"{r['peak_rss_anon_mb']:.0f}" for r in reports)
        print(f"{world} process(es) x {args.threads} thread(s): {rows:,} rows in {seconds:.1f} s = "
              f"{rows / seconds:,.0f} rows/s; peak RssAnon per rank [MB]: {peaks} (limit 4096); "
              f"planted atoms recovered: mean best |cos| {reports[0]['recovery']:.3f} {flops_note}")
    if len(results) == 2:
        print(f"speed-up of {args.procs} processes over 1: {results[1] / results[args.procs]:.2f}x")


if __name__ == "__main__":
    main()
