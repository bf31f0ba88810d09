#!/usr/bin/env bash
# Issue 19's claim sweep on a 2-core CPU, in priority order (one queue, SHARDS processes of one thread):
#   1. the regime check (experiment=cpu_tune, validation split only): vanilla and STL with STL's tuned
#      setting (DISTILL) at SIGMAS, seeds SEEDS: docs/results/regime_rule.md step 2, from clean/vanilla/STL
#      runs only;
#   2. the table (experiment=cpu_fidelity: 5,085 training images, all 10,000 test images) at SIGMAS:
#      clean, vanilla, STL, SSD with teacher_input=same and =independent, all with DISTILL;
#   3. controls at the first sigma: STL and SSD(same) with lambda=0 (the student still starts as DISTILL
#      says, so the row isolates what the feature term adds beyond the extra training), and vanilla for
#      30 epochs (teacher + student: the matched-epochs reference of a student that starts from its teacher);
#   4. the online-teacher ablation at the first sigma, seeds ONLINE_SEEDS: ema_bn = ema, student, recompute;
#   5. the controls at the other sigmas; 6. the table's rows for MORE_SEEDS at the first sigma.
# Re-running with the same SSD_LOG_DIR resumes (finished jobs are skipped). Reports at the end.
# Budget: 76 jobs (ResNet-20, 15 epochs, 5,085 images each; the 30-epoch vanilla controls twice that).
# Measured 2026-12-02 on this project's AVX2 CPU (no native bf16: float32): a stage takes 10-12 min on an
# idle core (~12 CPU-min with its test) and up to ~35 min wall under load; the 2026-11-29 CPU with native
# bf16 took ~5 min: ~16 CPU-hours here (~8 h on two idle cores), minutes per stage on a GPU. The regime
# check (the first 12 jobs) has run: docs/results/regime_check.md.
#   SSD_LOG_DIR=/tmp/claim nohup bash experiments/claim.sh > /tmp/claim.log 2>&1 &
# Env: SIGMAS ("0.2 0.5"), SEEDS ("0 1 2"), MORE_SEEDS ("3 4"), ONLINE_SEEDS ("0 1"),
#      DISTILL ("strategy.student_init=teacher"), SHARDS (one per core), SSD_LOG_DIR (outputs), PY.
# Extra arguments are Hydra overrides for every job.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SIGMAS=(${SIGMAS:-0.2 0.5})
SEEDS=(${SEEDS:-0 1 2})
MORE_SEEDS=(${MORE_SEEDS-3 4})
ONLINE_SEEDS=(${ONLINE_SEEDS-0 1})
DISTILL=${DISTILL-strategy.student_init=teacher}
SHARDS=${SHARDS:-$(env -u OMP_NUM_THREADS nproc 2>/dev/null || echo 1)}
export SSD_DATA_DIR=${SSD_DATA_DIR:-../shared/data}
LOG_DIR=${SSD_LOG_DIR:-outputs}
REGIME="$LOG_DIR/multiruns/claim_regime" TABLE="$LOG_DIR/multiruns/claim"
CLAIMS="$TABLE/.claims.$$"
mkdir -p "$REGIME" "$TABLE" "$CLAIMS"
# shellcheck source=experiments/_queue.sh
source experiments/_queue.sh

first=${SIGMAS[0]}
regime="experiment=cpu_tune sweep_name=claim_regime"
table="experiment=cpu_fidelity sweep_name=claim"
rows() {  # rows SIGMA SEED...: the table's rows at one sigma
  local sigma=$1 group seed
  shift
  for group in "strategy=clean,vanilla" "strategy=student_teacher $DISTILL" \
      "strategy=self_distill strategy.teacher_input=same,independent $DISTILL"; do
    for seed in "$@"; do tasks+=("$TABLE/table|$table noise.sigma=$sigma seed=$seed $group"); done
  done
}
controls() {  # controls SIGMA: lambda=0 with the same start, and vanilla for as many epochs as teacher + student
  local seed
  for seed in "${SEEDS[@]}"; do
    tasks+=("$TABLE/control|$table noise.sigma=$1 seed=$seed strategy=student_teacher strategy.lambda=0 $DISTILL"
            "$TABLE/control|$table noise.sigma=$1 seed=$seed strategy=self_distill strategy.lambda=0 $DISTILL"
            "$TABLE/control|$table noise.sigma=$1 seed=$seed strategy=vanilla trainer.max_epochs=30")
  done
}
tasks=()
for seed in "${SEEDS[@]}"; do for sigma in "${SIGMAS[@]}"; do
  tasks+=("$REGIME/regime|$regime noise.sigma=$sigma seed=$seed strategy=vanilla"
          "$REGIME/regime|$regime noise.sigma=$sigma seed=$seed strategy=student_teacher $DISTILL")
done; done
for sigma in "${SIGMAS[@]}"; do rows "$sigma" "${SEEDS[@]}"; done
controls "$first"
for seed in "${ONLINE_SEEDS[@]}"; do
  tasks+=("$TABLE/online|$table noise.sigma=$first seed=$seed strategy=online_distill strategy.ema_bn=ema,student,recompute")
done
for sigma in "${SIGMAS[@]:1}"; do controls "$sigma"; done
if (( ${#MORE_SEEDS[@]} )); then rows "$first" "${MORE_SEEDS[@]}"; fi

EXTRA=("$@")
echo "claim: $TABLE and $REGIME, sigmas ${SIGMAS[*]}, seeds ${SEEDS[*]} (+${MORE_SEEDS[*]:-none}), ${#tasks[@]} tasks, $SHARDS shard(s), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
run_queue claim "$TABLE/wall_time.txt" "$SHARDS" "${tasks[@]}"

"$PY" -m ssd.report.tuning "$REGIME" --against vanilla > "$REGIME/regime.md" || true
"$PY" -m ssd.report "$TABLE" --out "$TABLE/report" \
  --compare 'self_distill:*' vanilla --compare 'self_distill:*' student_teacher \
  --compare student_teacher vanilla --compare 'online_distill*' vanilla > /dev/null
echo "claim: $REGIME/regime.md and $TABLE/report/report.md"
