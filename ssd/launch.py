"""How a Hydra job gets its processes: torchrun starts a job's DDP ranks; all ranks share one folder.

Lightning's own ``ddp`` launcher re-runs the script's argv in every child: under a Hydra
multirun the children inherit ``-m`` and the comma lists and start sweeps of their own
(Lightning #11300), and the next job of the sweep inherits the first job's environment and
process group (a ``devices=1`` job then trains on half the data). So a job that asks for
several processes, when no launcher started them, is run by torchrun as

    python -m torch.distributed.run --standalone --nproc-per-node=N \\
        -m ssd.run <this job's concrete overrides> hydra.run.dir=<this job's folder>

and this process (the Hydra job) waits for it and returns the job's ``results.json``.
torchrun picks the port, watches the ranks and stops all of them when one fails. Where a
launcher already started every rank (torchrun, SLURM's srun, the SLURM launcher) the job runs
in this process; ``ddp_spawn`` too (Lightning spawns those from an already resolved config).
This module only decides whether to start ranks (``starts_ranks``) and starts them
(``launch_ranks``); each rank runs the job as ``ssd.run`` runs any job.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from ssd.config.errors import ConfigError
from ssd.console import route_rank_logs
from ssd.dist import agree_on_run_dir, launch_rank, launch_world_size
from ssd.results import json_digest, read_json

log = logging.getLogger(__name__)

#: trainer strategies that Lightning starts by re-running the script (its subprocess launcher)
SCRIPT_LAUNCHED = (
    "ddp",
    "ddp_find_unused_parameters_true",
    "ddp_find_unused_parameters_false",
    "fsdp",
    "deepspeed",
)
#: variable that tells each rank what its launching job composed (every rank must compose the same)
DIGEST_VAR = "SSD_CONFIG_DIGEST"
#: variable that gives torchrun's ranks their job's W&B group (theirs is a single run, the job's may be a sweep)
GROUP_VAR = "SSD_RUN_GROUP"
#: the exit status (and results.json ``exit_code``) of a config error, as ssd.run uses it
EXIT_CONFIG_ERROR = 2
#: seconds torchrun gets to stop its ranks after this job is interrupted
STOP_GRACE_S = 60.0


class RankFailed(RuntimeError):
    """A rank of this job's process group failed, or composed a different job."""


def processes_per_node(trainer_cfg: Mapping[str, Any]) -> int:
    """How many processes ``trainer.devices`` asks for on each node (as Lightning counts them)."""
    devices = trainer_cfg["devices"]
    if isinstance(devices, int) and devices > 0:
        return devices
    accelerator = str(trainer_cfg["accelerator"])
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return max(torch.cuda.device_count(), 1)
    if accelerator == "cpu" and devices in (-1, "-1"):
        return os.cpu_count() or 1
    return 1  # auto on CPU or MPS: one process


def needs_script_launch(trainer_cfg: Mapping[str, Any]) -> bool:
    """Whether Lightning would start this job's ranks by re-running the script."""
    strategy = str(trainer_cfg["strategy"])
    if strategy in SCRIPT_LAUNCHED:
        return True
    many = processes_per_node(trainer_cfg) > 1 or int(trainer_cfg["num_nodes"]) > 1
    return strategy == "auto" and many


def starts_ranks(trainer_cfg: Mapping[str, Any]) -> bool:
    """Whether this job must start its ranks with torchrun: it asks for processes no launcher started."""
    return needs_script_launch(trainer_cfg) and not externally_launched()


def externally_launched() -> bool:
    """Every rank was started by a launcher (torchrun, SLURM's srun, LSF)."""
    from lightning.fabric.plugins.environments import (
        LSFEnvironment,
        SLURMEnvironment,
        TorchElasticEnvironment,
    )

    if "LOCAL_RANK" in os.environ:
        return True
    return SLURMEnvironment.detect() or TorchElasticEnvironment.detect() or LSFEnvironment.detect()


