"""Per-class accuracy, and the confusion-matrix difference between two methods, from per-image labels.

Reads ``pred``, ``pred_clean`` and ``label`` of ``test_predictions.npz`` (see ``ssd.report.predictions``).
A confusion matrix here is a table of rates: row = true class, column = predicted class, each row in %
of that class's test images, so the diagonal is the per-class accuracy. A difference A − B pairs the
runs of each seed (the same test images and evaluation noise) and averages the per-seed differences;
a class's accuracy difference gets the paired t interval over seeds, like the overall accuracy.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ssd.report.compare import Difference, RunIndex, common_seeds, contrast_pairs
from ssd.report.predictions import Predictions, load_predictions
from ssd.report.runs import Column, Run
from ssd.report.stats import Interval, Stat, paired_t

#: what a per-class number was measured on -> the per-image array of predicted classes
CONDITIONS = {"noisy": "pred", "clean": "pred_clean"}
WHERE = "arrays 'pred' and 'label' in main/test_predictions.npz"


def rate_matrix(pred: np.ndarray, label: np.ndarray, classes: int) -> np.ndarray:
    """classes x classes: % of class i's images predicted as j (NaN rows for a class without images)."""
    counts = np.bincount(label * classes + pred, minlength=classes * classes).reshape(classes, classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100.0 * counts / counts.sum(axis=1, keepdims=True)


def class_count(runs: Sequence[Run], known: int | None) -> int | None:
    """The number of classes: the data's (``known``), or more if a predicted or true class says so."""
    seen = [p for r in runs if (p := load_predictions(r.path)) is not None and p.has_classes]
    largest = max((int(max(p.pred.max(), p.label.max(), -1)) for p in seen if p.idx.size), default=-1)
    return max(known or 0, largest + 1) or None


def class_names(runs: Sequence[Run], classes: int) -> list[str]:
    """Names from a per-image file's ``classes`` array, else the class indices."""
    for run in runs:
        found = load_predictions(run.path)
        if found is not None and found.classes and len(found.classes) == classes:
            return list(found.classes)
    return [str(i) for i in range(classes)]


@dataclass
class ConfusionDifference:
    """A − B at one noise level: mean over paired seeds of the rate matrices' and per-class differences."""

    a: str
    b: str
    column: Column
    seeds: list[int]
    matrix: np.ndarray  # classes x classes, points
    per_class: list[Interval | None]  # paired t over seeds (None from one seed)
    per_class_mean: np.ndarray  # points

    @property
    def n(self) -> int:
        return len(self.seeds)


def _with_classes(run: Run) -> Predictions | None:
    found = load_predictions(run.path)
    return found if found is not None and found.has_classes else None


def confusion_difference(
    index: RunIndex, a: str, b: str, column: Column, classes: int
) -> ConfusionDifference | None:
    """A − B at ``column`` over the seeds where both runs have predicted labels for the same images."""
    seeds, diffs = [], []
    for seed in common_seeds(index, a, b, column):
        pa, pb = _with_classes(index[(a, column, seed)]), _with_classes(index[(b, column, seed)])
        if pa is None or pb is None or not np.array_equal(pa.idx, pb.idx):
            continue
        seeds.append(seed)
        diffs.append(rate_matrix(pa.pred, pa.label, classes) - rate_matrix(pb.pred, pb.label, classes))
    if not seeds:
        return None
    diagonals = np.stack([np.diag(d) for d in diffs])  # seeds x classes
    per_class = [paired_t(list(diagonals[:, c])) for c in range(classes)]
    with np.errstate(invalid="ignore"):
        return ConfusionDifference(a, b, column, seeds, np.mean(diffs, axis=0), per_class, diagonals.mean(0))


def confusion_pairs(
    labels: Sequence[str], diffs: Sequence[Difference], patterns: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The (A, B) rows to draw: those matching ``patterns``, else the report's first comparison."""
    if patterns:
        return contrast_pairs(labels, patterns)
    return [(diffs[0].a, diffs[0].b)] if diffs else []


def confusion_differences(
    index: RunIndex, pairs: Sequence[tuple[str, str]], columns: Sequence[Column], classes: int | None
) -> tuple[list[ConfusionDifference], str]:
    """Every pair's difference at every column that has one, and a one-line note when there is none."""
    if not pairs:
        return [], ""  # nothing compared, nothing to say
    found = [
        d
        for a, b in pairs
        for column in columns
        if classes and (d := confusion_difference(index, a, b, column, classes)) is not None
    ]
    if found:
        return found, ""
    names = ", ".join(f"{a} − {b}" for a, b in pairs)
    return [], f"confusion matrices: skipped: no paired runs of {names} have predicted labels ({WHERE})"


def per_class_stats(complete: Sequence[Run], classes: int | None) -> dict[tuple[str, Column, str, int], Stat]:
    """(row, column, condition, class) -> per-class accuracy (a fraction) over seeds, noisy and clean."""
    values: dict[tuple[str, Column, str, int], list[float]] = defaultdict(list)
    for run in complete:
        found = _with_classes(run)
        if found is None or not classes:
            continue
        for condition, array in CONDITIONS.items():
            pred = getattr(found, array)
            if pred is not None:
                accuracy = np.diag(rate_matrix(pred, found.label, classes))
                for c in np.flatnonzero(~np.isnan(accuracy)):
                    values[(run.label, run.column, condition, int(c))].append(float(accuracy[c]) / 100)
    return {key: Stat.of(vs) for key, vs in values.items()}
