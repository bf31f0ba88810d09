"""DDP inside Hydra sweeps (ssd.launch), on CPU with gloo.

Real ``trainer.strategy=ddp`` only works through a subprocess ``python -m ssd.run`` (inside
pytest, a DDP child would re-launch pytest), so the sweep runs once per module and the
tests below read what it left on disk.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from ssd import launch
from ssd.launch import (
    LocalRanks,
    RankFailed,
    child_command,
    distributed_job,
    needs_script_launch,
    processes_per_node,
)
from ssd.run import train
from tests.helpers import ONE_THREAD, REPO, SMALL, compose_cfg, read_results, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see tests.helpers.ONE_THREAD

N_TRAIN, N_TEST = 64, 33  # an odd test set: two ranks get unequal, unpadded shards
DDP_RUN = [*SMALL, f"data.train={N_TRAIN}", f"data.test={N_TEST}", "noise.eval_levels=[0,0.1,0.3]"]


# --------------------------------------------------------------------------- a real DDP sweep


@pytest.fixture(scope="module")
def mixed_sweep(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One sweep: devices 2,1 x seeds 0,1 -> two 2-process DDP jobs, then two single-process jobs.

    The sweep keeps its default (timestamp) name: a child rank that started a sweep of its own
    would leave a second sweep folder.
    """
    tmp = tmp_path_factory.mktemp("ddp_sweep")
    args = [
        "hydra.mode=MULTIRUN",
        *DDP_RUN,
        "trainer.strategy=auto",
        "trainer.devices=2,1",
        "seed=0,1",
        "hydra.sweep.subdir=job${hydra.job.num}",
    ]
    start = time.perf_counter()
    proc = run_cli(args, tmp, timeout=300, env=ONE_THREAD)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    sweeps = list((tmp / "outputs" / "multiruns").iterdir())
    assert len(sweeps) == 1, f"stray sweep folders: {sweeps}"
    sweep = sweeps[0]
    jobs = {}
    for job in sorted(sweep.glob("job*")):
        res = read_results(job)
        jobs[(res["seed"], res["config"]["trainer"]["devices"])] = {"dir": job, "results": res}
    return {"tmp": tmp, "sweep": sweep, "jobs": jobs, "seconds": time.perf_counter() - start}


@pytest.mark.ddp
def test_every_sweep_job_runs_its_own_group_over_the_full_data(mixed_sweep: dict[str, Any]) -> None:
    jobs = mixed_sweep["jobs"]
    assert set(jobs) == {(0, 2), (0, 1), (1, 2), (1, 1)}
    n_train = N_TRAIN  # val_size=0: every training image, once per epoch, whatever the world size
    for (_, devices), job in jobs.items():
        res = job["results"]
        assert res["status"] == "complete"
        main = res["stages"]["main"]
        assert main["world_size"] == devices
        assert main["train_samples_per_epoch"] == n_train
        assert 0.0 <= res["test_acc"] <= 1.0
        # one log per process that ran this job: nothing else ran it (Lightning's launcher re-runs every job in its child)
        assert sorted(p.name for p in job["dir"].glob("*.log")) == (
            ["rank1.log", "run.log"] if devices == 2 else ["run.log"]
        )


@pytest.mark.ddp
def test_sweep_leaves_no_stray_folders(mixed_sweep: dict[str, Any]) -> None:
    outputs = mixed_sweep["tmp"] / "outputs"
    assert sorted(p.name for p in outputs.iterdir()) == ["multiruns"]  # no child started a run of its own
    assert [p.name for p in (outputs / "multiruns").iterdir()] == [mixed_sweep["sweep"].name]  # nor a sweep
    assert sorted(p.name for p in mixed_sweep["sweep"].iterdir()) == [
        "job0",
        "job1",
        "job2",
        "job3",
        "multirun.yaml",
    ]


@pytest.mark.ddp
def test_ranks_agree_on_the_job_config(mixed_sweep: dict[str, Any]) -> None:
    for job in mixed_sweep["jobs"].values():
        saved = OmegaConf.load(job["dir"] / "config.resolved.yaml")
        assert saved.seed == job["results"]["seed"]
        assert saved.sweep_name == mixed_sweep["sweep"].name


