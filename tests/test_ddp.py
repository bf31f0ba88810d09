"""DDP inside Hydra sweeps (ssd.launch: torchrun starts each job's ranks), torchrun as the
user's launcher, and one run folder for all ranks (ssd.dist), on CPU with gloo.

Real ``trainer.strategy=ddp`` only works through a subprocess ``python -m ssd.run`` (inside
pytest, a DDP child would re-launch pytest), so the sweep runs once per module and the
tests below read what it left on disk.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from ssd import launch
from ssd import run as ssd_run
from ssd.config.errors import ConfigError
from ssd.dist import DECISION_TIMEOUT_VAR, agree_on_run_dir, decision_timeout_s, wait_for_decision
from ssd.launch import RankFailed, needs_script_launch, processes_per_node, torchrun_command
from ssd.results import write_json_atomic
from ssd.run import execute, isolated_job, run_config
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
        # one stage cache per device count: devices are not part of a stage's key, so the devices=1 jobs
        # would otherwise take the networks the devices=2 jobs trained, and they must train here
        f"paths.cache_dir={tmp}/cache-devices${{trainer.devices}}",
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
        one = run_config(cfg, tmp_path / f"eval{seed}", "g")
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
        ({"strategy": "auto", "devices": 1, "num_nodes": 1, "accelerator": "cpu"}, False),
        ({"strategy": "auto", "devices": 2, "num_nodes": 1, "accelerator": "cpu"}, True),
        (
            {"strategy": "ddp", "devices": 1, "num_nodes": 1, "accelerator": "cpu"},
            True,
        ),  # Lightning sets env vars
        (
            {"strategy": "ddp_spawn", "devices": 2, "num_nodes": 1, "accelerator": "cpu"},
            False,
        ),  # Lightning spawns
        ({"strategy": "auto", "devices": "auto", "num_nodes": 1, "accelerator": "cpu"}, False),
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


def test_torchrun_command_is_one_job_in_this_jobs_folder() -> None:
    run_dir = Path("/sweeps/s1/noise.sigma=0.1,seed=0,strategy=vanilla")
    cmd = torchrun_command(
        ["noise.sigma=0.1", "seed=0", "strategy=vanilla"],
        run_dir,
        2,
        {"sweep_name": "s1"},
        ["--config-name=config"],
    )
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    module = cmd.index("ssd.run")
    assert cmd[module - 1] == "-m" and {"--standalone", "--nproc-per-node=2"} <= set(cmd[:module])
    args = cmd[module + 1 :]
    assert args[0] == "--config-name=config" and "-m" not in args and "--multirun" not in args
    parsed = {o.key_or_group: o.value() for o in OverridesParser.create().parse_overrides(args[1:])}
    assert parsed["hydra.run.dir"] == str(run_dir)  # commas and '=' survive as one value, not a sweep
    assert parsed["hydra.output_subdir"] is None
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
        launch, "launch_ranks", lambda *a: pytest.fail("spawned ranks under an external launcher")
    )
    monkeypatch.setattr(ssd_run, "run_prepared", lambda *a: {"ran": "here"})
    cfg = compose_cfg([*DDP_RUN, "trainer.strategy=ddp", "trainer.devices=2"], tmp_path)
    assert launch.externally_launched()
    assert execute(cfg, tmp_path / "run", "g") == (0, {"ran": "here"})


def test_a_job_that_needs_ranks_goes_to_torchrun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launch, "launch_ranks", lambda cfg, run_dir: {"ran": "torchrun", "dir": run_dir})
    monkeypatch.setattr(ssd_run, "run_prepared", lambda *a: pytest.fail("ran the job here"))
    cfg = compose_cfg([*DDP_RUN, "trainer.strategy=ddp", "trainer.devices=2"], tmp_path)
    assert execute(cfg, tmp_path / "run", "g") == (0, {"ran": "torchrun", "dir": tmp_path / "run"})


def test_a_job_leaves_environment_and_threads_as_it_found_them() -> None:
    before_env, before_threads = dict(os.environ), torch.get_num_threads()
    with isolated_job():
        os.environ.update(
            {"OMP_NUM_THREADS": "1", "SSD_LAUNCH_ID": "x"}
        )  # what Lightning and the pipeline set
        torch.set_num_threads(before_threads + 1)
    assert dict(os.environ) == before_env and torch.get_num_threads() == before_threads


def test_a_rank_composing_a_different_config_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = compose_cfg(DDP_RUN, tmp_path)
    monkeypatch.setenv(launch.DIGEST_VAR, "0" * 16)
    with pytest.raises(RankFailed, match="different config"):
        execute(cfg, tmp_path / "run", "g")


def test_ranks_started_by_torchrun_keep_their_jobs_wandb_group(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sweep job's ranks run as single runs; their W&B group stays the sweep's."""
    from hydra.types import RunMode

    monkeypatch.delenv(launch.GROUP_VAR, raising=False)
    sweep_job = SimpleNamespace(mode=RunMode.MULTIRUN, sweep=SimpleNamespace(subdir="a/b"))
    single = SimpleNamespace(mode=RunMode.RUN)
    assert launch.job_group(sweep_job, Path("/o/multiruns/s1/a/b")) == "s1"
    assert launch.job_group(single, Path("/o/multiruns/s1/job0")) == "s1/job0"
    monkeypatch.setenv(launch.GROUP_VAR, "s1")  # what launch_ranks gives torchrun's ranks
    assert launch.job_group(single, Path("/o/multiruns/s1/job0")) == "s1"


