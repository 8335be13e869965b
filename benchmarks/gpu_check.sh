#!/usr/bin/env bash
# GPU check for the scale issue, under 5 minutes on one modern GPU (run from the repository root):
#   1. the device-aware online / distributed tests on CUDA (LMM_CONCEPTS_TEST_DEVICE=cuda);
#   2. fit time and FLOP/s of the online Semi-NMF at d = 4,096, n = 1,000,000, K = 256 in fp32 and bf16;
#   3. with two or more GPUs, the same fit data-parallel over NCCL (torchrun), and its speed-up over one GPU.
# Results are printed; with $OUT set they are also written there as JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
N=${N:-1000000}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

echo "== 1. tests on CUDA"
LMM_CONCEPTS_TEST_DEVICE=cuda timeout 120 python -m pytest -q tests/test_online.py -k "full_batch or bfloat16"

echo "== 2. online Semi-NMF, n=$N d=4096 K=256, one GPU"
timeout 150 python benchmarks/gpu_check.py --n "$N" --d 4096 --k 256 --epochs 3

GPUS=$(python -c "import torch; print(torch.cuda.device_count())")
if [ "$GPUS" -ge 2 ]; then
  echo "== 3. data-parallel over $GPUS GPUs (NCCL, torchrun)"
  timeout 150 torchrun --standalone --nproc-per-node "$GPUS" -m benchmarks.gpu_check_ddp --n "$N" --epochs 3
else
  echo "== 3. skipped: one GPU visible (the NCCL data-parallel fit needs two or more)"
fi
