"""W&B runs named by what they trained, their job types, the W&B sweep example, and the CPU preset's
logger (issue 20 item 9). W&B is disabled or offline here: nothing touches the network."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from ssd.loggers import StageWandbLogger, _wandb_run_id, run_name
from ssd.parts import build_loggers
from ssd.stage_info import StageInfo
from tests.helpers import REPO, TINY, compose_cfg, read_results


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.delenv("WANDB_SWEEP_ID", raising=False)
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)


def stage_config(tmp_path: Path, *overrides: str) -> dict:
    return OmegaConf.to_container(compose_cfg([*TINY, "logger=wandb", *overrides], tmp_path), resolve=True)


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        (("strategy=self_distill", "noise.sigma=0.2", "seed=0"), "self_distill-σ0.2-s0"),
        (("strategy=vanilla", "noise.sigma=0.5", "seed=3"), "vanilla-σ0.5-s3"),
        (("noise=poisson", "seed=1"), "vanilla-poisson10.0-s1"),
        (("noise=none",), "vanilla-none-s0"),
    ],
)
def test_a_run_is_named_by_what_it_trained(overrides: tuple[str, ...], name: str, tmp_path: Path) -> None:
    cfg = OmegaConf.to_container(compose_cfg(list(overrides), tmp_path), resolve=True)
    if "noise=poisson" in overrides:
        name = name.replace("10.0", str(cfg["noise"]["ppp"]))
    assert run_name(StageInfo(dir=tmp_path / "main", role="main", group="g", config=cfg)) == name


def test_the_wandb_logger_carries_name_and_job_type(tmp_path: Path) -> None:
    cfg = stage_config(tmp_path, "strategy=self_distill", "noise.sigma=0.2")
    teacher_cfg = {**cfg, "strategy": {**cfg["strategy"], "name": "vanilla"}}
    stages = {
        "student": StageInfo(dir=tmp_path / "main", role="student", group="g", config=cfg),
        "teacher": StageInfo(dir=tmp_path / "teacher", role="teacher", group="g", config=teacher_cfg),
    }
    inits = {}
    for role, stage in stages.items():
        (logger,) = build_loggers(cfg, stage)
        assert isinstance(logger, StageWandbLogger)
        inits[role] = logger._wandb_init  # noqa: SLF001
    assert (inits["student"]["name"], inits["student"]["job_type"]) == ("self_distill-σ0.2-s0", "student")
    assert (inits["teacher"]["name"], inits["teacher"]["job_type"]) == ("vanilla-σ0.2-s0", "teacher")
    assert inits["student"]["group"] == "g"


def test_a_stage_without_its_config_keeps_the_folder_name(tmp_path: Path) -> None:
    assert run_name(StageInfo(dir=tmp_path / "job" / "teacher", role="teacher", group="g")) == "job/teacher"


def test_under_a_wandb_agent_the_jobs_own_stage_is_the_agents_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_SWEEP_ID", "sw33p")
    monkeypatch.setenv("WANDB_RUN_ID", "agentrun1")
    assert _wandb_run_id(tmp_path / "main") == "agentrun1"
    assert (tmp_path / "main" / "wandb_id.txt").read_text() == "agentrun1"  # a resume continues it
    teacher = _wandb_run_id(tmp_path / "teacher")
    assert teacher != "agentrun1" and len(teacher) == 16
    monkeypatch.delenv("WANDB_SWEEP_ID")  # WANDB_RUN_ID alone (no agent): a run id of ssd's own
    assert _wandb_run_id(tmp_path / "other" / "main") != "agentrun1"


def test_the_wandb_sweep_example_runs_ssd_with_valid_overrides(tmp_path: Path) -> None:
    sweep = yaml.safe_load((REPO / "experiments" / "wandb_sweep.yaml").read_text())
    assert sweep["command"][:2] == ["${env}", "ssd"] and sweep["command"][-1] == "${args_no_hyphens}"
    fixed = sweep["command"][2:-1]
    params = sweep["parameters"]
    for values in itertools.product(*(p["values"] for p in params.values())):
        args = [f"{key}={value}" for key, value in zip(params, values, strict=True)]
        cfg = compose_cfg([*fixed, *args], tmp_path)  # each job composes (Hydra rejects a bad override)
        assert cfg.strategy.name == dict(zip(params, values, strict=True))["strategy"]
    assert list(compose_cfg(fixed, tmp_path).logger) == ["wandb"]
    assert sweep["metric"]["name"] == "val/acc"


def test_the_cpu_preset_logs_to_csv_and_the_default_is_wandb(tmp_path: Path) -> None:
    assert list(compose_cfg([], tmp_path).logger) == ["wandb"]
    assert list(compose_cfg(["experiment=cpu_quick"], tmp_path).logger) == ["csv"]


def test_a_stage_from_the_cache_shows_its_training_history_and_links_its_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job whose stage comes from the stage cache logs that stage's original per-epoch curves (at their
    optimizer steps) on its own loggers, and where it came from (cache entry, original W&B run)."""
    import csv
    import json

    from ssd.run import run_config

    monkeypatch.setenv("WANDB_MODE", "offline")
    args = [*TINY, "logger=many", "data.train=64", "data.test=16", "data.val_size=16", "trainer.max_epochs=2"]
    first = run_config(compose_cfg(args, tmp_path), tmp_path / "first", "g")
    trained = first["stages"]["main"]
    assert trained["source"] == "train" and [row["epoch"] for row in trained["history"]] == [0, 1]
    assert {"train/loss_epoch", "val/acc"} <= set(trained["history"][-1])
    run_id = (tmp_path / "first" / "main" / "wandb_id.txt").read_text()
    assert trained["wandb"]["id"] == run_id
    assert read_results(tmp_path / "first")["stages"]["main"]["history"] == trained["history"]
    (entry,) = (tmp_path / "cache" / "stages").glob("*/meta.json")
    assert json.loads(entry.read_text())["history"] == trained["history"]

    again = run_config(compose_cfg(args, tmp_path), tmp_path / "again", "g")
    reused = again["stages"]["main"]
    assert reused["source"] == "cache" and reused["history"] == trained["history"]
    with (tmp_path / "again" / "main" / "metrics.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("train/loss_epoch")]
    assert [(int(r["step"]), float(r["train/loss_epoch"])) for r in rows] == [
        (h["step"], h["train/loss_epoch"]) for h in trained["history"]
    ]
    hparams = yaml.safe_load((tmp_path / "again" / "main" / "hparams.yaml").read_text())
    assert hparams["provenance"]["main"]["source"] == "cache"
    assert hparams["provenance"]["main"]["wandb"] == run_id  # offline: the run's id (online: its url)
