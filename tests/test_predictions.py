"""What a run saves per test image (``test_predictions.npz``: predicted and true classes, noisy and clean)
and per class (``results.json`` ``per_class``: accuracy and torchmetrics confusion matrices), read back by
the report (``ssd.report.predictions``) and drawn by ``ssd-report --confusion``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ssd.report import main as report_main
from ssd.report.predictions import load_predictions
from ssd.run import execute
from tests.helpers import SMALL, compose_cfg

#: two tiny runs in-process (~10 s on this machine) and a report
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]

#: one epoch on 64 synthetic images, 32 test images, no W&B
RUN = [*SMALL, "data.val_size=0"]


def run(tmp_path: Path, name: str, *overrides: str) -> tuple[Path, dict[str, Any]]:
    run_dir = tmp_path / "sweep" / name
    status, results = execute(compose_cfg([*RUN, *overrides], tmp_path), run_dir, "g")
    assert status == 0 and results["status"] == "complete"
    return run_dir, results


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[Path, dict[str, Any]]]]:
    tmp_path = tmp_path_factory.mktemp("predictions")
    return tmp_path, [run(tmp_path, name, f"strategy={name}") for name in ("vanilla", "clean")]


def test_saved_predictions_match_results_and_the_reader(two_runs: Any) -> None:
    _, runs = two_runs
    run_dir, results = runs[0]
    found = load_predictions(run_dir)  # the report's reader: checks correct == (pred == label)
    assert found is not None and found.has_classes
    classes = results["data"]["num_classes"]
    assert classes == 4 and found.idx.tolist() == list(range(32))  # every test image once
    assert found.pred_clean is not None and found.correct_clean is not None
    assert np.array_equal(found.correct_clean, found.pred_clean == found.label)
    # the accuracies results.json reports are the saved predictions' own
    assert results["test_acc"] == pytest.approx(found.correct.mean())
    assert results["clean_acc"] == pytest.approx(found.correct_clean.mean())
    per_class = results["per_class"]
    for view, pred in (("noisy", found.pred), ("clean", found.pred_clean)):
        counts = np.bincount(found.label * classes + pred, minlength=classes**2).reshape(classes, classes)
        assert per_class[view]["confusion"] == counts.tolist()  # row = true class, column = predicted
        expected = [counts[c, c] / counts[c].sum() if counts[c].sum() else None for c in range(classes)]
        assert per_class[view]["accuracy"] == pytest.approx(expected)
    assert "per_class" not in results["stages"]["main"]  # once, at the top


def test_report_draws_the_confusion_difference_of_a_tiny_sweep(two_runs: Any) -> None:
    tmp_path, _ = two_runs
    out = tmp_path / "report"
    code = report_main([str(tmp_path / "sweep"), "--out", str(out), "--confusion", "vanilla", "clean"])
    assert code == 0
    [figure] = out.glob("confusion_*.png")
    assert figure.stat().st_size > 0 and "vanilla" in figure.name and "clean" in figure.name


def test_per_class_results_reach_wandb_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning.pytorch.loggers import WandbLogger

    from ssd.loggers import log_per_class

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = WandbLogger(save_dir=str(tmp_path), project="t", offline=True)
    confusion = {"accuracy": [0.5, None], "confusion": [[1, 1], [0, 0]]}
    log_per_class([logger], {"classes": ["cat", "dog"], "noisy": confusion, "clean": confusion})
    logger.experiment.finish()
    found = tmp_path.glob("wandb/offline-run-*/files/media/table/per_class/*.json")  # not latest-run too
    tables = sorted(p.name.split("_table")[0] for p in found)
    assert tables == ["accuracy", "confusion_clean", "confusion_noisy"]
