#!/usr/bin/env bash
# The comparison that can decide the paper's claim on a 2-core CPU (experiment=cpu_fidelity:
# ResNet-20, 15 epochs, 5,085 CIFAR-10 training images, all 10,000 test images), then the report.
#
# Methods (one row each in the report):
#   clean (reference), vanilla, self_distill teacher_input=same and =independent (SSD),
#   student_teacher (STL), denoise with target=clean and =noise2noise (g trained on D(x~)), joint
#   BEYOND=1 adds online_distill and self_distill generations=2,3 (born-again), at BEYOND_SIGMAS;
#   BEYOND=only runs just those
# Order: sigma by sigma (SIGMAS), and within a sigma method group by method group, seeds
# interleaved: SHARDS processes (one thread each) take the next unclaimed (sigma, group, seed)
# task, so the first sigma's table is complete first. Clean classifiers, denoisers and teachers
# come from the stage cache: each is trained once (a job needing one another shard is training
# waits for it on the cache lock).
# Re-running with the same SWEEP resumes: finished jobs are skipped, killed ones resume.
#
#   bash experiments/cpu_fidelity.sh                                   # everything (~3 h, idle 2 cores)
#   SIGMAS="0.2 0.5" BEYOND=1 bash experiments/cpu_fidelity.sh         # two sigmas + online/generations
#   SWEEP=smoke SIGMAS=0.2 SEEDS=0 BEYOND=1 bash experiments/cpu_fidelity.sh data=synthetic '~data.variant' \
#       data.limit_train=null trainer.max_epochs=1 optim.optimizer.lr=0.01   # a minute: the plumbing
#
# Env: SWEEP (default cpu_fidelity), SIGMAS ("0.2 0.5 0.1 0.3"), SEEDS ("0 1 2"), SHARDS (one per
# core), BEYOND (0 | 1 | only), BEYOND_SIGMAS ("0.2 0.5"), SSD_LOG_DIR (outputs), PY (.venv/bin/python),
# REPORT_OUT (default: the sweep folder's report/).
# Extra arguments are Hydra overrides for every job.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
SWEEP=${SWEEP:-cpu_fidelity}
SIGMAS=(${SIGMAS:-0.2 0.5 0.1 0.3})
SEEDS=(${SEEDS:-0 1 2})
BEYOND=${BEYOND:-0}
BEYOND_SIGMAS=" ${BEYOND_SIGMAS:-0.2 0.5} "
SHARDS=${SHARDS:-$(env -u OMP_NUM_THREADS nproc 2>/dev/null || echo 1)}  # nproc itself obeys OMP_NUM_THREADS
export SSD_DATA_DIR=${SSD_DATA_DIR:-../shared/data}
LOG_DIR=${SSD_LOG_DIR:-outputs}
SWEEP_DIR="$LOG_DIR/multiruns/$SWEEP"
CLAIMS="$SWEEP_DIR/.claims.$$"
mkdir -p "$SWEEP_DIR" "$CLAIMS"

# one Hydra multirun per method group; every group runs in every cell
GROUPS_OF_CELL=(
  "strategy=clean,vanilla"
  "strategy=self_distill strategy.teacher_input=same,independent"
  "strategy=student_teacher"
  "strategy=denoise strategy.target=clean,noise2noise"
  "strategy=joint"
)
BEYOND_GROUPS=(
  "strategy=online_distill"
  "strategy=self_distill strategy.teacher_input=same strategy.generations=2,3"
)

# shellcheck source=experiments/_queue.sh
source experiments/_queue.sh
tasks=()  # "log|overrides" (see _queue.sh)
for sigma in "${SIGMAS[@]}"; do
  groups=()
  if [[ "$BEYOND" != only ]]; then groups+=("${GROUPS_OF_CELL[@]}"); fi
  if [[ "$BEYOND" != 0 && "$BEYOND_SIGMAS" == *" $sigma "* ]]; then groups+=("${BEYOND_GROUPS[@]}"); fi
  for group in "${groups[@]}"; do for seed in "${SEEDS[@]}"; do
    tasks+=("$SWEEP_DIR/shard|experiment=cpu_fidelity sweep_name=$SWEEP noise.sigma=$sigma seed=$seed $group")
  done; done
done

EXTRA=("$@")
echo "cpu_fidelity: $SWEEP_DIR, sigmas ${SIGMAS[*]}, seeds ${SEEDS[*]}, $SHARDS shard(s), beyond=$BEYOND"
run_queue cpu_fidelity "$SWEEP_DIR/wall_time.txt" "$SHARDS" "${tasks[@]}"

# the README's table: SSD (both teacher inputs) against each baseline, the beyond rows against SSD
REPORT_OUT=${REPORT_OUT:-$SWEEP_DIR/report}
CONTRASTS=()
for ssd in self_distill:same self_distill:independent; do
  for base in vanilla student_teacher 'denoise:*' joint; do CONTRASTS+=(--compare "$ssd" "$base"); done
done
CONTRASTS+=(--compare 'online_distill:*' self_distill:same --compare 'online_distill:*' vanilla
            --compare 'self_distill:same:gen*' self_distill:same)
"$PY" -m ssd.report "$SWEEP_DIR" --out "$REPORT_OUT" "${CONTRASTS[@]}" > /dev/null
echo "cpu_fidelity: report in $REPORT_OUT/report.md"