def config_digest(cfg: DictConfig | Mapping[str, Any]) -> str:
    """A hash of the resolved job config: every rank must compute the same one."""
    container = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    return json_digest(container)


def hydra_quote(value: str) -> str:
    """``value`` as a quoted Hydra override value (job folders contain ``=`` and ``,``)."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"cannot quote {value!r} for a Hydra override (it contains both quote characters)")


def torchrun_command(
    task_overrides: Sequence[str],
    run_dir: Path,
    nprocs: int,
    pinned: Mapping[str, Any],
    config_args: Sequence[str] = (),
) -> list[str]:
    """torchrun running this job only (no ``-m``, no sweep) in this job's folder on ``nprocs`` ranks."""
    pins = [f"{key}={hydra_quote(str(value))}" for key, value in pinned.items()]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # its own store on a port it holds: no port race between jobs
        f"--nproc-per-node={nprocs}",
        "--max-restarts=0",  # a failed rank fails the job; re-running the job resumes it
        "-m",
        "ssd.run",
        *config_args,
        *task_overrides,
        *pins,
        f"hydra.run.dir={hydra_quote(str(run_dir))}",
        "hydra.output_subdir=null",  # this job's .hydra/ is already written
    ]


#: (Linux) runs a command so that it gets SIGTERM when this process dies, even by SIGKILL
#: (PR_SET_PDEATHSIG survives exec): torchrun then stops its ranks, so none outlives its job.
#: Set in the child itself rather than in a ``preexec_fn``, which is unsafe in a threaded process.
WATCH_PARENT = (
    "import ctypes, os, signal, sys; "
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM); "  # 1 = PR_SET_PDEATHSIG
    "os.getppid() == int(sys.argv[1]) or sys.exit('the job process exited before its ranks started'); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)


def run_torchrun(cmd: Sequence[str], env: Mapping[str, str], what: str) -> None:
    """Run a torchrun command to its end; raise ``RankFailed`` if a rank failed.

    If this process is interrupted, torchrun gets SIGTERM (it stops its ranks) and then SIGKILL
    after ``STOP_GRACE_S``; if it dies, torchrun gets SIGTERM (Linux, ``WATCH_PARENT``).
    """
    if sys.platform.startswith("linux"):
        cmd = [sys.executable, "-c", WATCH_PARENT, str(os.getpid()), *cmd]
    proc = subprocess.Popen(list(cmd), env=dict(env))
    try:
        code = proc.wait()
    except BaseException:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    if code != 0:
        raise RankFailed(f"{what}: torchrun exited with code {code} (a rank failed; its error is above)")


