#!/usr/bin/env bash
# The GPU path, checked and timed in a few minutes on a CUDA machine (never needed on a CPU one):
#   bash scripts/gpu_check.sh [OUT_DIR]
# 1. the CUDA tests (bicubic on the GPU equals the CPU one, ...);
# 2. bf16 gradients against fp32 on the GPU, through the bf16 test run on the CUDA device;
# 3. matching throughput: per-class loop vs batched vs bf16 / TF32 / torch.compile at the main
#    job's and the DIV2K configs' sizes (bench_distill --device cuda);
# 4. hf-srdistill plan for configs/main_div2k.yaml on this GPU (stand-in photos).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-outputs/gpu_check}
mkdir -p "$out"
py=${PYTHON:-.venv/bin/python}
"$py" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"
timeout 120 "$py" -m pytest -q -k "cuda or bf16" tests/data/test_imresize.py tests/distill/test_matching.py \
  | tee "$out/tests.txt"
timeout 420 "$py" scripts/bench_distill.py --device cuda --classes 8 32 --ipc 1 10 --size 96 --repeats 3 \
  --paths loop batched vmap-all bf16 tf32 compiled --loop-max-classes 32 | tee "$out/bench_distill.txt"
timeout 240 "$py" -m hf_srdistill plan --config configs/main_div2k.yaml --out "$out/plan.json" \
  | tee "$out/plan.txt"
