"""What a run prints (ssd/console.py) and what its loggers record once (ssd/loggers.py)."""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
import re
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ssd import console
from ssd.console import progress_bar
from ssd.loggers import StageCSVLogger, StageWandbLogger
from ssd.parts import build_loggers
from ssd.stage_info import StageInfo
from tests.helpers import ONE_THREAD, REPO, SMALL, TINY, compose_cfg

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see tests.helpers.ONE_THREAD

HYDRA_PREFIX = re.compile(r"^\[[^\]]*\]\[[^\]]*\]\[[A-Z]+\] - ")  # [time][logger][LEVEL] -


def shown_lines(output: str) -> list[str]:
    """The lines a terminal ends up showing (the last carriage-return segment of each), without
    Hydra's ``[time][logger][LEVEL] -`` prefix, so the same message printed twice compares equal."""
    lines = []
    for raw in output.split("\n"):  # (str.splitlines would also split at the bars' carriage returns)
        line = raw.split("\r")[-1].strip()
        line = HYDRA_PREFIX.sub("", line)
        line = re.sub(r"^(INFO|WARNING): ", "", line)
        if line:
            lines.append(line)
    return lines


@pytest.fixture(scope="module")
def self_distill_output(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The console of a tiny two-stage self_distill run, with its progress bars and CSV logger."""
    tmp = tmp_path_factory.mktemp("console")
    args = [*SMALL, "strategy=self_distill", "logger=csv", "trainer.enable_progress_bar=true"]
    cmd = [
        sys.executable,
        "-m",
        "ssd.run",
        f"paths.log_dir={tmp}/outputs",
        f"paths.cache_dir={tmp}/cache",
        *args,
    ]
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONWARNINGS": "default", **ONE_THREAD}
    # bytes, then decoded: text mode would turn the progress bars' carriage returns into newlines
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, timeout=300, check=False)
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, err[-3000:]
    return out + err


def test_a_two_stage_run_prints_no_line_twice(self_distill_output: str) -> None:
    repeated = {line: n for line, n in Counter(shown_lines(self_distill_output)).items() if n > 1}
    assert not repeated, repeated


def test_the_console_has_no_noise(self_distill_output: str) -> None:
    out = self_distill_output
    for noise in (
        "Tip:",
        "litlogger",
        "LeafSpec",
        "Trainable params",
        "┏",
        "exists and is not empty",
        "hp_metric",
    ):
        assert noise not in out, noise
    models = [line for line in shown_lines(out) if line.startswith("model ")]
    assert len(models) == 2, models  # the model summary: one line per stage
    assert "frozen parameters" in models[1] and not models[1].endswith(" 0 frozen parameters")


def test_both_stages_are_announced(self_distill_output: str) -> None:
    lines = shown_lines(self_distill_output)
    assert any(line.startswith("[1/2] teacher vanilla") for line in lines), lines
    assert any(line.startswith("[2/2] student self_distill") for line in lines), lines


def test_announce_stage_is_one_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="ssd"):
        line = console.announce_stage(
            2, 2, "student", "self_distill", "cache", "56c8a1b2c3d4", "teacher vanilla"
        )
    assert line == "[2/2] student self_distill ← teacher vanilla (cache 56c8a1b2…)"
    assert [r.getMessage() for r in caplog.records] == [line]
    assert console.announce_stage(1, 2, "teacher", "vanilla", "train", "") == "[1/2] teacher vanilla (train)"


def test_progress_bars_carry_the_stage_label(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)  # an interactive terminal: a bar
    stage = StageInfo(dir=tmp_path, role="teacher", group="g", label="[1/2] teacher vanilla")
    bar = progress_bar(stage)
    assert isinstance(bar, console.StageRichBar)  # rich is installed (a dependency)
    assert bar.test_description == "[1/2] teacher vanilla: test"
    monkeypatch.setattr(console, "_rich_available", lambda: False)
    assert isinstance(progress_bar(stage), console.StageTQDMBar)  # without rich: Lightning's default
    unlabelled = progress_bar(StageInfo(dir=tmp_path, role="main", group="g"))
    assert type(unlabelled).__name__ == "TQDMProgressBar"  # no label: Lightning's own
    assert progress_bar(StageInfo(dir=tmp_path, role="main", group="g", progress_bar=False)) is None


def test_a_file_gets_epoch_lines_not_a_bar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    bar = progress_bar(StageInfo(dir=tmp_path, role="teacher", group="g", label="[1/2] teacher vanilla"))
    assert isinstance(bar, console.EpochLines)
    metrics = {
        "train/loss": 9.0,
        "train/loss_epoch": 1.23456,
        "train/acc": 0.5,
        "train/ce": 7.0,
        "val/acc": 0.25,
    }
    assert console.epoch_line("[1/2] teacher vanilla: epoch 3/15", metrics) == (
        "[1/2] teacher vanilla: epoch 3/15 | train/loss 1.235 | train/acc 0.5 | val/acc 0.25"
    )


def test_piped_output_is_one_line_per_epoch(self_distill_output: str) -> None:
    """stdout is a pipe (as in SLURM, CI, nohup): no carriage returns or escape codes, no empty bar
    stubs; each stage's epoch once, its test accuracy as it ends, then the run's folder."""
    out = self_distill_output
    assert "\r" not in out and "\x1b" not in out
    assert "Training" not in out and "Testing" not in out and "it/s" not in out
    lines = shown_lines(out)
    epochs = [line for line in lines if ": epoch " in line]
    assert len(epochs) == 2, epochs  # two stages of one epoch
    assert epochs[0].startswith("[1/2] teacher vanilla: epoch 1/1 | train/loss ")
    assert epochs[1].startswith("[2/2] student self_distill: epoch 1/1 | train/loss ")
    tests = [line for line in lines if ": test acc " in line]
    assert [t.split(":")[0] for t in tests] == ["[1/2] teacher vanilla", "[2/2] student self_distill"]
    assert all(re.search(r"test acc [01]\.\d{4}, clean [01]\.\d{4} \(trained\)$", t) for t in tests), tests
    assert lines[-1].startswith("self_distill done: noisy test acc") and "results.json" in lines[-1]


def test_a_config_error_is_printed_once(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "ssd.run", f"paths.log_dir={tmp_path}", *TINY, "data.batch_size=0"]
    proc = subprocess.run(
        cmd, cwd=REPO, env={**os.environ, **ONE_THREAD}, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    printed = [line for line in (proc.stdout + proc.stderr).splitlines() if "config error" in line]
    assert len(printed) == 1 and printed[0].startswith("ssd: config error: data.batch_size"), printed
    (run_log,) = tmp_path.glob("runs/*/*/run.log")
    assert "config error: data.batch_size" in run_log.read_text()  # the log file keeps it


def test_quiet_warnings_are_filtered_and_others_are_not() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        console.setup()
        warnings.warn(
            "The dataloader, train_dataloader, does not have many workers which may be a bottleneck.",
            stacklevel=1,
        )
        warnings.warn("something ssd users must see", stacklevel=1)
    assert [str(w.message) for w in caught] == ["something ssd users must see"]


def test_lightning_lines_go_through_the_root_handlers_only() -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler()
    root.addHandler(handler)
    lightning_logger = logging.getLogger("lightning")
    before = list(lightning_logger.handlers), lightning_logger.propagate
    try:
        lightning_logger.addHandler(logging.StreamHandler())  # what `import lightning` adds
        console.setup()
        assert not [h for h in lightning_logger.handlers if type(h) is logging.StreamHandler]
        assert lightning_logger.propagate
    finally:
        root.removeHandler(handler)
        lightning_logger.handlers[:] = before[0]
        lightning_logger.propagate = before[1]


# --------------------------------------------------------------------------- loggers


def test_csv_logger_appends_when_resuming_and_starts_over_otherwise(tmp_path: Path) -> None:
    stage = tmp_path / "main"
    stage.mkdir()
    (stage / "plan.json").write_text("{}")  # a stage folder is never empty
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "directory not empty" warning
        first = StageCSVLogger(stage, resuming=False)
        first.log_metrics({"train/loss": 1.0}, step=0)
        first.save()
        resumed = StageCSVLogger(stage, resuming=True)
        resumed.log_metrics({"val/acc": 0.5}, step=1)
        resumed.save()
    rows = list(csv.DictReader((stage / "metrics.csv").open()))
    assert [(r["step"], r["train/loss"], r["val/acc"]) for r in rows] == [("0", "1.0", ""), ("1", "", "0.5")]
    fresh = StageCSVLogger(stage, resuming=False)
    fresh.log_metrics({"val/acc": 0.7}, step=0)
    fresh.save()
    assert [r["val/acc"] for r in csv.DictReader((stage / "metrics.csv").open())] == ["0.7"]


def test_csv_logger_resumes_only_with_a_checkpoint(tmp_path: Path) -> None:
    cfg = OmegaConf.to_container(compose_cfg([*TINY, "logger=csv"], tmp_path), resolve=True)
    stage = StageInfo(dir=tmp_path / "main", role="main", group="g")
    (csv_logger,) = build_loggers(cfg, stage)
    assert csv_logger._resuming is False  # noqa: SLF001
    (resumed,) = build_loggers(cfg, dataclasses.replace(stage, resuming=True))
    assert resumed._resuming is True  # noqa: SLF001


def test_tensorboard_has_no_placeholder_hp_metric(tmp_path: Path) -> None:
    cfg = OmegaConf.to_container(compose_cfg([*TINY, "logger=tensorboard"], tmp_path), resolve=True)
    (logger,) = build_loggers(cfg, StageInfo(dir=tmp_path / "main", role="main", group="g"))
    assert logger._default_hp_metric is False  # noqa: SLF001


def test_several_loggers_at_once(tmp_path: Path) -> None:
    cfg = OmegaConf.to_container(compose_cfg([*TINY, "logger=many"], tmp_path), resolve=True)
    loggers = build_loggers(cfg, StageInfo(dir=tmp_path / "main", role="main", group="g", config=cfg))
    assert [type(logger).__name__ for logger in loggers] == ["StageCSVLogger", "StageWandbLogger"]


def test_wandb_gets_the_config_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The config goes to wandb.init; the strategy's saved hyperparameters add only data_info."""
    from lightning.pytorch.loggers import WandbLogger

    logged: list[dict] = []
    monkeypatch.setattr(WandbLogger, "log_hyperparams", lambda self, params: logged.append(dict(params)))
    cfg = OmegaConf.to_container(compose_cfg([*TINY, "logger=wandb"], tmp_path), resolve=True)
    (logger,) = build_loggers(cfg, StageInfo(dir=tmp_path / "main", role="main", group="g", config=cfg))
    assert isinstance(logger, StageWandbLogger) and logger._wandb_init["config"] == cfg  # noqa: SLF001
    logger.log_hyperparams({"cfg": cfg, "data_info": {"num_classes": 10}})
    assert logged == [{"data_info": {"num_classes": 10}}]