@pytest.mark.ddp
def test_test_accuracy_of_the_same_weights_is_the_same_on_one_and_two_processes(
    mixed_sweep: dict[str, Any], tmp_path: Path
) -> None:
    """Fixed per-sample eval noise + unpadded sharding: 2 processes measure what 1 measures."""
    for seed in (0, 1):
        two = mixed_sweep["jobs"][(seed, 2)]
        net = two["dir"] / "main" / "net.pt"
        cfg = compose_cfg([*DDP_RUN, f"seed={seed}", "eval_only=true", f"init_from={net}"], tmp_path)
        one = train(cfg, tmp_path / f"eval{seed}", "g")
        assert (
            one["stages"]["main"]["world_size"] == 1
            and one["stages"]["main"]["train_samples_per_epoch"] is None
        )
        for key in ("test_acc", "clean_acc", "robustness"):
            assert one[key] == two["results"][key], (seed, key)


@pytest.mark.slow
@pytest.mark.ddp
def test_eval_only_sweep_over_devices_gives_identical_metrics(
    mixed_sweep: dict[str, Any], tmp_path: Path
) -> None:
    """The same, the other way round: evaluate one set of weights in a sweep over 1 and 2 processes."""
    net = mixed_sweep["jobs"][(0, 1)]["dir"] / "main" / "net.pt"
    args = [
        "hydra.mode=MULTIRUN",
        *DDP_RUN,
        "eval_only=true",
        f"init_from={net}",
        "trainer.devices=1,2",
        "sweep_name=eval",
        "hydra.sweep.subdir=job${hydra.job.num}",
    ]
    proc = run_cli(args, tmp_path, timeout=300, env=ONE_THREAD)
    assert proc.returncode == 0, proc.stderr[-4000:]
    one, two = (read_results(tmp_path / "outputs" / "multiruns" / "eval" / f"job{i}") for i in (0, 1))
    assert (one["stages"]["main"]["world_size"], two["stages"]["main"]["world_size"]) == (1, 2)
    reference = mixed_sweep["jobs"][(0, 1)]["results"]
    for key in ("test_acc", "clean_acc", "robustness"):
        assert one[key] == two[key] == reference[key], key


# --------------------------------------------------------------------------- launch decisions (no processes)


@pytest.mark.parametrize(
    ("trainer", "expected"),
    [
        ({"strategy": "auto", "devices": 1, "accelerator": "cpu"}, False),
        ({"strategy": "auto", "devices": 2, "accelerator": "cpu"}, True),
        ({"strategy": "ddp", "devices": 1, "accelerator": "cpu"}, True),  # Lightning would still set env vars
        (
            {"strategy": "ddp_spawn", "devices": 2, "accelerator": "cpu"},
            False,
        ),  # Lightning spawns those itself
        ({"strategy": "auto", "devices": "auto", "accelerator": "cpu"}, False),
        ({"strategy": "auto", "devices": 1, "num_nodes": 2, "accelerator": "cpu"}, True),
    ],
)
def test_which_jobs_ssd_launches(trainer: dict[str, Any], expected: bool) -> None:
    assert needs_script_launch(trainer) is expected


def test_processes_per_node() -> None:
    assert processes_per_node({"devices": 4, "accelerator": "gpu"}) == 4
    assert processes_per_node({"devices": "auto", "accelerator": "cpu"}) == 1
    assert processes_per_node({"devices": -1, "accelerator": "cpu"}) == os.cpu_count()
    assert processes_per_node({"devices": "auto", "accelerator": "gpu"}) == max(torch.cuda.device_count(), 1)


def test_child_command_is_one_job_in_this_jobs_folder() -> None:
    run_dir = Path("/sweeps/s1/noise.sigma=0.1,seed=0,strategy=vanilla")
    cmd = child_command(
        ["noise.sigma=0.1", "seed=0", "strategy=vanilla"],
        run_dir,
        1,
        {"sweep_name": "s1"},
        ["--config-name=config"],
    )
    assert (
        cmd[:4] == [sys.executable, "-m", "ssd.run", "--config-name=config"]
        and "-m" not in cmd[3:]
        and "--multirun" not in cmd
    )
    parsed = {o.key_or_group: o.value() for o in OverridesParser.create().parse_overrides(cmd[4:])}
    assert parsed["hydra.run.dir"] == str(run_dir)  # commas and '=' survive as one value, not a sweep
    assert parsed["hydra.output_subdir"] is None and parsed["hydra.job.name"] == "rank1"
    assert parsed["sweep_name"] == "s1" and parsed["seed"] == 0


