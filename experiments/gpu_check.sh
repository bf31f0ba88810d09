#!/usr/bin/env bash
# GPU check: one script, at most ~8 minutes on one GPU, one JSON file (python -m ssd.gpu_check).
#   1. fixed evaluation noise: images/s for 10,000 images of 3x224x224 and of 3x32x32, and the
#      largest CPU-vs-GPU difference of the noise;
#   2. ssd.bench --model resnet18 on the GPU: the raw PyTorch loop vs every strategy;
#   3. short ResNet-18 runs (4 epochs per stage) of vanilla, student_teacher and self_distill at
#      sigma=0.2 on full CIFAR-10 (data.variant=full under $SSD_DATA_DIR): accuracy and images/s
#      from each results.json.
#
#   SSD_DATA_DIR=/path/to/data bash experiments/gpu_check.sh                 # on the GPU machine
#   bash experiments/gpu_check.sh --device cpu --smoke                       # plumbing check on a CPU (~2-4 min)
#   bash experiments/gpu_check.sh --epochs 2 --out gpu.json trainer.compile=true
#
# Flags: --device cuda|cpu, --smoke, --out PATH, --budget-s S (default 480), --epochs N,
# --sigma S, --model M, --skip noise,bench,runs, --keep DIR (keep run folders); extra KEY=VALUE
# arguments are Hydra overrides for the runs. Not part of the test suite (it needs minutes and data).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[[ -x "$PY" ]] || PY=python
export SSD_DATA_DIR=${SSD_DATA_DIR:-../shared/data}
exec "$PY" -m ssd.gpu_check "$@"
