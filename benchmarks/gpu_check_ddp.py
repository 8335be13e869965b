"""The GPU check's data-parallel part: run under `torchrun --nproc-per-node N` (NCCL), one GPU per rank.

Every rank draws the same planted data (same seed) on its own GPU and encodes its share of every mini-batch;
the statistics are all-reduced over NCCL. Rank 0 prints the fit time, the ranks' agreement, and the speed-up
over the one-GPU fit that `gpu_check.py` recorded in /tmp/lmm_concepts_gpu_check.json — for equal work only:
the same n, d, K, dtype and number of epochs (`--epochs`, 3 as in gpu_check.sh), else no speed-up is claimed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.distributed as dist

from benchmarks.gpu_check import planted_on_device
from lmm_concepts.dictionary.distributed import init_distributed
from lmm_concepts.dictionary.online import OnlineSemiNMF


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=4096)
    ap.add_argument("--k", type=int, default=256)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--epochs", type=int, default=3, help="passes over the data (the one-GPU run's, for equal work)")
    args = ap.parse_args()
    comm = init_distributed()  # NCCL, this process pinned to GPU LOCAL_RANK
    device = torch.device("cuda", torch.cuda.current_device())
    dtype = getattr(torch, args.dtype)
    Z, _ = planted_on_device(args.n, args.d, args.k, dtype, device)
    model = OnlineSemiNMF(args.k, l1=0.1, batch_size=65536, block_rows=4096, max_epochs=args.epochs, tol=0.0,
                          init_rows=16384,
                          lasso_max_iter=100, lasso_tol=1e-4, device=device, dtype=dtype)
    torch.cuda.synchronize()
    dist.barrier()
    start = time.perf_counter()
    model.fit(Z)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    W0 = model.W_dec.clone()
    dist.broadcast(W0, src=0)
    spread = (model.W_dec - W0).abs().max()
    dist.all_reduce(spread, op=dist.ReduceOp.MAX)
    if comm.rank == 0:
        single = Path("/tmp/lmm_concepts_gpu_check.json")
        work = (args.n, args.d, args.k, args.dtype, model.n_epochs_)
        ref = {(r["n"], r["d"], r["K"], r["dtype"], r["epochs"]): r["fit_s"]
               for r in json.loads(single.read_text())} if single.exists() else {}
        speedup = (f"{ref[work] / seconds:.2f}x" if work in ref else
                   f"n/a: no one-GPU run of the same work {work} (run gpu_check.py with the same --n --epochs)")
        print(json.dumps({"world": comm.world_size, "dtype": args.dtype, "epochs": model.n_epochs_,
                          "fit_s": round(seconds, 2), "rows_per_s": round(args.n * model.n_epochs_ / seconds),
                          "max_rank_disagreement": spread.item(), "speedup_over_1_gpu_same_work": speedup}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
