#!/usr/bin/env bash
# The paper's comparison at CPU scale (experiment=cpu_compare: ResNet-20, offline CIFAR-10
# subset, 6 strategies x sigma 0.1,0.2,0.3,0.5 x seeds 0,1), then `python -m ssd.report`.
#
# The seeds run as parallel shards, one thread each: on a 2-core machine two one-thread
# processes train about twice as fast as one two-thread process, and shards never need the
# same stage (stages depend on the seed; the stage cache's locks would make it safe anyway).
# Re-running with the same SWEEP resumes: finished jobs are skipped, killed ones resume from
# their last checkpoint.
#
#   bash experiments/cpu_compare.sh                          # ~35-40 min on an idle 2-core machine
#   SWEEP=more SEEDS="0 1 2" bash experiments/cpu_compare.sh trainer.max_epochs=8
#   SWEEP=smoke bash experiments/cpu_compare.sh data=synthetic '~data.variant' trainer.max_epochs=1   # seconds
#
# Env: SWEEP (sweep name, default cpu_compare), SEEDS ("0 1"), SHARDS (parallel processes,
# default: one per core, at most one per seed), THREADS (per shard, default 1 when sharded),
# STRATEGIES (comma list), ANALYZE=1 to also measure feature quality of the self_distill runs
# (python -m ssd.analyze_features), PY (python, default .venv/bin/python).
# Extra arguments are Hydra overrides for every job.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
SWEEP=${SWEEP:-cpu_compare}
SEEDS=(${SEEDS:-0 1})
STRATEGIES=${STRATEGIES:-clean,vanilla,student_teacher,self_distill,denoise,joint}
CORES=$(env -u OMP_NUM_THREADS nproc 2>/dev/null || echo 1)  # nproc itself obeys OMP_NUM_THREADS
SHARDS=${SHARDS:-$(( CORES < ${#SEEDS[@]} ? CORES : ${#SEEDS[@]} ))}
THREADS=${THREADS:-$(( SHARDS > 1 ? 1 : CORES ))}
export SSD_DATA_DIR=${SSD_DATA_DIR:-../shared/data}
LOG_DIR=${SSD_LOG_DIR:-outputs}
SWEEP_DIR="$LOG_DIR/multiruns/$SWEEP"
mkdir -p "$SWEEP_DIR"

echo "cpu_compare: sweep $SWEEP_DIR, strategies $STRATEGIES, seeds ${SEEDS[*]}, $SHARDS shard(s) x $THREADS thread(s)"
start=$(date +%s)
pids=()
for (( shard = 0; shard < SHARDS; shard++ )); do
  seeds=()
  for (( i = shard; i < ${#SEEDS[@]}; i += SHARDS )); do seeds+=("${SEEDS[$i]}"); done
  seed_list=$(IFS=,; echo "${seeds[*]}")
  OMP_NUM_THREADS=$THREADS "$PY" -m ssd.run -m experiment=cpu_compare sweep_name="$SWEEP" \
    strategy="$STRATEGIES" seed="$seed_list" trainer.enable_progress_bar=false "$@" \
    > "$SWEEP_DIR/shard$shard.log" 2>&1 &
  pids+=($!)
  echo "  shard $shard (seed $seed_list): pid ${pids[-1]}, log $SWEEP_DIR/shard$shard.log"
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
echo "cpu_compare: sweep finished in $(( $(date +%s) - start )) s (failed jobs: see the report)"

if [[ "${ANALYZE:-0}" == 1 ]]; then
  for run in "$SWEEP_DIR"/*strategy=self_distill*; do
    [[ -f "$run/results.json" ]] && OMP_NUM_THREADS=$CORES "$PY" -m ssd.analyze_features "$run" >> "$SWEEP_DIR/analyze.log" 2>&1 \
      || echo "  feature analysis failed for $run (see $SWEEP_DIR/analyze.log)"
  done
fi

"$PY" -m ssd.report "$SWEEP_DIR" --out "$SWEEP_DIR/report" > /dev/null
echo "cpu_compare: report in $SWEEP_DIR/report/report.md"
exit $failed
