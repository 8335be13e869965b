"""GPU check of the online Semi-NMF: fit time and FLOP/s at d = 4,096, n = 1,000,000, K = 256, in fp32 and bf16.

    python benchmarks/gpu_check.py [--n 1000000] [--d 4096] [--k 256] [--epochs 1]

Run by `benchmarks/gpu_check.sh` (which also runs the device-aware tests on CUDA and, with two or more GPUs,
the NCCL data-parallel fit). Planted data are drawn on the GPU (one row = 8 of the K atoms with weights in
[0.5, 2] plus noise) and kept there, so the figure is the solver's, not the disk's.

FLOP/s counts the data GEMMs only — Z·W_decᵀ and ZᵀV (2·n·d·K each) and VᵀV (2·n·K²) per epoch — so it is
a lower bound on the work done (the code solver's K×K iterations are extra). The same GEMMs timed alone
give the ceiling to compare with.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def planted_on_device(n: int, d: int, K: int, dtype: torch.dtype, device, n_active: int = 8, seed: int = 0):
    g = torch.Generator(device=device).manual_seed(seed)
    W = torch.randn(K, d, generator=g, device=device)
    W /= torch.linalg.vector_norm(W, dim=1, keepdim=True)
    Z = torch.empty(n, d, dtype=dtype, device=device)
    for start in range(0, n, 65536):
        m = min(65536, n - start)
        support = torch.rand(m, K, generator=g, device=device).topk(n_active, dim=1).indices
        weights = 0.5 + 1.5 * torch.rand(m, n_active, generator=g, device=device)
        V = torch.zeros(m, K, device=device).scatter_(1, support, weights)
        Z[start : start + m] = (V @ W + 0.05 * torch.randn(m, d, generator=g, device=device)).to(dtype)
    return Z, W


def gemm_ceiling(b: int, d: int, K: int, dtype: torch.dtype, device) -> float:
    """FLOP/s of the same three GEMMs on one batch of b rows, timed alone."""
    Z = torch.randn(b, d, device=device, dtype=dtype)
    W = torch.randn(K, d, device=device, dtype=dtype)
    V = torch.randn(b, K, device=device, dtype=dtype)
    for _ in range(3):
        Z @ W.T, Z.T @ V, V.T @ V
    sync(device)
    start, reps = time.perf_counter(), 20
    for _ in range(reps):
        Z @ W.T, Z.T @ V, V.T @ V
    sync(device)
    return reps * (4 * b * d * K + 2 * b * K * K) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=4096)
    ap.add_argument("--k", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=65536)
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--device", default="cuda", help="cuda (the check) or cpu (a smoke test of this script)")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible: run this on a GPU machine")
    from lmm_concepts.dictionary.online import OnlineSemiNMF

    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 here
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"device: {name}, torch {torch.__version__}")
    results = []
    for name in args.dtypes.split(","):
        dtype = getattr(torch, name)
        t0 = time.perf_counter()
        Z, W_true = planted_on_device(args.n, args.d, args.k, dtype, device)
        sync(device)
        gen_s = time.perf_counter() - t0
        model = OnlineSemiNMF(args.k, l1=0.1, batch_size=args.batch_size, block_rows=4096, max_epochs=args.epochs,
                              tol=0.0, init_rows=16384, lasso_max_iter=100, lasso_tol=1e-4, device=device, dtype=dtype)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        sync(device)
        t0 = time.perf_counter()
        model.fit(Z)
        sync(device)
        fit_s = time.perf_counter() - t0
        rows = args.n * model.n_epochs_
        flops = rows * (4 * args.d * args.k + 2 * args.k * args.k)
        t0 = time.perf_counter()
        V = model.encode(Z[: args.batch_size])
        sync(device)
        enc_s = time.perf_counter() - t0
        recovery = (W_true @ model.W_dec.T).abs().max(dim=1).values.mean().item()
        ceiling = gemm_ceiling(min(args.batch_size, args.n), args.d, args.k, dtype, device)
        row = {"dtype": name, "n": args.n, "d": args.d, "K": args.k, "epochs": model.n_epochs_,
               "generate_s": round(gen_s, 2), "fit_s": round(fit_s, 2), "rows_per_s": round(rows / fit_s),
               "data_gemm_tflops": round(flops / fit_s / 1e12, 2), "gemm_ceiling_tflops": round(ceiling / 1e12, 1),
               "encode_batch_s": round(enc_s, 3), "codes_nonneg": bool((V >= 0).all()),
               "planted_recovery_mean_best_cos": round(recovery, 3),
               "peak_gpu_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 1) if device.type == "cuda" else None,
               "running_objective": model.history_}
        results.append(row)
        print(json.dumps(row), flush=True)
        del Z, model, V
        if device.type == "cuda":
            torch.cuda.empty_cache()
    for path in filter(None, ["/tmp/lmm_concepts_gpu_check.json", os.environ.get("OUT") and os.path.join(os.environ["OUT"], "gpu_check.json")]):
        with open(path, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