SLURM_TASK_ENV = {
    "SLURM_NTASKS": "2",
    "SLURM_JOB_NAME": "ssd",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
    "SLURM_NODEID": "0",
    "SLURM_JOB_ID": "42",
}


@pytest.mark.parametrize(
    "env", [SLURM_TASK_ENV, {"LOCAL_RANK": "0", "WORLD_SIZE": "2"}, {"TORCHELASTIC_RUN_ID": "x"}]
)
def test_nothing_is_spawned_under_an_external_launcher(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(
        launch, "start_local_ranks", lambda *a: pytest.fail("spawned ranks under an external launcher")
    )
    cfg = compose_cfg([*DDP_RUN, "trainer.strategy=ddp", "trainer.devices=2"], tmp_path)
    assert launch.externally_launched()
    with distributed_job(cfg, tmp_path / "run"):
        pass


def test_a_job_leaves_environment_and_threads_as_it_found_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before_env, before_threads = dict(os.environ), torch.get_num_threads()
    monkeypatch.setattr(
        launch,
        "start_local_ranks",
        lambda cfg, run_dir: os.environ.update({"LOCAL_RANK": "0", "WORLD_SIZE": "2"}),
    )
    cfg = compose_cfg([*DDP_RUN, "trainer.strategy=ddp", "trainer.devices=2"], tmp_path)
    with distributed_job(cfg, tmp_path / "run"):
        os.environ["OMP_NUM_THREADS"] = "1"  # what Lightning does for DDP on CPU
        torch.set_num_threads(before_threads + 1)
    assert dict(os.environ) == before_env and torch.get_num_threads() == before_threads


def test_a_child_composing_a_different_config_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = compose_cfg(DDP_RUN, tmp_path)
    monkeypatch.setenv(launch.DIGEST_VAR, "0" * 16)
    with pytest.raises(RankFailed, match="different config"), distributed_job(cfg, tmp_path / "run"):
        pass


def test_a_dying_rank_interrupts_rank_zero() -> None:
    """Rank 0 must not wait forever for a rank that crashed: the job fails within seconds."""
    crash = [sys.executable, "-c", "import sys, time; time.sleep(0.5); sys.exit(3)"]
    hang = [sys.executable, "-c", "import time; time.sleep(60)"]
    ranks = LocalRanks([crash, hang], [dict(os.environ)] * 2, first_rank=1)
    start = time.monotonic()
    try:
        with pytest.raises(RankFailed, match="rank 1 exited with code 3"):
            time.sleep(30)  # rank 0 busy with its job
    finally:
        ranks.close()
    assert time.monotonic() - start < 20
    assert ranks.procs[1].poll() == -signal.SIGTERM  # the other rank was stopped


def test_a_rank_dies_with_its_rank_zero(tmp_path: Path) -> None:
    """Even a SIGKILLed rank 0 leaves no orphaned rank behind (Linux: PR_SET_PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    pid_file = tmp_path / "child.pid"
    child = f"import os, time; from ssd.launch import die_with_parent; die_with_parent(os.getppid()); open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    parent = (
        f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {child!r}]); time.sleep(120)"
    )
    rank0 = subprocess.Popen([sys.executable, "-c", parent], cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the child rank did not start"
            time.sleep(0.2)
        child_pid = int(pid_file.read_text())
    finally:
        rank0.kill()
        rank0.wait()
    deadline = time.monotonic() + 10
    while _alive(child_pid):
        assert time.monotonic() < deadline, "the rank outlived its rank 0"
        time.sleep(0.1)


def test_a_rank_whose_rank_zero_is_gone_does_not_start() -> None:
    with pytest.raises(RankFailed, match="exited before"):
        launch.die_with_parent(parent_pid=os.getppid() + 1_000_000)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split()[2] == "Z")  # a zombie has exited


@pytest.mark.slow
@pytest.mark.ddp
def test_ddp_spawn_still_works(tmp_path: Path) -> None:
    proc = run_cli(
        [*DDP_RUN, "trainer.strategy=ddp_spawn", "trainer.devices=2"], tmp_path, timeout=300, env=ONE_THREAD
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    (run_dir,) = [p.parent for p in (tmp_path / "outputs").rglob("results.json")]
    res = read_results(run_dir)
    assert res["status"] == "complete" and res["stages"]["main"]["world_size"] == 2
