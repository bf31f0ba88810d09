"""Per-class accuracy and the confusion-matrix difference between two methods, from per-image predicted
labels in ``test_predictions.npz`` (``pred``, ``pred_clean``, ``label``; see ``ssd.report.predictions``)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from ssd.report import Options, Summary, main
from ssd.report.confusion import rate_matrix
from ssd.report.predictions import load_predictions
from tests.test_report import fake_run

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = 4  # as the synthetic data of tests.test_report.BASE
LABEL = np.arange(80) % CLASSES  # 20 test images per class
NAMES = np.array(["cat", "dog", "ship", "frog"])
T975_DF1 = 12.706204736174698  # Student t, 97.5% quantile, 1 degree of freedom (tables: 12.706)


def predictions(wrong_ships: int) -> dict[str, np.ndarray]:
    """Every image right, except the first ``wrong_ships`` ships, predicted 'dog' (on clean images
    every image is right)."""
    pred = LABEL.copy()
    pred[np.flatnonzero(LABEL == 2)[:wrong_ships]] = 1
    return {"pred": pred, "pred_clean": LABEL.copy(), "label": LABEL, "classes": NAMES}


def write_pair(root: Path, wrong: dict[int, int], ddp_b: bool = False, arrays: bool = True) -> None:
    """self_distill:same with ``wrong[seed]`` ships taken for dogs, vanilla always right, at sigma=0.2."""
    for seed, n_wrong in wrong.items():
        a = predictions(n_wrong)
        fake_run(root, "self_distill", 0.2, seed, 1 - n_wrong / 80, method="self_distill:same",
                 correct=a["pred"] == LABEL, arrays=a if arrays else None)  # fmt: skip
        b = predictions(0)
        correct = b["pred"] == LABEL
        fake_run(root, "vanilla", 0.2, seed, 1.0, method="vanilla",
                 correct=[correct[0::2], correct[1::2]] if ddp_b else correct, arrays=b if arrays else None)  # fmt: skip


def test_rate_matrix_rows_are_per_class_percentages() -> None:
    m = rate_matrix(np.array([0, 1, 1, 2]), np.array([0, 0, 1, 1]), 3)
    assert (
        m.tolist()[:2] == [[50.0, 50.0, 0.0], [0.0, 50.0, 50.0]] and np.isnan(m[2]).all()
    )  # no class-2 image


def test_confusion_difference_and_per_class_accuracy_golden(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "sweep"
    write_pair(root, {0: 10, 1: 6}, ddp_b=True)  # vanilla's files come from two DDP ranks
    b = load_predictions(next(root.glob("strategy=vanilla*seed=0*")))
    assert b is not None and b.has_classes and np.array_equal(b.label, LABEL)  # ranks joined, in order
    s = Summary.of([root])
    [d] = s.confusions
    assert (d.a, d.b, d.seeds) == ("self_distill:same", "vanilla", [0, 1])
    # ships: seed 0 half taken for dogs (50 %), seed 1 30 %; vanilla never wrong
    assert d.matrix[2].tolist() == pytest.approx([0.0, 40.0, -40.0, 0.0])
    assert np.abs(d.matrix[:2]).max() == 0.0
    ship = d.per_class[2]
    half = T975_DF1 * np.std([-50.0, -30.0], ddof=1) / np.sqrt(2)
    assert (ship.mean, ship.low, ship.high) == (
        pytest.approx(-40.0),
        pytest.approx(-40 - half),
        pytest.approx(-40 + half),
    )
    assert s.classes == ["cat", "dog", "ship", "frog"]
    out = tmp_path / "report"
    assert main([str(root), "--out", str(out)]) == 0
    assert (out / "confusion_self_distill-same_minus_vanilla.png").stat().st_size > 1000
    with open(out / "per_class.csv") as handle:
        rows = {(r["strategy"], r["condition"], r["class_name"]): r for r in csv.DictReader(handle)}
    noisy = rows[("self_distill:same", "noisy", "ship")]
    assert float(noisy["mean"]) == pytest.approx(0.6) and noisy["n"] == "2"  # (0.5 + 0.7) / 2
    assert float(rows[("self_distill:same", "clean", "ship")]["mean"]) == 1.0  # pred_clean: all right
    assert "skipped" not in capsys.readouterr().out  # no note


def test_without_predicted_labels_the_figure_is_skipped_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "sweep"
    write_pair(root, {0: 10, 1: 6}, arrays=False)  # idx and correct only, as runs wrote them so far
    out = tmp_path / "report"
    assert main([str(root), "--out", str(out), "--confusion", "self_distill*", "vanilla"]) == 0
    note = "confusion matrices: skipped: no paired runs of self_distill:same − vanilla have predicted labels"
    printed = capsys.readouterr().out
    assert sum(note in line for line in printed.splitlines()) == 1 and note in (out / "report.md").read_text()
    assert not list(out.glob("confusion_*.png")) and not (out / "per_class.csv").exists()


def test_predictions_that_contradict_correct_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "sweep"
    a = predictions(10)
    fake_run(
        root, "vanilla", 0.2, 0, 0.9, correct=np.ones(80, dtype=bool), arrays=a
    )  # 10 'correct' are wrong
    assert main([str(root), "--out", str(tmp_path / "report")]) == 2
    assert "correct differs from pred == label" in capsys.readouterr().err


def test_the_pairs_drawn_follow_the_confusion_flag(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    write_pair(root, {0: 10, 1: 6})
    fake_run(root, "student_teacher", 0.2, 0, 1.0, method="student_teacher", correct=LABEL == LABEL,
             arrays=predictions(0))  # fmt: skip
    s = Summary.of([root], options=Options(confusion=(("student_teacher", "self_distill*"),)))
    assert [(d.a, d.b, d.seeds) for d in s.confusions] == [("student_teacher", "self_distill:same", [0])]
    assert s.confusions[0].matrix[2].tolist() == pytest.approx([0.0, -50.0, 50.0, 0.0])
    assert s.confusions[0].per_class[2] is None  # one seed: no interval