def test_several_nodes_need_a_cluster_launcher(tmp_path: Path) -> None:
    cfg = compose_cfg([*DDP_RUN, "trainer.strategy=ddp", "trainer.num_nodes=2"], tmp_path)
    with pytest.raises(ConfigError, match="trainer.num_nodes=2 is not allowed without a cluster launcher"):
        launch.launch_ranks(cfg, tmp_path / "run")


RANK_SCRIPT = """
import os, sys, time
from pathlib import Path
rank = int(os.environ["RANK"])
Path(sys.argv[1], f"rank{rank}.pid").write_text(str(os.getpid()))
if rank == 1 and sys.argv[2] == "fail":
    time.sleep(0.5)
    sys.exit(3)
time.sleep(120)
"""


def _torchrun_script(tmp_path: Path, mode: str) -> list[str]:
    script = tmp_path / "ranks.py"
    script.write_text(RANK_SCRIPT)
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        str(script),
        str(tmp_path),
        mode,
    ]


@pytest.mark.ddp
def test_a_failing_rank_fails_the_job_within_seconds(tmp_path: Path) -> None:
    """torchrun watches the ranks: when rank 1 dies, rank 0 is stopped and the job fails (not a hang)."""
    start = time.monotonic()
    with pytest.raises(RankFailed, match="torchrun exited with code"):
        launch.run_torchrun(_torchrun_script(tmp_path, "fail"), dict(os.environ), "test job")
    assert time.monotonic() - start < 60
    assert not _alive(int((tmp_path / "rank0.pid").read_text()))  # rank 0 was stopped too


@pytest.mark.ddp
def test_ranks_stop_when_the_job_process_dies(tmp_path: Path) -> None:
    """Even a SIGKILLed job process leaves no rank behind (Linux: torchrun gets SIGTERM and stops them)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    job = (
        "import os, sys; from ssd.launch import run_torchrun; "
        f"run_torchrun({_torchrun_script(tmp_path, 'sleep')!r}, dict(os.environ), 'job')"
    )
    parent = subprocess.Popen([sys.executable, "-c", job], cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        while len([p for p in tmp_path.glob("rank*.pid") if p.read_text()]) < 2:
            assert time.monotonic() < deadline, "the ranks did not start"
            time.sleep(0.2)
        pids = [int(p.read_text()) for p in tmp_path.glob("rank*.pid")]
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 60
    while any(_alive(pid) for pid in pids):
        assert time.monotonic() < deadline, "a rank outlived its job"
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split()[2] == "Z")  # a zombie has exited


# --------------------------------------------------------------------------- torchrun as the launcher


@pytest.mark.ddp
def test_torchrun_ranks_share_rank_zeros_run_folder(tmp_path: Path) -> None:
    """``torchrun --nproc_per_node=2 -m ssd.run``: every rank composes its own folder (forced apart
    here with ${oc.env:RANK}, as ${now:...} is across a second boundary); all of them use rank 0's."""
    runs = tmp_path / "outputs" / "runs" / "split"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "ssd.run",
        f"paths.log_dir={tmp_path}/outputs",
        f"paths.cache_dir={tmp_path}/cache",
        *DDP_RUN,
        "trainer.strategy=ddp",
        "trainer.devices=2",
        f"hydra.run.dir={runs}/rank${{oc.env:RANK}}",
    ]
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONWARNINGS": "ignore", **ONE_THREAD}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert sorted(p.name for p in runs.iterdir()) == ["rank0"]  # rank 1's own folder is gone
    res = read_results(runs / "rank0")
    assert res["status"] == "complete" and res["stages"]["main"]["world_size"] == 2
    assert res["stages"]["main"]["train_samples_per_epoch"] == N_TRAIN
    assert sorted(p.name for p in (runs / "rank0").glob("*.log")) == ["rank1.log", "run.log"]
    assert "main" in (runs / "rank0" / "rank1.log").read_text()  # rank 1 logged its job there


@pytest.mark.ddp
def test_a_config_error_found_by_the_ranks_is_the_jobs_config_error(tmp_path: Path) -> None:
    """A 2-process job whose data folder is missing exits 2 with the error, as a 1-process job does (found
    before any rank starts: the datamodule declares its classes from the folder)."""
    args = [
        "data=imagefolder",
        f"paths.data_dir={tmp_path}/no_data",
        "model=resnet20",
        "logger=none",
        "trainer.accelerator=cpu",
        "trainer.precision=32-true",
        "trainer.enable_progress_bar=false",
        "trainer.devices=2",
        "hydra.run.dir=" + str(tmp_path / "run"),
    ]
    proc = run_cli(args, tmp_path, timeout=300, env=ONE_THREAD)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "ssd: config error: data (ssd.data.FolderDataModule) is not allowed" in proc.stderr
    assert read_results(tmp_path / "run")["status"] == "failed"


