"""What ``python -m ssd.report`` prints: a screenful, not the whole report.

The setting and run counts, the runs left out (failed, interrupted, unfinished, duplicates; the first
few), the noisy-accuracy table, the verdicts as a claim x noise level grid, and the paths written.
Everything else is in ``report.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ssd.report.runs import shown
from ssd.report.summary import Summary

MAX_LEFT_OUT = 8  # runs left out listed by name; the rest are counted


def aligned(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A markdown table whose columns line up in a terminal."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    return [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(r) for r in rows)]


def left_out_lines(s: Summary) -> list[str]:
    """One line per run left out of the tables (the first ``MAX_LEFT_OUT``): status, folder, why."""
    lines = [f"  {status:<11} {shown(r.path, s.folders)}" + (f": {why[:100]}" if why else "")
             for r, status, why in s.left_out[:MAX_LEFT_OUT]]  # fmt: skip
    more = len(s.left_out) - MAX_LEFT_OUT
    return lines + ([f"  … and {more} more (report.md lists them all)"] if more > 0 else [])


def accuracy_lines(s: Summary) -> list[str]:
    rows = [
        [lab, *(s.acc[(lab, c)].text() if (lab, c) in s.acc else "—" for c in s.columns)] for lab in s.labels
    ]
    return ["Noisy test accuracy (%), mean ± std over seeds (n):", *aligned(["method", *s.names], rows)]


def verdict_lines(s: Summary) -> list[str]:
    """The verdicts as a grid: one row per comparison and its claim, one column per noise level."""
    if not s.diffs:
        return []
    rows_of = list(dict.fromkeys((d.a, d.b, d.goal) for d in s.diffs))
    cells = {(d.a, d.b, d.column): d.verdict for d in s.diffs}
    rows = [[f"{a} − {b}", goal, *(cells.get((a, b, c), "—") for c in s.columns)] for a, b, goal in rows_of]
    how = "the hierarchical bootstrap" if s.options.verdict_ci == "bootstrap" else "paired t over seeds"
    return [
        f"Verdicts (95% CI by {how}; details in report.md):",
        *aligned(["A − B", "question", *s.names], rows),
    ]


def console_summary(s: Summary, out: Path, written: Sequence[Path]) -> str:
    """The text printed to the console after a report is written."""
    lines = [f"ssd.report: {', '.join(map(str, s.folders))}", f"Setting: {s.setting}", f"{s.counts_text}."]
    if s.left_out:
        lines += ["Left out of the tables:", *left_out_lines(s)]
    if s.complete:
        lines += ["", *accuracy_lines(s)]
    if s.diffs:
        lines += ["", *verdict_lines(s)]
    if s.confusion_note:
        lines += ["", s.confusion_note]
    lines += ["", f"Wrote {out}/:", *(f"  {p.name}" for p in written)]
    return "\n".join(lines)
