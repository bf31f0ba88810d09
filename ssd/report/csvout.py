"""The report's numbers as CSV files, for spreadsheets and further analysis.

``accuracy.csv`` (per cell, with the 95% t-interval and compute), ``curves.csv``, ``runs.csv`` (one row
per run), ``differences.csv`` (paired A − B with both intervals and the verdict), ``feature_quality.csv``
and ``per_class.csv`` (per-class accuracy, noisy and clean, where runs saved predicted labels).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ssd.report.facts import training_seconds
from ssd.report.stats import Stat
from ssd.report.summary import Summary


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _std(stat: Stat) -> float | str:
    return stat.std if stat.std is not None else ""


def _ci(stat: Stat) -> list[float | str]:
    return list(stat.ci) if stat.ci else ["", ""]


def write_csvs(s: Summary, out: Path) -> list[Path]:
    """Write every CSV the summary has numbers for; return their paths."""

    def compute(label: str, column: Any, metric: str) -> list[Any]:
        found = s.compute.get((label, column)) if metric == "test_acc" else None
        if found is None:
            return ["", "", ""]
        return [found.seconds, found.complete, "" if found.vanilla_epochs is None else found.vanilla_epochs]

    write_csv(
        out / "accuracy.csv",
        ["strategy", "noise", "level_name", "level", "level_max", "metric", "mean", "std", "n", "ci95_low", "ci95_high",
         "train_seconds", "train_seconds_complete", "vanilla_epoch_equivalents"],
        [
            [lab, *c, metric, st.mean, _std(st), st.n, *_ci(st), *compute(lab, c, metric)]
            for metric, stats in (("test_acc", s.acc), ("clean_acc", s.clean))
            for (lab, c), st in sorted(stats.items())
        ],
    )  # fmt: skip
    write_csv(
        out / "curves.csv",
        ["strategy", "noise", "level_name", "train_level", "train_level_max", "test_level", "mean", "std", "n", "ci95_low", "ci95_high"],
        [[lab, *c, lvl, st.mean, _std(st), st.n, *_ci(st)] for (lab, c, lvl), st in sorted(s.curves.items())],
    )  # fmt: skip
    write_csv(
        out / "runs.csv",
        ["run", "status", "strategy", "method", "setting", "noise", "level_name", "level", "level_max", "seed", "test_acc",
         "clean_acc", "train_seconds", "wall_time_s", "error"],
        [
            [r.path, r.status, r.strategy, r.method, r.label, r.noise, r.level_name, r.level, r.column.level_max if r.level is not None else "", r.seed, r.test_acc,
             r.clean_acc, (t.seconds if (t := training_seconds(r)) else ""), r.results.get("wall_time_s", ""),
             r.error or ""]
            for r in s.runs
        ],
    )  # fmt: skip
    write_csv(
        out / "differences.csv",
        ["a", "b", "noise", "level_name", "level", "level_max", "n", "seeds", "mean", "t_low", "t_high", "boot_mean",
         "boot_low", "boot_high", "boot_note", "kind", "verdict"],
        [
            [d.a, d.b, *d.column, d.n, " ".join(map(str, d.seeds)), d.mean,
             *([d.t.low, d.t.high] if d.t else ["", ""]),
             *([d.boot.mean, d.boot.low, d.boot.high] if d.boot else ["", "", ""]), d.boot_note, d.kind, d.verdict]
            for d in s.diffs
        ],
    )  # fmt: skip
    if s.features:
        write_csv(
            out / "feature_quality.csv",
            ["strategy", "noise", "level", "level_max", "network", "metric", "tap", "mean", "std", "n"],
            [
                [lab, c.noise, c.level, c.level_max, net, metric, tap, st.mean, _std(st), st.n]
                for (lab, c, net, metric, tap), st in sorted(s.features.items())
            ],
        )
    if s.per_class:
        write_csv(
            out / "per_class.csv",
            ["strategy", "noise", "level_name", "level", "level_max", "condition", "class", "class_name", "mean",
             "std", "n", "ci95_low", "ci95_high"],
            [
                [lab, *c, condition, k, s.classes[k], st.mean, _std(st), st.n, *_ci(st)]
                for (lab, c, condition, k), st in sorted(s.per_class.items())
            ],
        )  # fmt: skip
    names = ["accuracy", "curves", "runs", "differences", "feature_quality", "per_class"]
    return [out / f"{n}.csv" for n in names if (out / f"{n}.csv").exists()]