# --------------------------------------------------------------------------- one run folder for all ranks


@pytest.fixture
def slurm_task(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Pretend to be task ``procid`` of a 2-task SLURM job step (no torchrun store)."""
    for key in (
        "RANK",
        "LOCAL_RANK",
        "WORLD_SIZE",
        "TORCHELASTIC_USE_AGENT_STORE",
        "SSD_LAUNCH_ID",
        DECISION_TIMEOUT_VAR,
    ):
        monkeypatch.delenv(key, raising=False)

    def become(procid: int) -> None:
        env = {**SLURM_TASK_ENV, "SLURM_PROCID": str(procid), "SLURM_STEP_ID": "0"}
        for key, value in env.items():
            monkeypatch.setenv(key, value)

    return become


def test_slurm_tasks_take_rank_zeros_run_folder(tmp_path: Path, slurm_task: Any) -> None:
    mine, theirs = tmp_path / "runs" / "t0", tmp_path / "runs" / "t1"
    slurm_task(0)
    assert agree_on_run_dir(mine, "run", tmp_path) == mine
    slurm_task(1)
    assert agree_on_run_dir(theirs, "run", tmp_path) == mine
    with pytest.raises(TimeoutError):  # each job of a launch (a sweep under srun) has its own decision
        agree_on_run_dir(theirs, "3", tmp_path, timeout_s=0.5)


def test_waiting_for_a_folder_that_never_comes_times_out_with_a_message(
    tmp_path: Path, slurm_task: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    slurm_task(1)
    monkeypatch.setenv(DECISION_TIMEOUT_VAR, "1")
    start = time.monotonic()
    with pytest.raises(
        TimeoutError, match=f"rank 1: rank 0 did not decide the run folder within 1s.*{DECISION_TIMEOUT_VAR}"
    ):
        agree_on_run_dir(tmp_path / "runs" / "t1", "run", tmp_path)
    assert time.monotonic() - start < 10


def test_decision_timeout_must_be_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DECISION_TIMEOUT_VAR, "soon")
    with pytest.raises(ValueError, match=f"{DECISION_TIMEOUT_VAR}='soon' is not allowed"):
        decision_timeout_s()


def test_wait_for_decision_ignores_other_launches_and_honours_pending(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    write_json_atomic(plan, {"launch": "old", "source": "train"})
    with pytest.raises(TimeoutError, match="did not decide"):
        wait_for_decision(plan, "new", timeout_s=0.5)  # a plan of an earlier launch is no decision
    write_json_atomic(plan, {"launch": "new", "pending": "waiting for a stage lock"})
    with pytest.raises(TimeoutError, match="waiting for a stage lock"):
        wait_for_decision(plan, "new", timeout_s=0.2, pending_timeout_s=0.6)
    write_json_atomic(plan, {"launch": "new", "source": "cache"})
    assert wait_for_decision(plan, "new", timeout_s=0.5)["source"] == "cache"


def test_only_a_folder_of_hydra_start_up_files_is_removed(tmp_path: Path) -> None:
    run_dir, stray, busy = tmp_path / "s0" / "job", tmp_path / "s1" / "job", tmp_path / "s2" / "job"
    for folder in (run_dir, stray, busy):
        (folder / ".hydra").mkdir(parents=True)
        (folder / "run.log").write_text("")
    (stray.parent / "multirun.yaml").write_text("")
    (busy / "results.json").write_text("{}")
    launch.remove_stray_run_dir(stray, run_dir)
    launch.remove_stray_run_dir(busy, run_dir)
    assert not stray.parent.exists() and busy.is_dir() and run_dir.is_dir()


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


def test_torchrun_ranks_get_the_jobs_user_config_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job composed with ``hydra.searchpath`` (out-of-tree parts) hands it to its ranks: each rank composes
    the same job, its own config groups included."""
    from types import SimpleNamespace

    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    started: list[list[str]] = []
    fake = SimpleNamespace(
        job=SimpleNamespace(config_name="config", num=0),
        runtime=SimpleNamespace(config_sources=[]),
        overrides=SimpleNamespace(
            hydra=["hydra.searchpath=[file:///mine/conf]", "hydra.run.dir=/elsewhere"],
            task=["noise=salt_pepper"],
        ),
        mode=RunMode.RUN,
        sweep=SimpleNamespace(subdir="x"),
    )
    monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda: fake))
    monkeypatch.setattr(launch, "run_torchrun", lambda cmd, env, what: started.append(list(cmd)))
    write_json_atomic(tmp_path / "run" / "results.json", {"status": "complete"})
    cfg = compose_cfg([*DDP_RUN, "trainer.strategy=ddp", "trainer.devices=2"], tmp_path)
    assert launch.launch_ranks(cfg, tmp_path / "run") == {"status": "complete"}
    (cmd,) = started
    assert "hydra.searchpath=[file:///mine/conf]" in cmd and "noise=salt_pepper" in cmd
    assert "hydra.run.dir=/elsewhere" not in cmd  # the job's own folder is pinned instead
