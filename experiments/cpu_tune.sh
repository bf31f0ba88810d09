#!/usr/bin/env bash
# Tuning on validation (experiment=cpu_tune): one Hydra multirun per seed, the seeds in parallel (one
# process per core, one thread each); the arguments are the grid, e.g.
#   bash experiments/cpu_tune.sh strategy=student_teacher strategy.student_init=random,teacher_init noise.sigma=0.2
# Env: SWEEP (default cpu_tune), SEEDS ("0 1"), SSD_LOG_DIR (outputs), PY (.venv/bin/python).
# Then: python -m ssd.report.tuning "$SSD_LOG_DIR/multiruns/$SWEEP" --against vanilla
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SWEEP=${SWEEP:-cpu_tune}
SEEDS=(${SEEDS:-0 1})
export SSD_DATA_DIR=${SSD_DATA_DIR:-../shared/data}
LOG_DIR=${SSD_LOG_DIR:-outputs}
mkdir -p "$LOG_DIR/multiruns/$SWEEP"
pids=()
for seed in "${SEEDS[@]}"; do
  OMP_NUM_THREADS=1 "$PY" -m ssd.run -m experiment=cpu_tune sweep_name="$SWEEP" paths.log_dir="$LOG_DIR" \
    seed="$seed" trainer.enable_progress_bar=false "$@" >> "$LOG_DIR/multiruns/$SWEEP/seed$seed.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
echo "cpu_tune: $LOG_DIR/multiruns/$SWEEP (exit $status)"
exit $status
