#!/usr/bin/env bash
# The GPU path, checked in one call on a machine with a CUDA GPU (none is lent to CI): the 7B
# rehearsal with fp16 LoRA training and bitsandbytes 8-bit feed-forward layers on cuda,
# CTranslate2 int8_float16 on cuda, py/ct2 agreement, tokens/s of training and both inference
# modes, written to OUT_DIR (default benchmarks/results/gpu_check).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results/gpu_check}
make --no-print-directory install  # on a GPU machine pip's torch==2.13.0 is the CUDA build
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec .venv/bin/python benchmarks/gpu_check.py --out "$out"