def launch_ranks(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Run this Hydra job on ``trainer.devices`` ranks started by torchrun; return its results."""
    from hydra.core.hydra_config import HydraConfig

    if int(cfg.trainer.num_nodes) > 1:
        raise ConfigError(
            f"trainer.num_nodes={cfg.trainer.num_nodes} is not allowed without a cluster launcher: start "
            "every node with torchrun (--nnodes, see README 'torchrun') or use hydra/launcher=slurm"
        )
    nprocs = processes_per_node(cfg.trainer)
    hc = HydraConfig.get()
    config_args = [f"--config-name={hc.job.config_name}"] + [  # what the job was composed from
        f"--config-dir={source.path}"
        for source in hc.runtime.config_sources
        if source.provider == "command-line"
    ]
    searchpath = [o for o in hc.overrides.hydra if o.startswith("hydra.searchpath=")]  # user config folders
    pinned = {"sweep_name": cfg.sweep_name} if "sweep_name" in cfg else {}
    cmd = torchrun_command([*searchpath, *hc.overrides.task], run_dir, nprocs, pinned, config_args)
    env = {k: v for k, v in os.environ.items() if k != "SSD_LAUNCH_ID"}  # torchrun's ranks derive theirs
    env[DIGEST_VAR] = config_digest(cfg)
    env[GROUP_VAR] = job_group(hc, run_dir)
    log.info(
        "job %s: torchrun starts %d ranks (rank 0 logs here, rank i to rank<i>.log)", run_dir.name, nprocs
    )
    try:
        run_torchrun(cmd, env, f"job {run_dir}")
    except RankFailed:
        failed = read_json(run_dir / "results.json") or {}
        error = str(failed.get("error", ""))
        if failed.get("exit_code") == EXIT_CONFIG_ERROR or error.startswith("ConfigError: "):
            raise ConfigError(
                error.removeprefix("ConfigError: ")
            ) from None  # the job's error, as in one process
        raise
    results = read_json(run_dir / "results.json")
    if results is None:
        raise RankFailed(f"job {run_dir}: its ranks finished but wrote no results.json")
    return results


def check_rank_config(cfg: DictConfig) -> None:
    """A rank started by ``launch_ranks`` must have composed exactly the config of its job."""
    expected = os.environ.get(DIGEST_VAR)
    if expected and config_digest(cfg) != expected:
        raise RankFailed(
            f"rank {os.environ.get('RANK')} composed a different config than its job (digest {config_digest(cfg)} "
            f"!= {expected}); a value that depends on time or on the process (e.g. ${{now:...}}) differs"
        )


# --------------------------------------------------------------------------- one folder for all ranks


def _only_hydra_files(folder: Path) -> bool:
    """``folder`` holds nothing but what Hydra writes when a job starts (``.hydra/``, ``*.log``)."""
    return all(p.name == ".hydra" or p.suffix == ".log" for p in folder.iterdir())


def remove_stray_run_dir(stray: Path, run_dir: Path) -> None:
    """Remove the folder this rank's Hydra made before the ranks agreed on ``run_dir``, if it holds
    only Hydra's start-up files; also its sweep folder, if that holds nothing else."""
    if stray == run_dir or not stray.is_dir() or not _only_hydra_files(stray):
        return
    shutil.rmtree(stray, ignore_errors=True)
    parent = stray.parent
    if parent != run_dir.parent and parent.is_dir():
        with contextlib.suppress(OSError):
            if all(p.name == "multirun.yaml" for p in parent.iterdir()):
                shutil.rmtree(parent, ignore_errors=True)


def job_group(hydra_cfg: Any, run_dir: Path) -> str:
    """The W&B group of the job in ``run_dir``: its sweep folder's name in a multirun, else
    ``<run_name>/<time>``; what the launching job said for ranks torchrun started for it."""
    from hydra.types import RunMode

    if os.environ.get(GROUP_VAR):
        return os.environ[GROUP_VAR]
    if hydra_cfg.mode == RunMode.MULTIRUN:  # the sweep folder: above the job's subdir
        return run_dir.parents[len(Path(hydra_cfg.sweep.subdir).parts) - 1].name
    return f"{run_dir.parent.name}/{run_dir.name}"


def shared_run_dir(hydra_cfg: Any, log_dir: Path) -> Path:
    """This job's folder, identical on every rank: rank 0's when a launcher started several.

    Ranks 1.. then log to ``<folder>/rank<i>.log`` (console: warnings only) and remove the
    folder their own Hydra made, if it differs.
    """
    from hydra.types import RunMode

    proposed = Path(hydra_cfg.runtime.output_dir)
    if launch_world_size() <= 1:
        return proposed
    job = str(hydra_cfg.job.num) if hydra_cfg.mode == RunMode.MULTIRUN else "run"
    run_dir = agree_on_run_dir(proposed, job, log_dir)
    rank = launch_rank()
    if rank != 0:
        route_rank_logs(run_dir, rank)
        if run_dir != proposed:
            log.info("rank %d: using rank 0's folder %s instead of %s", rank, run_dir, proposed)
            remove_stray_run_dir(proposed, run_dir)
    return run_dir
