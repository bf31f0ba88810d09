"""Everything the report's outputs are made of: the runs, their cells' statistics and the comparisons.

One object so that the markdown, the CSV files and the plots all show the same numbers.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssd.report.compare import DEFAULT_CONTRASTS, Difference, Options, differences, run_index
from ssd.report.confusion import (
    ConfusionDifference,
    class_count,
    class_names,
    confusion_differences,
    confusion_pairs,
    per_class_stats,
)
from ssd.report.facts import CellCompute, cell_compute, describe_setting, num_classes
from ssd.report.runs import STATUSES, Column, Run, find_runs, row_order, unique_complete
from ssd.report.stats import Stat


def cell_stats(runs: Sequence[Run], value: str) -> dict[tuple[str, Column], Stat]:
    """(setting, noise column) -> Stat of ``run.<value>`` over seeds."""
    values: dict[tuple[str, Column], list[float]] = defaultdict(list)
    for run in runs:
        v = getattr(run, value)
        if v is not None:
            values[(run.label, run.column)].append(float(v))
    return {key: Stat.of(vs) for key, vs in values.items()}


def curve_stats(runs: Sequence[Run]) -> dict[tuple[str, Column, float], Stat]:
    """(setting, training noise column, evaluated level) -> Stat over seeds."""
    values: dict[tuple[str, Column, float], list[float]] = defaultdict(list)
    for run in runs:
        for level, acc in run.robustness.items():
            values[(run.label, run.column, level)].append(acc)
    return {key: Stat.of(vs) for key, vs in values.items()}


def feature_stats(runs: Sequence[Run]) -> dict[tuple[str, Column, str, str, str], Stat]:
    """(setting, column, compared network, metric, tap) -> Stat over seeds, from feature_quality.json."""
    values: dict[tuple[str, Column, str, str, str], list[float]] = defaultdict(list)
    for run in runs:
        for network, comparison in ((run.feature_quality or {}).get("comparisons") or {}).items():
            for metric in ("cka", "rel_mse"):
                for tap, v in (comparison.get(metric) or {}).items():
                    if v is not None:
                        values[(run.label, run.column, network, metric, tap)].append(float(v))
    return {key: Stat.of(vs) for key, vs in values.items()}


@dataclass
class Summary:
    """The runs and their statistics."""

    folders: Sequence[Path]
    runs: list[Run]
    complete: list[Run]
    duplicates: list[Run]
    labels: list[str]  # rows (settings), in paper order
    columns: list[Column]  # training noise levels
    names: list[str]  # column headers
    acc: dict[Any, Stat]
    clean: dict[Any, Stat]
    curves: dict[Any, Stat]
    features: dict[Any, Stat]
    compute: dict[tuple[str, Column], CellCompute] = field(default_factory=dict)
    diffs: list[Difference] = field(default_factory=list)
    setting: str = ""
    options: Options = field(default_factory=Options)
    num_classes: int | None = None  # when every complete run's data agrees
    classes: list[str] = field(default_factory=list)  # class names (or indices) of the per-class numbers
    per_class: dict[Any, Stat] = field(default_factory=dict)
    confusions: list[ConfusionDifference] = field(default_factory=list)
    confusion_note: str = ""  # why no confusion matrix is drawn

    @classmethod
    def of(
        cls,
        folders: Sequence[Path],
        contrasts: Sequence[tuple[str, str]] = DEFAULT_CONTRASTS,
        options: Options | None = None,
    ) -> Summary:
        runs = find_runs(folders)
        if not runs:
            raise FileNotFoundError(
                f"no run folders (results.json or a job's config) below {', '.join(map(str, folders))}"
            )
        options = options or Options()
        complete, duplicates = unique_complete(runs)
        columns = sorted(
            {r.column for r in complete}, key=lambda c: (c.noise, c.level_name, c.blind, c)
        )  # fixed first
        labels = row_order(r.label for r in complete)
        several = len({c.noise for c in columns}) > 1
        diffs = differences(complete, labels, columns, contrasts, options, several)
        known = {num_classes(r) for r in complete}
        classes = class_count(complete, known.pop() if len(known) == 1 else None)
        pairs = confusion_pairs(labels, diffs, options.confusion)
        confusions, note = confusion_differences(run_index(complete), pairs, columns, classes)
        return cls(
            folders, runs, complete, duplicates, labels, columns,
            [c.text(several) for c in columns], cell_stats(complete, "test_acc"),
            cell_stats(complete, "clean_acc"), curve_stats(complete), feature_stats(complete),
            cell_compute(complete), diffs, describe_setting(complete), options, classes,
            class_names(complete, classes) if classes else [], per_class_stats(complete, classes),
            confusions, note,
        )  # fmt: skip

    @property
    def unfinished(self) -> list[Run]:
        return [r for r in self.runs if r.status != "complete"]

    @property
    def left_out(self) -> list[tuple[Run, str, str]]:
        """(run, status, why) of every run not in the tables: unfinished ones, then duplicates."""
        out = [(r, r.status, r.error or "") for r in self.unfinished]
        return out + [
            (r, "duplicate", "a newer run of the same setting and seed is used") for r in self.duplicates
        ]

    @property
    def counts_text(self) -> str:
        """``9 complete runs, 3 failed or incomplete (2 failed, 1 incomplete), 0 duplicates left out``."""
        by_status = Counter(r.status for r in self.unfinished)
        detail = ", ".join(f"{by_status[k]} {k}" for k in STATUSES if by_status[k])
        unfinished = f"{len(self.unfinished)} failed or incomplete" + (f" ({detail})" if detail else "")
        runs = f"{len(self.complete)} complete run{'' if len(self.complete) == 1 else 's'}"
        return f"{runs}, {unfinished}, {len(self.duplicates)} duplicates left out"

    @property
    def several_noises(self) -> bool:
        return len({c.noise for c in self.columns}) > 1
