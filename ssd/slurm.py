"""SLURM: sweeps with ``hydra/launcher=slurm`` (a preview of their sbatch script, a clear error
off-cluster: ``SlurmCheck``, a Hydra callback) and requeueing a preempted job (``requeue``, called by ``ssd.interrupt`` on SIGUSR1).

* ``ssd -m hydra/launcher=slurm ... +slurm_preview=true`` prints the sbatch script the sweep would
  submit (one job array: one task per sweep point) and each task's overrides, then exits 0. Nothing is
  submitted, and nothing needs SLURM: run it on a laptop.
* Without ``sbatch``/``srun`` on PATH, ``-m hydra/launcher=slurm`` exits 2 saying what is missing,
  before anything is submitted or read (submitit would say ``Could not detect "srun"``).
* A job is requeued the way Lightning's ``SLURMEnvironment(auto_requeue=True)`` does it:
  ``scontrol requeue <job id>`` (``<array job>_<task>`` in an array), from the job's first process only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

#: the programs a SLURM sweep needs on PATH
SLURM_TOOLS = ("sbatch", "srun")
#: the config key that turns a SLURM sweep into a preview (``+slurm_preview=true``)
PREVIEW_KEY = "slurm_preview"


# --------------------------------------------------------------------------- requeue (inside a job)
def job_id() -> str | None:
    """This SLURM job's id as ``scontrol`` names it (``<array job id>_<task id>`` in an array); None outside SLURM."""
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array and os.environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID") or None


def requeue() -> str | None:
    """``scontrol requeue`` this job (from the job's first process only); the job id requeued, or None
    (not in SLURM, another process, or scontrol failed: said on stderr)."""
    job = job_id()
    first = os.environ.get("SLURM_PROCID", "0") in ("", "0") and os.environ.get("RANK", "0") in ("", "0")
    if job is None or not first:
        return None
    try:
        done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        print(f"ssd: cannot requeue SLURM job {job}: scontrol is not on PATH", file=sys.stderr)
        return None
    if done.returncode != 0:
        print(
            f"ssd: scontrol requeue {job} failed ({done.returncode}): {done.stderr.strip()}", file=sys.stderr
        )
        return None
    print(f"ssd: SLURM job {job} requeued; it resumes from its last checkpoint", file=sys.stderr)
    return job


# --------------------------------------------------------------------------- the sweep launcher
def missing_tools() -> list[str]:
    """The SLURM programs a sweep needs that are not on PATH."""
    return [tool for tool in SLURM_TOOLS if shutil.which(tool) is None]


def missing_tools_message(missing: Sequence[str]) -> str:
    return (
        f"ssd: hydra/launcher=slurm needs SLURM's {' and '.join(missing)} on PATH, which this machine does "
        "not have; allowed: run the sweep on a SLURM login node, or preview its sbatch script here with "
        f"+{PREVIEW_KEY}=true (or run it on this machine without hydra/launcher=slurm)"
    )


def _slurm_executor(params: dict[str, Any], jobs: int) -> Any:
    """submitit's SLURM executor for ``params`` (the launcher's), built without needing srun (it submits nothing)."""
    from submitit import AutoExecutor
    from submitit.slurm.slurm import SlurmExecutor

    params = dict(params)
    init = {"folder": params.pop("submitit_folder"), "slurm_max_num_timeout": params.pop("max_num_timeout")}
    affinity = SlurmExecutor.__dict__["affinity"]
    SlurmExecutor.affinity = classmethod(lambda cls: 1)  # type: ignore[method-assign,assignment]
    try:
        executor = AutoExecutor(cluster="slurm", **init)
    finally:
        SlurmExecutor.affinity = affinity  # type: ignore[method-assign]
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    common = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in common else f"slurm_{k}": v for k, v in params.items()})
    slurm = executor._executor
    if jobs > 1:
        slurm.parameters["map_count"] = jobs  # one job array, as submitit submits a sweep
    return slurm


def preview(params: dict[str, Any], job_overrides: Sequence[Sequence[str]], initial_job_idx: int = 0) -> str:
    """The sbatch script a SLURM sweep of ``job_overrides`` would submit, and each array task's overrides."""
    slurm = _slurm_executor(params, len(job_overrides))
    script = slurm._make_submission_file_text(slurm._submitit_command_str, "preview")
    lines = [
        f"# ssd: SLURM preview: {len(job_overrides)} job(s), nothing submitted "
        f"(job name {slurm.parameters.get('job_name')!r})",
        script.rstrip(),
        "",
        "# each array task runs one sweep point:",
    ]
    task = "SLURM_ARRAY_TASK_ID" if len(job_overrides) > 1 else "job"
    for i, overrides in enumerate(job_overrides):
        lines.append(f"#   {task}={i} (sweep job #{initial_job_idx + i}): {' '.join(overrides)}")
    return "\n".join(lines)


def sweep_jobs(config: DictConfig) -> list[list[str]]:
    """The jobs Hydra's basic sweeper makes of the command line's overrides (``a=1,2 b=3,4``: four)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def launcher_params(config: DictConfig) -> dict[str, Any]:
    """The SLURM launcher's settings as hydra-submitit-launcher hands them to submitit (resolved)."""
    return {
        k: v
        for k, v in OmegaConf.to_container(config.hydra.launcher, resolve=True).items()
        if k != "_target_"
    }


def is_slurm_sweep(config: DictConfig) -> bool:
    target = str(OmegaConf.select(config, "hydra.launcher._target_", default="") or "")
    return target.endswith("submitit_launcher.SlurmLauncher")


class SlurmCheck(Callback):
    """Hydra callback (``hydra.callbacks.slurm``), before a sweep with ``hydra/launcher=slurm`` submits:
    ``+slurm_preview=true`` prints the sbatch script and exits 0; without sbatch/srun, exit 2 naming them."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not is_slurm_sweep(config):
            return
        if OmegaConf.select(config, PREVIEW_KEY, default=False):
            jobs = [
                [o for o in job if not o.lstrip("+~").startswith(f"{PREVIEW_KEY}=")]
                for job in sweep_jobs(config)
            ]
            print(preview(launcher_params(config), jobs))
            sys.exit(0)
        missing = missing_tools()
        if missing:
            print(missing_tools_message(missing), file=sys.stderr)
            sys.exit(2)
