#!/usr/bin/env bash
# experiment=paper_cifar10 as SLURM job arrays (hydra/launcher=slurm: conf/hydra/launcher/slurm.yaml),
# then `python -m ssd.report`. Each run is one SLURM job with GPUS_PER_JOB tasks (one per GPU);
# Lightning's SLURM environment runs DDP inside the job. The phases (teachers first) run one
# after the other: submitit waits for each array, so keep this script alive (tmux, screen, or
# submit it as a small CPU-only job). Re-running with the same SWEEP resumes: finished runs are
# skipped, and a job that hit its time limit is requeued by submitit and resumes from last.ckpt.
#
#   PARTITION=gpu bash experiments/slurm_paper_cifar10.sh
#   PARTITION=gpu ACCOUNT=myproj GPUS_PER_JOB=2 bash experiments/slurm_paper_cifar10.sh hydra.launcher.timeout_min=600
#
# Needs: pip install -e ".[slurm]"; SSD_CACHE_DIR and SSD_LOG_DIR on a file system all nodes share
# (the defaults .cache/ssd and outputs are relative to this checkout, fine if it is shared).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
SWEEP=${SWEEP:-paper_cifar10}
PARTITION=${PARTITION:?set PARTITION to your GPU partition}
GPUS_PER_JOB=${GPUS_PER_JOB:-1}
LAUNCHER=(hydra/launcher=slurm hydra.launcher.partition="$PARTITION")
[[ -n "${ACCOUNT:-}" ]] && LAUNCHER+=(hydra.launcher.account="$ACCOUNT")
export SSD_CACHE_DIR=${SSD_CACHE_DIR:-$PWD/.cache/ssd}

for phase in clean,vanilla student_teacher,self_distill,denoise joint; do
  echo "slurm_paper_cifar10: phase [$phase]"
  "$PY" -m ssd.run -m "${LAUNCHER[@]}" experiment=paper_cifar10 sweep_name="$SWEEP" \
    trainer.devices="$GPUS_PER_JOB" strategy="$phase" "$@" \
    || echo "slurm_paper_cifar10: phase [$phase] had failures (listed in the report)"
done
"$PY" -m ssd.report "${SSD_LOG_DIR:-outputs}/multiruns/$SWEEP" --out "${SSD_LOG_DIR:-outputs}/multiruns/$SWEEP/report" > /dev/null
echo "slurm_paper_cifar10: report in ${SSD_LOG_DIR:-outputs}/multiruns/$SWEEP/report/report.md"
