#!/usr/bin/env bash
# experiment=paper_cifar10 (ResNet-18, CIFAR-10, 200 epochs; 6 strategies x sigma 0.1,0.2,0.3,0.5
# x seeds 0,1,2) on the GPUs of this machine, then `python -m ssd.report`.
#
# MODE=shards (default): one single-GPU process per GPU (CUDA_VISIBLE_DEVICES=i), each taking
#   every GPUS-th run of the phase. A Hydra multirun is sequential, so this is how a local
#   sweep keeps every GPU busy; for a ResNet-18 on CIFAR one GPU per run is also the efficient
#   use of the hardware.
# MODE=ddp: one sequential sweep whose every job is DDP over all GPUs (trainer.devices=GPUS;
#   ssd.launch starts each job's ranks).
# Phases: teachers first (clean, vanilla), then the strategies that reuse them from the stage
# cache (student_teacher, self_distill, denoise), then joint (it reuses denoise's denoiser),
# so no run waits on a cache lock or trains a teacher a second time.
# Re-running with the same SWEEP resumes (finished runs are skipped, killed ones resume).
#
#   bash experiments/paper_cifar10.sh
#   GPUS=4 MODE=ddp SWEEP=paper_ddp bash experiments/paper_cifar10.sh logger.wandb.project=ssd-paper
#
# Env: SWEEP (default paper_cifar10), GPUS (default: all visible), MODE, SEEDS ("0 1 2"),
# SIGMAS ("0.1 0.2 0.3 0.5"), PY. Extra arguments are Hydra overrides for every run.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
SWEEP=${SWEEP:-paper_cifar10}
MODE=${MODE:-shards}
GPUS=${GPUS:-$(nvidia-smi -L 2>/dev/null | wc -l)}
SEEDS=(${SEEDS:-0 1 2})
SIGMAS=(${SIGMAS:-0.1 0.2 0.3 0.5})
PHASES=("clean vanilla" "student_teacher self_distill denoise" "joint")
SWEEP_DIR="${SSD_LOG_DIR:-outputs}/multiruns/$SWEEP"
(( GPUS > 0 )) || { echo "paper_cifar10: no GPU found (set GPUS)" >&2; exit 2; }
mkdir -p "$SWEEP_DIR"

run_phase_ddp() {  # $1: space-separated strategies
  "$PY" -m ssd.run -m experiment=paper_cifar10 sweep_name="$SWEEP" trainer.devices="$GPUS" \
    strategy="${1// /,}" seed="$(IFS=,; echo "${SEEDS[*]}")" noise.sigma="$(IFS=,; echo "${SIGMAS[*]}")" "${@:2}"
}

run_phase_shards() {  # $1: space-separated strategies; one worker per GPU, runs dealt round-robin
  local runs=() pids=() failed=0
  for strategy in $1; do for seed in "${SEEDS[@]}"; do for sigma in "${SIGMAS[@]}"; do
    runs+=("strategy=$strategy seed=$seed noise.sigma=$sigma")
  done; done; done
  for (( gpu = 0; gpu < GPUS; gpu++ )); do
    (
      for (( i = gpu; i < ${#runs[@]}; i += GPUS )); do
        # a one-job multirun: the run lands in the sweep folder under its usual job name
        CUDA_VISIBLE_DEVICES=$gpu "$PY" -m ssd.run -m experiment=paper_cifar10 sweep_name="$SWEEP" \
          trainer.devices=1 trainer.enable_progress_bar=false ${runs[$i]} "${@:2}" || echo "run failed: ${runs[$i]}"
      done
    ) > "$SWEEP_DIR/gpu$gpu.log" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  return $failed
}

for phase in "${PHASES[@]}"; do
  echo "paper_cifar10: phase [$phase] on $GPUS GPU(s), mode $MODE"
  "run_phase_$MODE" "$phase" "$@" || echo "paper_cifar10: phase [$phase] had failures (listed in the report)"
done
"$PY" -m ssd.report "$SWEEP_DIR" --out "$SWEEP_DIR/report" > /dev/null
echo "paper_cifar10: report in $SWEEP_DIR/report/report.md"
