"""Sweeps: named, deterministic job folders; re-running a sweep skips finished jobs and
redoes the others; the SLURM launcher config."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ssd.results import read_json
from ssd.rundir import JOB_FOLDER_MAX, job_folder_name
from tests.helpers import ONE_THREAD, SMALL, TINY, compose_cfg, read_results, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see tests.helpers.ONE_THREAD


def test_sweep_folder_is_named_by_sweep_name(tmp_path: Path) -> None:
    cfg = compose_cfg(["sweep_name=paper"], tmp_path, return_hydra=True)
    assert cfg.hydra.sweep.dir == f"{tmp_path}/outputs/multiruns/paper"
    default = compose_cfg([], tmp_path, return_hydra=True)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d", default.sweep_name)  # a timestamp unless named


def test_job_folder_names_leave_out_paths_and_the_sweep_name() -> None:
    cfg = compose_cfg(["sweep_name=x"], return_hydra=True)
    excluded = set(cfg.hydra.job.config.override_dirname.exclude_keys)
    assert {"sweep_name", "paths.log_dir", "paths.data_dir", "paths.cache_dir"} <= excluded
    hardware = {"trainer.devices", "trainer.num_nodes", "trainer.strategy", "trainer.accelerator"}
    assert hardware | {"trainer.enable_progress_bar", "logger"} <= excluded


def test_job_folder_names_leave_out_the_progress_bar() -> None:
    """`trainer.enable_progress_bar=false` in a sweep (CI, clusters) names no folder."""
    cfg = compose_cfg(["trainer.enable_progress_bar=false", "seed=3"], return_hydra=True)
    assert cfg.hydra.job.override_dirname == "seed=3"


def test_job_folders_fit_the_file_system_however_many_overrides() -> None:
    """A file system refuses a path component over 255 bytes; a job with many overrides still gets a
    folder: cut, with a hash of the whole so two such jobs never share one, the same on a rerun."""
    short = compose_cfg(["seed=3"], return_hydra=True)
    assert short.hydra.sweep.subdir == "seed=3"
    many = [f"data.train={n}" for n in (64, 65)]
    long = ["data=synthetic", "~data.variant", "data.test=32", "data.batch_size=16", "trainer.max_epochs=1"]
    long += ["optim.optimizer.lr=0.01", "strategy=self_distill", "strategy.teacher_input=same"]
    long += [
        "strategy.generations=3",
        "noise.sigma=0.2",
        "experiment=cpu_fidelity",
        "data.limit_train=null",
        "seed=1",
    ]
    names = [compose_cfg([*long, m], return_hydra=True).hydra.sweep.subdir for m in many]
    assert (
        len(compose_cfg([*long, many[0]], return_hydra=True).hydra.job.override_dirname) > 255
    )  # as in the cpu_fidelity smoke test
    assert all(len(n.encode()) <= JOB_FOLDER_MAX for n in names)
    assert names[0] != names[1] and names[0].startswith("data.batch_size=16,")
    assert names[0] == job_folder_name(
        compose_cfg([*long, many[0]], return_hydra=True).hydra.job.override_dirname
    )
    assert job_folder_name("é" * 150, limit=50).count("~") == 1  # cut on a character boundary


@pytest.mark.slow
def test_rerunning_a_sweep_skips_complete_jobs_and_redoes_the_rest(tmp_path: Path) -> None:
    args = ["hydra.mode=MULTIRUN", *SMALL, "seed=0,1", "sweep_name=again"]
    first = run_cli(args, tmp_path, timeout=300, env=ONE_THREAD)
    assert first.returncode == 0, first.stderr[-3000:]
    sweep = tmp_path / "outputs" / "multiruns" / "again"
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    done, broken = sorted(jobs, key=lambda p: read_results(p)["seed"])
    done_text = (done / "results.json").read_text()
    crashed = {"status": "failed", "error": "RuntimeError: killed", "config": read_results(broken)["config"]}
    (broken / "results.json").write_text(json.dumps(crashed))  # what a crash leaves behind

    second = run_cli(args, tmp_path, timeout=300, env=ONE_THREAD)
    assert second.returncode == 0, second.stderr[-3000:]
    assert sorted(p for p in sweep.iterdir() if p.is_dir()) == jobs  # the same folders, no new ones
    assert (done / "results.json").read_text() == done_text  # skipped
    assert f"{done} is complete; skipping" in second.stdout + second.stderr
    assert read_json(broken / "results.json")["status"] == "complete"  # redone
    assert len(list((tmp_path / "outputs" / "multiruns").iterdir())) == 1


# --------------------------------------------------------------------------- SLURM


def test_slurm_launcher_config_composes_to_one_task_per_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sbatch script submitit would submit for a 2-node x 4-GPU job (no cluster needed)."""
    submitit = pytest.importorskip("submitit")
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")  # submitit looks for srun

    cfg = compose_cfg(
        ["hydra/launcher=slurm", "trainer.devices=4", "trainer.num_nodes=2", "hydra.launcher.partition=gpu"],
        tmp_path,
        return_hydra=True,
    )
    launcher = instantiate(cfg.hydra.launcher)
    params = dict(launcher.params)
    assert (params["tasks_per_node"], params["gpus_per_node"], params["nodes"]) == (4, 4, 2)
    # the plugin's own mapping (SlurmLauncher.launch): shared keys as they are, the others prefixed
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor = submitit.AutoExecutor(
        folder=str(tmp_path / "submitit"),
        cluster="slurm",
        slurm_max_num_timeout=params.pop("max_num_timeout"),
    )
    params.pop("submitit_folder")
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    script = executor._executor._make_submission_file_text("python -m ssd.run", "uid")  # noqa: SLF001
    for line in ("--ntasks-per-node=4", "--gpus-per-node=4", "--nodes=2", "--partition=gpu", "--time=1440"):
        assert f"#SBATCH {line}" in script


