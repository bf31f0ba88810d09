"""SLURM without a cluster: the sbatch preview (``+slurm_preview=true``), the off-cluster message (exit 2
instead of submitit's ``Could not detect "srun"``), job names from the sweep, and a preempted job
(SIGUSR1) requeued by ``scontrol requeue JOBID`` after its checkpoint, with ``scontrol`` faked on PATH."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ssd.interrupt import handle_signals
from ssd.results import read_json
from ssd.run import execute
from ssd.slurm import SlurmCheck, job_id
from tests.helpers import ONE_THREAD, SMALL, compose_cfg, run_cli
from tests.test_interrupt import SignalAt, extra_callbacks

SWEEP = ["strategy=vanilla,clean", "seed=0,1"]


def slurm_cfg(tmp_path: Path, task: list[str], *extra: str) -> object:
    """The config a ``-m hydra/launcher=slurm`` sweep of ``task`` overrides starts from, as Hydra's callbacks see it."""
    cfg = compose_cfg(["hydra/launcher=slurm", "sweep_name=mysweep", *extra], tmp_path, return_hydra=True)
    OmegaConf.update(cfg, "hydra.overrides.task", task, force_add=True)
    return cfg


def empty_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """PATH with nothing of SLURM on it (returns the folder, for fakes)."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    monkeypatch.setenv("PATH", str(folder))
    return folder


def test_preview_prints_one_array_script_with_the_sweep_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    empty_path(monkeypatch, tmp_path)  # a laptop: no sbatch, no srun
    cfg = slurm_cfg(tmp_path, [*SWEEP, "+slurm_preview=true"], "+slurm_preview=true")
    with pytest.raises(SystemExit) as stop:
        SlurmCheck().on_multirun_start(cfg)
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "4 job(s), nothing submitted" in out
    for line in (
        "#!/bin/bash",
        "#SBATCH --array=0-3%",
        "#SBATCH --job-name=ssd-mysweep",
        "#SBATCH --time=1440",
        "srun ",
    ):
        assert line in out
    tasks = [line for line in out.splitlines() if "SLURM_ARRAY_TASK_ID=" in line]
    assert len(tasks) == 4 and tasks[3].endswith("strategy=clean seed=1")  # the preview key is not a job's
    assert not (tmp_path / "outputs").exists()  # nothing written, nothing submitted


def test_off_cluster_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    empty_path(monkeypatch, tmp_path)
    with pytest.raises(SystemExit) as stop:
        SlurmCheck().on_multirun_start(slurm_cfg(tmp_path, SWEEP))
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "sbatch and srun" in err and "+slurm_preview=true" in err


def test_other_launchers_are_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty_path(monkeypatch, tmp_path)
    cfg = compose_cfg([], tmp_path, return_hydra=True)
    SlurmCheck().on_multirun_start(cfg)  # the basic launcher: no SystemExit


def test_job_id_of_an_array_task(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    assert job_id() is None
    monkeypatch.setenv("SLURM_JOB_ID", "101")
    assert job_id() == "101"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "100")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert job_id() == "100_3"


@pytest.mark.slow
def test_cli_preview_and_off_cluster_exit(tmp_path: Path) -> None:
    """The real command line: ``ssd -m hydra/launcher=slurm``, on a machine without SLURM."""
    base = [
        "hydra.mode=MULTIRUN",
        "hydra/launcher=slurm",
        "strategy=vanilla,clean",
        "sweep_name=cli",
        "data=synthetic",
    ]
    shown = run_cli([*base, "+slurm_preview=true"], tmp_path, env=ONE_THREAD)
    assert shown.returncode == 0, shown.stderr
    assert "#SBATCH --job-name=ssd-cli" in shown.stdout and "#SBATCH --array=0-1%" in shown.stdout
    off = run_cli(base, tmp_path, env={**ONE_THREAD, "PATH": f"{Path(os.__file__).parent}"})
    assert off.returncode == 2 and "needs SLURM's sbatch and srun" in off.stderr
    assert "Could not detect" not in off.stderr + off.stdout


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_sigusr1_checkpoints_requeues_and_the_requeued_job_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = tmp_path / "scontrol.calls"
    fake = empty_path(monkeypatch, tmp_path) / "scontrol"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    for name in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_PROCID", "SSD_LAUNCH_ID"):
        monkeypatch.delenv(name, raising=False)
    cfg = compose_cfg([*SMALL, "data.val_size=16", "trainer.max_epochs=2", "logger=csv"], tmp_path)
    run_dir = tmp_path / "run"
    extra_callbacks(monkeypatch, SignalAt(signal.SIGUSR1, epoch=1, batch=1))  # the warning, mid-epoch 1
    with handle_signals():
        status, results = execute(cfg.copy(), run_dir, "g")
    assert (status, results) == (128 + signal.SIGUSR1, None)
    assert calls.read_text().split() == ["requeue", "4242"]  # once, with the job id
    assert (run_dir / "main" / "checkpoints" / "last.ckpt").is_file()  # epoch 0's: where the job resumes
    stopped = read_json(run_dir / "results.json")
    assert stopped["status"] == "interrupted" and "SIGUSR1" in stopped["error"]

    extra_callbacks(monkeypatch)  # the requeued job: the same command, the same folder
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    status, resumed = execute(cfg.copy(), run_dir, "g")
    assert status == 0 and resumed["status"] == "complete"
    assert resumed["stages"]["main"]["resumed_from"].endswith("last.ckpt")
