"""One DDP process group per Hydra job, started by ssd itself (also inside multiruns).

Lightning's own launcher re-runs the script's argv in every child: under a Hydra multirun
the children inherit ``-m`` and the comma lists and start sweeps of their own (Lightning
#11300), and the next job of the sweep inherits the first job's environment and process
group (a ``devices=1`` job then trains on half the data). Here the job's own process is
rank 0 and starts ranks 1..N-1 as

    python -m ssd.run <this job's concrete overrides> hydra.run.dir=<this job's folder>

with the torch.distributed variables set, so Lightning treats the group as externally
launched. Afterwards it waits for the children, destroys the process group and restores
the environment, so the next job starts clean. Nothing is spawned where an external
launcher (SLURM through submitit, torchrun) already started every rank, nor for
``ddp_spawn`` (Lightning spawns those itself, from an already resolved config).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from ssd.config import ConfigError
from ssd.results import read_complete_results

log = logging.getLogger(__name__)

#: trainer strategies that Lightning starts by re-running the script (its subprocess launcher)
SCRIPT_LAUNCHED = (
    "ddp",
    "ddp_find_unused_parameters_true",
    "ddp_find_unused_parameters_false",
    "fsdp",
    "deepspeed",
)
#: variables that tell a rank ssd started what its rank 0 composed, and who rank 0 is
DIGEST_VAR = "SSD_CONFIG_DIGEST"
PARENT_VAR = "SSD_RANK0_PID"
#: seconds a rank-0 process stuck in a collective gets, after another rank died, before it is killed
ABORT_AFTER_S = 120.0


class RankFailed(RuntimeError):
    """Another rank of this job's process group exited with an error."""


def processes_per_node(trainer_cfg: Mapping[str, Any]) -> int:
    """How many processes ``trainer.devices`` asks for on each node (as Lightning counts them)."""
    devices = trainer_cfg.get("devices", 1)
    if isinstance(devices, int) and devices > 0:
        return devices
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return max(torch.cuda.device_count(), 1)
    if accelerator == "cpu" and devices in (-1, "-1"):
        return os.cpu_count() or 1
    return 1  # auto on CPU or MPS: one process


def needs_script_launch(trainer_cfg: Mapping[str, Any]) -> bool:
    """Whether Lightning would start this job's ranks by re-running the script."""
    strategy = str(trainer_cfg.get("strategy", "auto"))
    if strategy in SCRIPT_LAUNCHED:
        return True
    many = processes_per_node(trainer_cfg) > 1 or int(trainer_cfg.get("num_nodes", 1)) > 1
    return strategy == "auto" and many


def externally_launched() -> bool:
    """Every rank was started by a launcher (SLURM's srun, torchrun, ssd itself for a child rank)."""
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
    return hashlib.sha256(json.dumps(container, sort_keys=True, default=str).encode()).hexdigest()[:16]


def free_port() -> int:
    """A TCP port nobody listens on right now (one per job, so jobs never share a rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def hydra_quote(value: str) -> str:
    """``value`` as a quoted Hydra override value (job folders contain ``=`` and ``,``)."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"cannot quote {value!r} for a Hydra override (it contains both quote characters)")


def child_command(
    task_overrides: Sequence[str],
    run_dir: Path,
    rank: int,
    pinned: Mapping[str, Any],
    config_args: Sequence[str] = (),
) -> list[str]:
    """The command of local rank ``rank``: this job only (no ``-m``), in this job's folder."""
    pins = [f"{key}={hydra_quote(str(value))}" for key, value in pinned.items()]
    return [
        sys.executable,
        "-m",
        "ssd.run",
        *config_args,
        *task_overrides,
        *pins,
        f"hydra.run.dir={hydra_quote(str(run_dir))}",
        "hydra.output_subdir=null",  # rank 0 writes the job's .hydra/ and config files
        f"hydra.job.name=rank{rank}",  # this rank's log file: <run_dir>/rank<i>.log
    ]


def group_env(cfg: Mapping[str, Any], nprocs: int) -> dict[str, str]:
    """The torch.distributed variables of this node's ranks (LOCAL_RANK/RANK are set per rank)."""
    num_nodes = int(cfg["trainer"].get("num_nodes", 1))
    env = {
        "WORLD_SIZE": str(nprocs * num_nodes),
        "NODE_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
    }
    env["SSD_LAUNCH_ID"] = uuid.uuid4().hex  # the plan.json protocol of ssd.pipeline: one id per launch
    if num_nodes > 1:  # several nodes without SLURM/torchrun: this node's place comes from the user
        missing = [
            v for v in ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "SSD_LAUNCH_ID") if not os.environ.get(v)
        ]
        if missing:
            raise ConfigError(
                f"trainer.num_nodes={num_nodes} is not allowed without a cluster launcher: use hydra/launcher=slurm "
                f"or torchrun, or set {', '.join(missing)} identically (NODE_RANK per node) on every node"
            )
        env.update({v: os.environ[v] for v in ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "SSD_LAUNCH_ID")})
    return env


