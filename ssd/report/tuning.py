"""``python -m ssd.report.tuning SWEEP... --against PATTERN``: choose settings on validation, never on test.

A tuning sweep trains with a validation split held out of the training images (``data.val_size``);
each run's ``results.json`` holds ``val_acc``, the last validation epoch's accuracy at the training
noise. This table shows only that: per row (the method plus every config value that varies, as in
the report, see ``ssd.report.runs``) and training noise level, the mean ± std over seeds and n, and
the paired difference (same seeds) against the reference row ``--against`` with its 95% paired-t
interval. Test accuracies are deliberately left out, so a choice made from this table never saw
the test set.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from ssd.report.runs import Column, Run, find_runs, row_order, unique_complete
from ssd.report.stats import Stat, paired_t


def val_by_seed(runs: Sequence[Run]) -> dict[tuple[str, Column], dict[int, float]]:
    """(row, noise column) -> {seed: val_acc} of the complete runs that measured one."""
    table: dict[tuple[str, Column], dict[int, float]] = defaultdict(dict)
    for run in runs:
        value = run.results.get("val_acc") if run.results else None
        if value is not None and run.seed is not None:
            table[(run.label, run.column)][int(run.seed)] = float(value)
    return table


def tuning_table(folders: Sequence[Path], against: str) -> str:
    """The markdown table of ``val_acc`` with paired differences against the rows matching ``against``."""
    complete, _ = unique_complete(find_runs(folders))
    values = val_by_seed(complete)
    if not values:
        raise ValueError(
            f"no complete run with a val_acc below {', '.join(map(str, folders))} (set data.val_size)"
        )
    columns = sorted({c for _, c in values}, key=lambda c: (c.noise, c.level, c.level_max))
    lines = [
        f"Validation accuracy (%, last epoch, at the training noise), mean ± std (n); paired difference "
        f"against the row matching {against!r} over the same seeds, points, 95% paired-t CI.",
        "",
    ]
    for column in columns:
        rows = row_order(label for label, c in values if c == column)
        reference = [r for r in rows if fnmatch.fnmatchcase(r, against)]
        if len(reference) > 1:
            raise ValueError(f"--against {against!r} matches several rows at {column.text()}: {reference}")
        base = values[(reference[0], column)] if reference else {}
        lines += [f"### {column.text()}", "", "| row | val acc % | − reference, pts |", "| --- | --- | --- |"]
        for row in rows:
            accs = values[(row, column)]
            diff = paired_t([100 * (accs[s] - base[s]) for s in sorted(accs) if s in base])
            shown = "reference" if reference and row == reference[0] else (diff.text() if diff else "—")
            lines.append(f"| {row} | {Stat.of(list(accs.values())).text()} | {shown} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ssd.report.tuning", description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="sweep folders of runs with a validation split")
    parser.add_argument("--against", default="vanilla", help="the reference row (a name or fnmatch pattern)")
    args = parser.parse_args(argv)
    try:
        print(tuning_table(args.folders, args.against))
    except ValueError as err:
        print(f"ssd.report.tuning: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