def test_slurm_tasks_are_ranks_of_one_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside a SLURM task, rank 0 decides for the job and the launch id is shared by all tasks."""
    from ssd.dist import launch_rank
    from ssd.launch import externally_launched
    from ssd.pipeline import launch_id

    for key in ("LOCAL_RANK", "RANK"):
        monkeypatch.delenv(key, raising=False)
    ids = []
    for procid in ("0", "1"):  # two tasks of one job
        monkeypatch.delenv("SSD_LAUNCH_ID", raising=False)
        for key, value in {
            "SLURM_NTASKS": "2",
            "SLURM_JOB_NAME": "run",
            "SLURM_PROCID": procid,
            "SLURM_JOB_ID": "77",
            "SLURM_RESTART_COUNT": "1",
        }.items():
            monkeypatch.setenv(key, value)
        assert externally_launched() and launch_rank() == int(procid)
        ids.append(launch_id())
    assert ids == ["slurm-77-1", "slurm-77-1"]


# --------------------------------------------------------------------------- W&B


def test_wandb_run_of_a_sweep_job(tmp_path: Path) -> None:
    """Group = the sweep, job type = the stage, name = the job folder, the full resolved config."""
    from lightning.pytorch.loggers import WandbLogger

    from ssd.parts import build_loggers
    from ssd.stage_info import StageInfo

    cfg = OmegaConf.to_container(
        compose_cfg([*TINY, "logger=wandb", "tags=[paper]", "logger.wandb.entity=lab"], tmp_path),
        resolve=True,
    )
    stage_dir = tmp_path / "sweep" / "noise.sigma=0.1,seed=0,strategy=vanilla" / "main"
    stage = StageInfo(dir=stage_dir, role="main", group="sweep", config=cfg)
    (logger,) = build_loggers(cfg, stage)
    assert isinstance(logger, WandbLogger)
    init = logger._wandb_init  # noqa: SLF001 - what wandb.init will get; no run is started here
    assert (init["group"], init["job_type"], init["project"], init["entity"]) == (
        "sweep",
        "main",
        "ssd",
        "lab",
    )
    assert init["name"] == "vanilla-σ0.1-s0" and init["tags"] == ["paper"]
    assert init["config"] == cfg and init["resume"] == "allow"
    (again,) = build_loggers(cfg, stage)
    assert again._wandb_init["id"] == init["id"] == (stage_dir / "wandb_id.txt").read_text()  # noqa: SLF001 - a resumed stage continues its run


def test_offline_wandb_run_has_curve_and_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An offline run (syncable later with `wandb sync`) holds the robustness table and the sample grid."""
    from ssd.run import run_config

    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_cfg([*SMALL, "logger=wandb"], tmp_path)
    run_config(cfg, tmp_path / "run", "g")
    (offline,) = (tmp_path / "run" / "main" / "wandb").glob("offline-run-*")
    media = offline / "files" / "media"
    (table,) = media.glob("table/robustness_table_*.table.json")
    assert json.loads(table.read_text())["columns"] == ["sigma", "accuracy"]
    assert list(media.glob("images/images/test_noise_levels_*.png"))


# --------------------------------------------------------------------------- Optuna (conf/hparams_search)
@pytest.mark.slow  # ~25 s; an optional plugin
def test_an_optuna_search_tunes_lambda_and_taps_and_trains_the_teacher_once(tmp_path: Path) -> None:
    """``-m hparams_search=self_distill_optuna``: trials differ in lambda/taps only, so the stage cache
    serves the first trial's teacher to the others; Optuna maximises the validation accuracy."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    args = [
        "hydra.mode=MULTIRUN",
        "hparams_search=self_distill_optuna",
        *(o for o in SMALL if not o.startswith("data.val_size")),
        "data.val_size=16",
        "hydra.sweeper.n_trials=3",
    ]
    done = run_cli(args, tmp_path, env=ONE_THREAD)
    assert done.returncode == 0, done.stderr[-3000:]
    (sweep,) = (tmp_path / "outputs" / "multiruns").iterdir()
    assert sweep.name == "optuna-self_distill-gaussian0.1"
    best = OmegaConf.load(sweep / "optimization_results.yaml")
    assert set(best.best_params) == {"strategy.lambda", "strategy.taps"} and 0 <= best.best_value <= 1
    trials = [json.loads(p.read_text()) for p in sweep.glob("*/results.json")]
    assert len(trials) == 3 and all(
        t["status"] == "complete" and t["strategy"] == "self_distill" for t in trials
    )
    assert best.best_value == max(t["val_acc"] for t in trials)  # the objective: validation, not test
    sources = sorted(t["stages"]["teacher"]["source"] for t in trials)
    assert sources == ["cache", "cache", "train"]  # one teacher for the whole search
    assert len({t["stages"]["teacher"]["key"] for t in trials}) == 1
