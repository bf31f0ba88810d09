"""``python -m ssd.report``: golden mean/std on hand-made results, and a report of real runs."""

from __future__ import annotations

import copy
import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from ssd.report import Stat, main
from ssd.run import train
from tests.helpers import REPO, SMALL, compose_cfg

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see tests.helpers.ONE_THREAD

BASE = OmegaConf.to_container(compose_cfg(["data=synthetic", "model=resnet20"]), resolve=True)


def fake_run(
    folder: Path,
    strategy: str,
    sigma: float,
    seed: int,
    acc: float | None,
    status: str = "complete",
    keys: dict | None = None,
) -> Path:
    """A results.json as the pipeline writes it (only the fields the report reads are real)."""
    cfg = copy.deepcopy(BASE)
    cfg["strategy"] = {"name": strategy, "_target_": f"ssd.strategies.{strategy}.X", **(keys or {})}
    cfg["noise"]["sigma"], cfg["seed"], cfg["data"]["seed"] = sigma, seed, seed
    cfg["sweep_name"] = f"sweep-{seed}"  # differs between runs but is not a setting
    extra = "".join(f",strategy.{k}={v}" for k, v in (keys or {}).items())
    run = folder / f"strategy={strategy},noise.sigma={sigma},seed={seed}{extra}"
    run.mkdir(parents=True)
    results: dict[str, Any] = {"status": status, "config": cfg}
    if status == "complete":
        results.update(
            {
                "strategy": strategy,
                "seed": seed,
                "test_acc": acc,
                "clean_acc": acc + 0.1,
                "noise": {"name": "gaussian", "level_name": "sigma", "level": sigma},
                "robustness": {"sigma=0": acc + 0.1, f"sigma={sigma:g}": acc, "sigma=0.5": acc - 0.2},
            }
        )
    else:
        results["error"] = "RuntimeError: out of memory"
    (run / "results.json").write_text(json.dumps(results))
    return run


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    for seed, acc in enumerate((0.5, 0.6, 0.7)):
        fake_run(root, "vanilla", 0.1, seed, acc)
    fake_run(root, "vanilla", 0.2, 0, 0.4)
    for seed, acc in enumerate((0.8, 0.9)):
        fake_run(root, "self_distill", 0.1, seed, acc, keys={"lambda": 0.1})
    fake_run(root, "self_distill", 0.1, 0, 0.3, keys={"lambda": 1.0})
    fake_run(root, "self_distill", 0.2, 0, 0.0, status="failed", keys={"lambda": 0.1})
    pending = root / "strategy=clean,noise.sigma=0.1,seed=0"  # a job that started and died without a word
    pending.mkdir()
    OmegaConf.save(
        OmegaConf.create({**BASE, "strategy": {"name": "clean"}}), pending / "config.resolved.yaml"
    )
    fq = {
        "comparisons": {
            "noisy_teacher": {
                "input": "noisy",
                "cka": {"stem": 0.5, "layer1": 0.7},
                "rel_mse": {"stem": 0.2, "layer1": 0.1},
            }
        }
    }
    (root / "strategy=vanilla,noise.sigma=0.1,seed=0" / "feature_quality.json").write_text(json.dumps(fq))
    return root


def test_stat_golden_values() -> None:
    s = Stat.of([0.5, 0.6, 0.7])
    assert s.n == 3 and s.mean == pytest.approx(0.6) and s.std == pytest.approx(0.1)
    assert s.text() == "60.00 ± 10.00 (n=3)"
    assert Stat.of([0.4]).text() == "40.00 (n=1)"  # no spread from one seed


