"""Process-rank facts, and decisions rank 0 shares before torch.distributed is initialised.

Every rank of a job composes its own Hydra config, so anything that depends on time (the
``${now:...}`` in run and sweep folders) can differ between ranks, and only rank 0 may make
decisions such as a cache look-up. Rank 0 decides; the others read its decision:

- the run folder (``agree_on_run_dir``): through torchrun's agent store where torchrun started
  the ranks, else through a file named by the SLURM job in the shared log folder;
- stage plans (``wait_for_decision``): through ``plan.json`` files in the run folder.

A rank waiting for a decision that never comes (rank 0 crashed, or runs in another folder)
fails after ``decision_timeout_s()`` — minutes, not the days a stage lock may take.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

from ssd.results import read_json, write_json_atomic

log = logging.getLogger(__name__)

#: environment variable: seconds a rank waits for a decision of rank 0 (default DEFAULT_DECISION_TIMEOUT_S)
DECISION_TIMEOUT_VAR = "SSD_DECISION_TIMEOUT_S"
DEFAULT_DECISION_TIMEOUT_S = 300.0
#: the folder, under the log folder, of run-folder decisions shared through files (SLURM without torchrun)
LAUNCHES_DIR = ".launches"


def launch_rank() -> int:
    """Global rank of this process as set by the launcher (ssd, Lightning, torchrun or SLURM).

    Before Lightning initialises the process group, this is the only way to know which
    process decides things (cache look-ups, file writes) for the whole DDP group.
    """
    for var in ("RANK", "SLURM_PROCID"):
        if os.environ.get(var) not in (None, ""):
            return int(os.environ[var])
    if os.environ.get("NODE_RANK", "0") not in ("", "0"):
        return 1  # some rank on another node: not the decider
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def is_launch_rank_zero() -> bool:
    return launch_rank() == 0


def launch_world_size() -> int:
    """How many processes the launcher started for this job (1 where nothing says otherwise)."""
    if os.environ.get("WORLD_SIZE"):
        return int(os.environ["WORLD_SIZE"])
    if os.environ.get("SLURM_PROCID") not in (None, "") and os.environ.get("SLURM_NTASKS"):
        return int(os.environ["SLURM_NTASKS"])
    return 1


def decision_timeout_s() -> float:
    """Seconds a rank waits for rank 0 to decide something that needs no lock (``SSD_DECISION_TIMEOUT_S``)."""
    value = os.environ.get(DECISION_TIMEOUT_VAR, "")
    if value == "":
        return DEFAULT_DECISION_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise ValueError(f"{DECISION_TIMEOUT_VAR}={value!r} is not allowed: a number of seconds > 0")
    return seconds


def _no_decision(what: str, where: str, timeout_s: float) -> TimeoutError:
    return TimeoutError(
        f"rank {launch_rank()}: rank 0 did not decide {what} within {timeout_s:.0f}s ({where}). Rank 0 "
        f"failed (see its log), runs another job, or its files are not visible here (the log and cache "
        f"folders must be on a file system every node shares). If rank 0 is only slow, raise "
        f"{DECISION_TIMEOUT_VAR}."
    )


def wait_for_json(path: Path, timeout_s: float = 3600.0, poll_s: float = 0.2) -> dict[str, Any]:
    """Block until rank 0 has written ``path`` (a decision shared with the other ranks)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        data = read_json(path)
        if data is not None:
            return data
        time.sleep(poll_s)
    raise TimeoutError(f"rank {launch_rank()}: rank 0 did not write {path} within {timeout_s:.0f}s")


