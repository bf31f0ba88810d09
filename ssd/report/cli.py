"""The command line: ``python -m ssd.report RUNS... [--out DIR] [--compare A B] [thresholds]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ssd.report.compare import DEFAULT_CONTRASTS, VERDICT_CIS, Options
from ssd.report.console_summary import console_summary
from ssd.report.csvout import write_csvs
from ssd.report.markdown import markdown
from ssd.report.plots import plot
from ssd.report.predictions import load_predictions
from ssd.report.summary import Summary

DESCRIPTION = "A sweep's comparison tables, paired differences with 95% CIs, verdicts and plots."


def report(
    folders: Sequence[Path],
    out: Path,
    reference: str = "self_distill",
    contrasts: Sequence[tuple[str, str]] = DEFAULT_CONTRASTS,
    options: Options | None = None,
) -> str:
    """Write every output into ``out``; return the console summary (the markdown is ``out/report.md``)."""
    load_predictions.cache_clear()  # files may have changed since an earlier call in this process
    summary = Summary.of(folders, contrasts, options)
    out.mkdir(parents=True, exist_ok=True)
    images = plot(summary, out)
    (out / "report.md").write_text(markdown(summary, reference, images))
    tables = write_csvs(summary, out)
    return console_summary(summary, out, [out / "report.md", *tables, *images])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ssd.report", description=DESCRIPTION)
    p.add_argument(
        "folders", nargs="+", type=Path, help="sweep (or run) folders; every run below them is read"
    )
    p.add_argument("--out", type=Path, default=None, help="output folder (default: <first folder>/report)")
    p.add_argument(
        "--reference", default="self_distill", help="strategy the means-only difference table is computed for"
    )
    pair = {"nargs": 2, "action": "append", "metavar": ("A", "B")}  # a repeatable pair of row patterns
    p.add_argument(
        "--compare",
        **pair,
        help="paired difference A − B (method names or fnmatch patterns such as 'self_distill:*'); "
        "repeat for more; replaces the defaults (each self_distill* minus vanilla, student_teacher and "
        "every denoise variant). The verdict: within --equiv-margin when B is a student_teacher method, "
        "at least --gain-margin when B is a vanilla method, else higher/lower/within noise",
    )
    p.add_argument(
        "--equiv-margin", type=float, default=1.0, help="'A within this many points of B' (default 1)"
    )
    p.add_argument(
        "--gain-margin", type=float, default=2.0, help="'A >= vanilla + this many points' (default 2)"
    )
    p.add_argument(
        "--confusion",
        **pair,
        help="draw the confusion-matrix and per-class accuracy difference A − B (patterns as --compare; "
        "repeat for more; default: the first comparison); needs runs that saved predicted labels",
    )
    p.add_argument("--bootstrap-reps", type=int, default=2000, help="hierarchical bootstrap resamples")
    p.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap's random numbers")
    p.add_argument(
        "--verdict-ci",
        choices=VERDICT_CIS,
        default="t",
        help="the interval verdicts use: paired t over seeds (default) or the hierarchical bootstrap",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    missing = [str(f) for f in args.folders if not f.is_dir()]
    if missing:
        print(f"ssd.report: not a folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    out = args.out or args.folders[0] / "report"
    try:
        confusion = tuple(tuple(c) for c in args.confusion or ())
        options = Options(
            args.equiv_margin,
            args.gain_margin,
            args.bootstrap_reps,
            args.bootstrap_seed,
            args.verdict_ci,
            confusion,
        )
        contrasts = [tuple(c) for c in args.compare] if args.compare else DEFAULT_CONTRASTS
        text = report(args.folders, out, args.reference, contrasts, options)
    except (FileNotFoundError, ValueError) as err:
        print(f"ssd.report: {err}", file=sys.stderr)
        return 2
    print(text)
    return 0
