"""The tuning table: validation accuracy only, paired against a reference row (``ssd.report.tuning``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ssd.report.tuning import main, tuning_table
from tests.test_report import fake_run


def _val(run: Path, val_acc: float) -> None:
    results = json.loads((run / "results.json").read_text())
    results["val_acc"] = val_acc
    (run / "results.json").write_text(json.dumps(results))


def test_table_pairs_val_acc_by_seed_and_never_shows_test_accuracy(tmp_path: Path) -> None:
    for seed, (base, tuned) in enumerate([(0.50, 0.53), (0.54, 0.56), (0.52, 0.55)]):
        _val(fake_run(tmp_path, "vanilla", 0.2, seed, acc=0.9111), base)
        for lam, val in ((0.1, tuned), (1.0, base - 0.01)):
            _val(fake_run(tmp_path, "student_teacher", 0.2, seed, acc=0.9222, keys={"lambda": lam}), val)
    text = tuning_table([tmp_path], "vanilla")
    assert "91.11" not in text and "92.22" not in text  # test accuracies stay out of tuning
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert "52.00 ± 2.00 (n=3)" in rows["vanilla"] and "reference" in rows["vanilla"]
    # paired: +3, +2, +3 points -> mean +2.67, CI from the t quantile with 2 degrees of freedom
    assert "+2.67 [+1.23, +4.10]" in rows["student_teacher (strategy.lambda=0.1)"]
    assert "-1.00 [-1.00, -1.00]" in rows["student_teacher (strategy.lambda=1.0)"]


def test_no_validation_accuracy_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake_run(tmp_path, "vanilla", 0.2, 0, acc=0.5)
    assert main([str(tmp_path)]) == 2
    assert "no complete run with a val_acc" in capsys.readouterr().err