def wait_for_decision(
    path: Path,
    launch: str,
    timeout_s: float | None = None,
    pending_timeout_s: float = 7 * 24 * 3600.0,
    poll_s: float = 0.2,
    what: str = "its plan",
) -> dict[str, Any]:
    """Rank 0's decision for this launch in ``path`` (a JSON object whose ``"launch"`` is ``launch``).

    A file of another launch is stale and ignored. Without a decision after ``timeout_s``
    (default ``decision_timeout_s()``) this raises ``TimeoutError``. A decision with
    ``"pending": "<why>"`` says rank 0 is alive but blocked (e.g. on another job's stage
    lock): the deadline then becomes ``pending_timeout_s`` from that moment. ``what``: the
    decision, as the timeout message names it.
    """
    timeout_s = decision_timeout_s() if timeout_s is None else timeout_s
    deadline, pending = time.monotonic() + timeout_s, None
    while True:
        data = read_json(path)
        if data is not None and data.get("launch") == launch:
            if not data.get("pending"):
                return data
            if pending is None:
                pending = str(data["pending"])
                deadline = time.monotonic() + pending_timeout_s
                log.info(
                    "rank %d: rank 0 is %s; waiting up to %.0fs", launch_rank(), pending, pending_timeout_s
                )
        if time.monotonic() > deadline:
            where = f"{path}: {pending or 'no decision of this launch'}"
            raise _no_decision(what, where, pending_timeout_s if pending else timeout_s)
        time.sleep(poll_s)


# --------------------------------------------------------------------------- the run folder


def _agent_store(timeout_s: float) -> Any | None:
    """torchrun's TCP store (its agent hosts it for the workers), or None outside torchrun."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or not os.environ.get("MASTER_PORT"):
        return None
    from torch.distributed import TCPStore

    return TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        is_master=False,
        timeout=timedelta(seconds=timeout_s),
    )


def _file_launch_key() -> str | None:
    """A name every rank of this launch computes alike and no other launch shares (files need one)."""
    if os.environ.get("SSD_LAUNCH_ID"):
        return os.environ["SSD_LAUNCH_ID"]
    if os.environ.get("SLURM_JOB_ID"):
        step = os.environ.get("SLURM_STEP_ID", "")
        return f"slurm-{os.environ['SLURM_JOB_ID']}-{step}-{os.environ.get('SLURM_RESTART_COUNT', '0')}"
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "none")
    if run_id != "none":  # torchrun without its agent store (--rdzv-id given, so launches differ)
        where = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
        return f"torchrun-{run_id}-{where}-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    return None


def agree_on_run_dir(proposed: Path, job: str, log_dir: Path, timeout_s: float | None = None) -> Path:
    """Rank 0's run folder, on every rank of a launch that started several processes.

    ``proposed`` is the folder this rank's Hydra composed; ``job`` names the job within the
    launch (a sweep runs several); ``log_dir`` is where decision files go when torchrun's store
    is not there (it must be shared by all nodes, as the run folders are).
    """
    if launch_world_size() <= 1:
        return proposed
    timeout_s = decision_timeout_s() if timeout_s is None else timeout_s
    key = f"ssd/run_dir/{job}"
    store = _agent_store(timeout_s)
    if store is not None:
        if is_launch_rank_zero():
            store.set(key, str(proposed))
            return proposed
        try:
            return Path(store.get(key).decode())
        except RuntimeError as err:  # torch's DistStoreError: the key did not come in time
            raise _no_decision("the run folder", f"torchrun's store: {err}", timeout_s) from err
    launch = _file_launch_key()
    if launch is None:
        log.warning(
            "rank %d: this launcher gives ranks no shared launch id, so they cannot agree on a run folder; "
            "using %s (set hydra.run.dir to the same folder on every rank)",
            launch_rank(),
            proposed,
        )
        return proposed
    path = Path(log_dir) / LAUNCHES_DIR / f"{launch}-{job.replace('/', '_')}.json"
    if is_launch_rank_zero():
        write_json_atomic(path, {"launch": launch, "run_dir": str(proposed)})
        return proposed
    return Path(wait_for_decision(path, launch, timeout_s, timeout_s, what="the run folder")["run_dir"])


def destroy_process_group() -> None:
    """End this process's torch.distributed group, if it has one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