def test_report_table_curves_and_unfinished_runs(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert main([str(sweep), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    rows = {line.split(" | ")[0].strip("| "): line for line in md.splitlines() if line.startswith("| ")}
    assert "| vanilla | 60.00 ± 10.00 (n=3) | 40.00 (n=1) |" in md
    # runs that differ in lambda are different settings, never averaged together
    assert "| self_distill (strategy.lambda=0.1) | 85.00 ± 7.07 (n=2) | — |" in md
    assert "| self_distill (strategy.lambda=1.0) | 30.00 (n=1) | — |" in md
    assert rows["vanilla"].index("vanilla") < md.index("self_distill (strategy.lambda=0.1) |")  # paper order
    # the difference table of the reference strategy
    assert "| vanilla | +25.00 | — |" in md
    # robustness curve of vanilla trained at sigma=0.1: mean over seeds per test level
    assert "| vanilla | 70.00 | 60.00 | 40.00 |" in md
    # failed and never-finished jobs are listed, not dropped
    assert (
        "RuntimeError: out of memory" in md
        and "strategy=clean,noise.sigma=0.1,seed=0" in md
        and "incomplete" in md
    )
    # feature quality numbers of the runs that have them
    assert "| vanilla | sigma=0.1 | noisy_teacher | cka | 0.500 (n=1) | 0.700 (n=1) |" in md
    with open(out / "accuracy.csv") as handle:
        acc = {(r["strategy"], r["level"], r["metric"]): r for r in csv.DictReader(handle)}
    row = acc[("vanilla", "0.1", "test_acc")]
    assert (
        float(row["mean"]) == pytest.approx(0.6)
        and float(row["std"]) == pytest.approx(0.1)
        and row["n"] == "3"
    )
    with open(out / "runs.csv") as handle:
        statuses = sorted(r["status"] for r in csv.DictReader(handle))
    assert statuses == ["complete"] * 7 + ["failed", "incomplete"]
    for png in ("accuracy_vs_noise.png", "robustness_curves.png"):
        assert (out / png).stat().st_size > 1000


def test_report_of_an_empty_folder_fails_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path)]) == 2
    assert "no run folders" in capsys.readouterr().err


def test_report_of_real_runs(tmp_path: Path) -> None:
    """Two strategies x two seeds of real tiny runs, then the CLI exactly as a user types it."""
    sweep = tmp_path / "sweep"
    results = {}
    for strategy in ("vanilla", "clean"):
        for seed in (0, 1):
            cfg = compose_cfg([*SMALL, f"strategy={strategy}", f"seed={seed}"], tmp_path)
            results[(strategy, seed)] = train(cfg, sweep / f"strategy={strategy},seed={seed}", "g")[
                "test_acc"
            ]
    proc = subprocess.run(
        [sys.executable, "-m", "ssd.report", str(sweep)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for strategy in ("vanilla", "clean"):
        expected = Stat.of([results[(strategy, 0)], results[(strategy, 1)]]).text()
        assert f"| {strategy} | {expected} |" in proc.stdout
    assert (sweep / "report" / "accuracy_vs_noise.png").exists()


@pytest.mark.slow
def test_cpu_compare_script_end_to_end(tmp_path: Path) -> None:
    """experiments/cpu_compare.sh on tiny synthetic data: two seed shards in parallel, then the report."""
    env = {
        **os.environ,
        "WANDB_MODE": "disabled",
        "SSD_LOG_DIR": str(tmp_path / "outputs"),
        "SSD_CACHE_DIR": str(tmp_path / "cache"),
        "SWEEP": "smoke",
        "STRATEGIES": "vanilla,self_distill",
        "SEEDS": "0 1",
        "PY": sys.executable,
    }
    args = ["data=synthetic", "~data.variant", "data.train=64", "data.test=32", "trainer.max_epochs=1"]
    proc = subprocess.run(
        ["bash", "experiments/cpu_compare.sh", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sweep = tmp_path / "outputs" / "multiruns" / "smoke"
    md = (sweep / "report" / "report.md").read_text()
    assert "16 complete runs, 0 failed or incomplete" in md
    for strategy in ("vanilla", "self_distill"):
        row = next(line for line in md.splitlines() if line.startswith(f"| {strategy} | "))
        assert row.count("(n=2)") == 4  # sigma 0.1, 0.2, 0.3, 0.5, two seeds each
    logs = "".join((sweep / f"shard{i}.log").read_text() for i in (0, 1))
    teacher = [
        line.rsplit("-> ", 1)[1] for line in logs.splitlines() if "stage teacher (vanilla): key" in line
    ]
    assert teacher == ["cache"] * 8  # every self_distill teacher is the matching vanilla run's network
