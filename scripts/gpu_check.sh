#!/usr/bin/env bash
# GPU check for the inference path (needs only torch; run from the repo root on one H100/H200, < 8 min):
#   1. graph-captured / compiled decode == eager decode (greedy, fp32 + bf16, tiny and reference shapes)
#   2. s2pro-shape benchmark with random bf16 weights at batch 1, 8, 64 (cached path; naive is O(T^2))
#   3. the cached-vs-naive comparison at the reference shape on GPU
#   4. the MFU of a training step at s2pro width (scripts/bench_train.py)
# Usage: bash scripts/gpu_check.sh [OUT_DIR]
set -euo pipefail
export PYTHONPATH=.
PY=${PYTHON:-python}
OUT=${1:-${OUT:-gpu_check_out}}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
echo "== parity (cudagraph/compile vs eager)"
timeout 240 $PY scripts/bench_inference.py --parity | tee "$OUT/parity.json"
echo "== s2pro benchmark (bf16, random weights)"
timeout 300 $PY scripts/bench_inference.py --shapes s2pro --batches 1 8 64 --frames 150 --no-naive \
  --json "$OUT/bench_s2pro.json" | tee "$OUT/bench_s2pro.md"
echo "== reference shape, cached vs naive"
timeout 120 $PY scripts/bench_inference.py --shapes reference --batches 1 8 --frames 150 \
  --json "$OUT/bench_reference.json" | tee "$OUT/bench_reference.md"
echo "== training MFU, s2pro-wide model with 8 slow layers (full depth does not fit one GPU with AdamW)"
timeout 150 $PY scripts/bench_train.py --size s2pro --set n_layers=8 --device cuda --dtype bf16 \
  --batch-size 4 --frames 400 --steps 5 --warmup 2 | tee "$OUT/train_mfu.json"
echo "gpu_check: OK"
