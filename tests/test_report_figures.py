"""What the report's figures show, read from the figures themselves: one interval per comparison with its
thresholds written on it, robustness curves from 0 with the chance level, row labels that wrap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from matplotlib.container import ErrorbarContainer

from ssd.report import Summary, plots
from tests.test_report import fake_run

pytestmark = pytest.mark.usefixtures("one_thread")

ACCURACY = {  # method -> (strategy, accuracy at sigma 0.1 for seeds 0, 1, 2)
    "vanilla": ("vanilla", (0.50, 0.51, 0.52)),
    "student_teacher": ("student_teacher", (0.55, 0.555, 0.56)),
    "self_distill:same": ("self_distill", (0.551, 0.558, 0.565)),
    "denoise:clean": ("denoise", (0.40, 0.43, 0.41)),
}


@pytest.fixture
def summary(tmp_path: Path) -> Summary:
    root = tmp_path / "sweep"
    for method, (strategy, accs) in ACCURACY.items():
        for seed, acc in enumerate(accs):
            fake_run(root, strategy, 0.1, seed, acc, method=method)
    fake_run(root, "vanilla", 0.3, 0, 0.45, method="vanilla")  # one seed at sigma=0.3
    fake_run(root, "self_distill", 0.3, 0, 0.46, method="self_distill:same")
    return Summary.of([root])


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The figures the report draws, by file name, kept open instead of written."""
    kept: dict[str, Any] = {}
    monkeypatch.setattr(plots, "save", lambda fig, path: kept.setdefault(path.name, fig) and path)
    return kept


def texts(ax: Any) -> list[str]:
    return [t.get_text() for t in ax.texts]


def test_differences_show_one_interval_per_comparison_and_their_thresholds(
    summary: Summary, figures: dict[str, Any], tmp_path: Path
) -> None:
    plots.differences_figure(summary, tmp_path)
    fig = figures["differences.png"]
    left, right = fig.axes  # sigma 0.1 and 0.3
    rows = [t.get_text() for t in left.get_yticklabels()]
    assert rows == [
        "self_distill:same − vanilla\n≥ +2 pts?",
        "self_distill:same − student_teacher\nwithin ±1 pt?",
        "self_distill:same − denoise:clean\nhigher or lower?",
    ]
    intervals = [c for c in left.containers if isinstance(c, ErrorbarContainer)]
    assert len(intervals) == 3  # one interval per row, no second marker
    assert texts(left).count("+2") == 1 and texts(left).count("-1") == 1 and texts(left).count("+1") == 1
    assert {"yes", "higher"} <= set(texts(left))  # each row's verdict beside its interval
    assert "1 seed" in texts(right) and not fig.legends  # nothing to decode elsewhere


def test_robustness_curves_start_at_zero_and_show_chance(
    summary: Summary, figures: dict[str, Any], tmp_path: Path
) -> None:
    plots.curves_figure(summary, tmp_path)
    ax = figures["robustness_curves.png"].axes[0]
    assert ax.get_ylim()[0] == 0.0 and ax.get_ylim()[1] <= 100.0
    chance = [line for line in ax.get_lines() if list(line.get_ydata()) == [25.0, 25.0]]  # 4 classes
    assert chance and "chance (1/4)" in texts(ax)


def test_long_row_labels_wrap_instead_of_squeezing_the_panels(
    tmp_path: Path, figures: dict[str, Any]
) -> None:
    root = tmp_path / "sweep"
    many = {f"k{i}": i for i in range(11)}  # an 11-key label: "vanilla (strategy.k0=0, ...)"
    for seed in (0, 1):
        fake_run(root, "vanilla", 0.1, seed, 0.5, keys=many)
        fake_run(root, "vanilla", 0.1, seed, 0.6, keys={k: v + 1 for k, v in many.items()})
    s = Summary.of([root])
    plots.accuracy_figure(s, tmp_path)
    fig = figures["accuracy_vs_noise.png"]
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == 2 and all(max(len(line) for line in lab.splitlines()) <= 44 for lab in labels)
    assert fig.get_figwidth() > 3.0 + 2.0  # the panel keeps its width beside the labels
