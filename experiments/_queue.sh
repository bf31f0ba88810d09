# shellcheck shell=bash
# A task queue for the experiment scripts: SHARDS processes (one thread each) take the next unclaimed
# task (an atomic mkdir), so tasks run in the order listed. Each task is one `ssd.run -m` invocation:
# "LOG|overrides..." (LOG: the shard's log file under the sweep folder). Re-running resumes: ssd skips
# finished jobs. Sourced by cpu_fidelity.sh and claim.sh; needs PY, LOG_DIR, CLAIMS and EXTRA set.

run_queue() {  # run_queue LABEL WALL_FILE SHARDS TASK...: run every task, SHARDS at a time; the wall time to WALL_FILE
  local label=$1 wall_file=$2 shards=$3 shard pids=() start wall
  shift 3
  QUEUE_TASKS=("$@")
  start=$(date +%s)
  for (( shard = 0; shard < shards; shard++ )); do _queue_shard "$shard" & pids+=($!); done
  for pid in "${pids[@]}"; do wait "$pid"; done
  rm -rf "$CLAIMS"
  wall=$(( $(date +%s) - start ))
  echo "$label: sweep finished in $wall s ($(( wall / 60 )) min) with $shards shard(s)" | tee "$wall_file"
}

_queue_shard() {
  local shard=$1 i log args
  for i in "${!QUEUE_TASKS[@]}"; do
    mkdir "$CLAIMS/$i" 2>/dev/null || continue   # atomic: one shard per task
    IFS='|' read -r log args <<< "${QUEUE_TASKS[$i]}"
    echo "$(date +%T) shard $shard: $args"
    # shellcheck disable=SC2086  # a task is several overrides
    OMP_NUM_THREADS=1 "$PY" -m ssd.run -m paths.log_dir="$LOG_DIR" $args \
      trainer.enable_progress_bar=false "${EXTRA[@]}" >> "$log.shard$shard.log" 2>&1 \
      || echo "$(date +%T) shard $shard: failed: $args (see $log.shard$shard.log)"
  done
}