class LocalRanks:
    """Ranks 1..N-1 of one job on this node, and a watchdog that fails the job when one of them dies."""

    def __init__(self, commands: list[list[str]], envs: list[dict[str, str]], first_rank: int):
        self.procs = [subprocess.Popen(cmd, env=env) for cmd, env in zip(commands, envs, strict=True)]
        self.first_rank = first_rank
        self.failure: str | None = None
        self._done = threading.Event()
        self._main = threading.main_thread()
        self._interruptible = threading.current_thread() is self._main
        self._previous_handler: Any = None
        if self._interruptible:
            self._previous_handler = signal.signal(signal.SIGUSR1, self._raise_in_main)
        self._watchdog = threading.Thread(target=self._watch, name="ssd-rank-watchdog", daemon=True)
        self._watchdog.start()

    def _raise_in_main(self, signum: int, frame: Any) -> None:
        raise RankFailed(f"{self.failure}; this job is aborted")

    def _watch(self) -> None:
        while not self._done.wait(0.5):
            for offset, proc in enumerate(self.procs):
                code = proc.poll()
                if code not in (None, 0):
                    self.failure = f"rank {self.first_rank + offset} exited with code {code}"
                    log.error("%s; stopping the other ranks", self.failure)
                    self.kill()
                    if self._interruptible:
                        signal.pthread_kill(self._main.ident, signal.SIGUSR1)
                    if not self._done.wait(ABORT_AFTER_S):  # rank 0 is stuck in a collective
                        log.critical(
                            "rank 0 did not stop %.0fs after %s; killing it", ABORT_AFTER_S, self.failure
                        )
                        os._exit(1)
                    return

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 10
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def join(self, timeout_s: float = 600.0) -> None:
        """Wait for the ranks to finish the job; raise if one failed or hangs."""
        deadline = time.monotonic() + timeout_s
        for offset, proc in enumerate(self.procs):
            try:
                code = proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                self.kill()
                raise RankFailed(
                    f"rank {self.first_rank + offset} did not finish {timeout_s:.0f}s after rank 0"
                ) from None
            if code != 0:
                self.failure = self.failure or f"rank {self.first_rank + offset} exited with code {code}"
        if self.failure:
            raise RankFailed(self.failure)

    def close(self) -> None:
        self._done.set()
        if self._interruptible:
            signal.signal(signal.SIGUSR1, self._previous_handler)


def start_local_ranks(cfg: DictConfig, run_dir: Path) -> LocalRanks | None:
    """Set this process up as the node's first rank and start the others (None: nothing to start)."""
    from hydra.core.hydra_config import HydraConfig

    nprocs = processes_per_node(cfg.trainer)
    env = group_env(cfg, nprocs)
    node_rank = int(env["NODE_RANK"])
    os.environ.update({**env, "LOCAL_RANK": "0", "RANK": str(node_rank * nprocs)})
    if nprocs == 1:
        return None
    hc = HydraConfig.get()
    overrides = list(hc.overrides.task)
    config_args = [f"--config-name={hc.job.config_name}"] + [  # what the job was composed from
        f"--config-dir={source.path}"
        for source in hc.runtime.config_sources
        if source.provider == "command-line"
    ]
    pinned = {"sweep_name": cfg.sweep_name} if "sweep_name" in cfg else {}
    digest = config_digest(cfg)
    commands, envs = [], []
    for local in range(1, nprocs):
        commands.append(child_command(overrides, run_dir, local, pinned, config_args))
        envs.append(
            {
                **os.environ,
                "LOCAL_RANK": str(local),
                "RANK": str(node_rank * nprocs + local),
                DIGEST_VAR: digest,
                PARENT_VAR: str(os.getpid()),
            }
        )
    log.info(
        "job %s: starting %d more rank(s) on this node (world size %s, port %s)",
        run_dir.name,
        nprocs - 1,
        env["WORLD_SIZE"],
        env["MASTER_PORT"],
    )
    return LocalRanks(commands, envs, first_rank=node_rank * nprocs + 1)


def check_child_config(cfg: DictConfig) -> None:
    """A rank started by ssd must have composed exactly the config of its rank 0."""
    expected = os.environ.get(DIGEST_VAR)
    if expected and config_digest(cfg) != expected:
        raise RankFailed(
            f"rank {os.environ.get('RANK')} composed a different config than rank 0 (digest {config_digest(cfg)} != "
            f"{expected}); a value that depends on time or on the process (e.g. ${{now:...}}) differs between ranks"
        )


def die_with_parent(parent_pid: int) -> None:
    """Linux: this rank gets SIGTERM when its rank 0's process dies, even by SIGKILL, so no rank
    outlives its job (waiting for a plan.json or a collective that never comes)."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:
        raise RankFailed(f"rank 0 (pid {parent_pid}) exited before rank {os.environ.get('RANK')} started")


def destroy_process_group() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


@contextlib.contextmanager
def distributed_job(cfg: DictConfig, run_dir: Path) -> Iterator[None]:
    """Run one Hydra job's body as rank 0 of its own DDP group when its config asks for one.

    Whatever the job does, afterwards the process group is gone and ``os.environ`` and the
    torch thread count are as before, so the next job of a sweep starts clean.
    """
    environ, threads = dict(os.environ), torch.get_num_threads()
    ranks: LocalRanks | None = None
    try:
        if DIGEST_VAR in os.environ:  # a rank started by ssd.launch
            if PARENT_VAR in os.environ:
                die_with_parent(int(os.environ[PARENT_VAR]))
            check_child_config(cfg)
        complete = cfg.get("resume", True) and read_complete_results(run_dir) is not None
        if needs_script_launch(cfg.trainer) and not externally_launched() and not complete:
            ranks = start_local_ranks(cfg, run_dir)
        yield
        if ranks is not None:
            ranks.join()
    except BaseException:
        if ranks is not None:
            ranks.kill()
        raise
    finally:
        if ranks is not None:
            ranks.close()
        destroy_process_group()
        os.environ.clear()
        os.environ.update(environ)
        torch.set_num_threads(threads)
