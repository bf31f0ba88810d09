"""Tests for ssd.gpu_check's plumbing (the full check needs minutes and data: experiments/gpu_check.sh)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ssd import gpu_check


def test_defaults_and_smoke():
    if torch.cuda.is_available():
        assert gpu_check.parse_args([]).epochs == 4
    args = gpu_check.parse_args(["--device", "cpu", "--smoke"])
    assert args.epochs == 1 and args.skip == set() and args.budget_s == 480


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--device", "cpu", "--skip", "noise,plots"], "--skip=plots is not allowed"),
        (["--device", "cpu", "--epochs", "0"], "--epochs=0 is not allowed"),
        (["--device", "cpu", "--budget-s", "-1"], "--budget-s=-1.0 is not allowed"),
        (["--device", "tpu"], "invalid choice: 'tpu'"),
    ],
)
def test_bad_arguments_name_the_flag(argv, message, capsys):
    with pytest.raises(SystemExit):
        gpu_check.parse_args(argv)
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_refused(capsys):
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--device", "cuda"])
    assert "torch sees no CUDA device" in capsys.readouterr().err


def test_run_overrides(tmp_path: Path):
    full = gpu_check.run_overrides(
        gpu_check.parse_args(["--device", "cpu", "trainer.compile=true"]), "vanilla", tmp_path
    )
    assert {
        "strategy=vanilla",
        "model=resnet18",
        "noise.sigma=0.2",
        "data=cifar10",
        "data.variant=full",
    } <= set(full)
    assert "trainer.max_epochs=4" in full and "trainer.accelerator=cpu" in full and "logger=none" in full
    assert f"hydra.run.dir={tmp_path / 'runs' / 'vanilla'}" in full and full[-1] == "trainer.compile=true"
    smoke = gpu_check.run_overrides(
        gpu_check.parse_args(["--device", "cpu", "--smoke"]), "self_distill", tmp_path
    )
    assert "data=synthetic" in smoke and "data.variant=full" not in smoke and "trainer.max_epochs=1" in smoke


def test_bench_command_uses_listed_flags(tmp_path: Path):
    cmd = gpu_check.bench_command(gpu_check.parse_args(["--device", "cpu", "--smoke"]), tmp_path / "b.json")
    flags = {part for part in cmd if part.startswith("--")}
    # every flag must exist in `python -m ssd.bench --help` (the bench's interface, whatever its internals)
    help_text = subprocess.run(
        [sys.executable, "-m", "ssd.bench", "--help"], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    known = set(re.findall(r"(--[a-z][a-z0-9-]*)", help_text))
    assert flags <= known, flags - known
    assert cmd[cmd.index("--model") + 1] == "resnet18" and cmd[cmd.index("--device") + 1] == "cpu"


def test_summaries():
    results = {
        "status": "complete",
        "test_acc": 0.8,
        "clean_acc": 0.9,
        "robustness": {"sigma=0.2": 0.8},
        "train_images_per_s": 1000.0,
        "wall_time_s": 12.0,
        "stages": {
            "teacher": {
                "source": "cache",
                "train_images_per_s": 1500.0,
                "epochs": 4,
                "fit_seconds": 3.0,
                "x": 1,
            },
            "main": {"source": "train", "train_images_per_s": 1000.0, "epochs": 4, "fit_seconds": 5.0},
        },
    }
    summary = gpu_check.summarize_run(results)
    assert summary["test_acc"] == 0.8 and summary["stages"]["teacher"]["source"] == "cache"
    assert "x" not in summary["stages"]["teacher"] and summary["hardware"] is None
    bench = {
        "rows": [{"name": "raw", "images_per_s": 10.0, "vs_raw": 1.0}, {"name": "joint", "error": "boom"}]
    }
    rows = gpu_check.summarize_bench(bench)["rows"]
    assert rows["raw"]["images_per_s"] == 10.0 and rows["joint"] == {"error": "boom"}


def test_noise_step_writes_one_json(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(gpu_check, "time_eval_noise", _tiny_timer(gpu_check.time_eval_noise))
    out = tmp_path / "check.json"
    code = gpu_check.main(["--device", "cpu", "--smoke", "--skip", "bench,runs", "--out", str(out)])
    report = json.loads(out.read_text())
    assert code == 0 and report["errors"] == []
    assert report["hardware"]["device_type"] == "cpu"
    for size in ("224px", "32px"):
        assert report["eval_noise"][size]["gaussian"]["images_per_s"] > 0
        assert report["eval_noise"][size]["poisson"]["images_per_s"] > 0
    assert "bench" not in report and "runs" not in report
    assert [p.name for p in tmp_path.iterdir()] == ["check.json"]


def test_failed_step_is_recorded(tmp_path: Path, monkeypatch):
    def broken(args):
        raise RuntimeError("no kernel image")

    monkeypatch.setattr(gpu_check, "step_noise", broken)
    out = tmp_path / "check.json"
    assert gpu_check.main(["--device", "cpu", "--smoke", "--skip", "bench,runs", "--out", str(out)]) == 1
    report = json.loads(out.read_text())
    assert report["errors"] == ["eval_noise"] and "no kernel image" in report["eval_noise"]["error"]


def _tiny_timer(real):
    """time_eval_noise on a few images only (the smoke sizes are still too many for a unit test)."""

    def timer(device, images, size, batch):
        return real(device, 4, size, 2)

    return timer
