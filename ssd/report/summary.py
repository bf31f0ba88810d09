"""Everything the report's outputs are made of: the runs, their cells' statistics and the comparisons.

One object so that the markdown, the CSV files and the plots all show the same numbers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssd.report.compare import DEFAULT_CONTRASTS, Difference, Options, differences
from ssd.report.facts import CellCompute, cell_compute, describe_setting
from ssd.report.runs import Column, Run, column_label, find_runs, row_order, unique_complete
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
        columns = sorted({r.column for r in complete})
        labels = row_order(r.label for r in complete)
        several = len({c[0] for c in columns}) > 1
        return cls(
            folders, runs, complete, duplicates, labels, columns,
            [column_label(c, several) for c in columns], cell_stats(complete, "test_acc"),
            cell_stats(complete, "clean_acc"), curve_stats(complete), feature_stats(complete),
            cell_compute(complete), differences(complete, labels, columns, contrasts, options, several),
            describe_setting(complete), options,
        )  # fmt: skip

    @property
    def unfinished(self) -> list[Run]:
        return [r for r in self.runs if r.status != "complete"]

    @property
    def several_noises(self) -> bool:
        return len({c[0] for c in self.columns}) > 1
