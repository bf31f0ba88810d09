"""``python -m ssd.report <sweep folders...> [--out DIR]``: a sweep's comparison tables, intervals and plots.

Reads every run folder below the given folders (``results.json``, else the config a job left behind),
prints a short summary (run counts, runs left out, the noisy-accuracy table, the verdicts, the files
written) and writes into ``--out`` (default ``<folder>/report``):

* ``report.md``: the setting (data, #train/#test images, model, epochs, seeds); noisy and clean test
  accuracy, method x noise level, mean ± std with n; per noise level the 95% t-interval and the training
  compute; paired differences (each ``self_distill*`` minus vanilla, student_teacher and every denoise
  variant, or ``--compare A B``) with a paired-t and, where per-image files exist, a hierarchical
  bootstrap interval; one verdict line per comparison and noise level; robustness curves; feature
  quality; every failed, interrupted, unfinished, superseded or duplicate run (listed, never silently
  dropped, never renaming a row);
* ``accuracy.csv``, ``curves.csv``, ``runs.csv``, ``differences.csv``, ``feature_quality.csv``, and
  ``per_class.csv`` where runs saved predicted labels;
* ``accuracy_vs_noise.png``, ``robustness_curves.png``, ``differences.png``, and
  ``confusion_<A>_minus_<B>.png`` (``--confusion A B``; default the first comparison) where runs saved
  predicted labels (the arrays are listed in ``ssd.report.predictions``).

Columns are the noise a run was tested at: ``σ=0.2``, or ``σ∈[0.1,0.3]`` for blind training.

Modules, bottom up: ``stats`` (intervals, bootstrap, verdict rules), ``runs`` (finding runs, rows,
columns), ``predictions`` (per-image files), ``facts`` (compute, setting, classes), ``compare`` (paired
differences), ``confusion`` (per-class numbers), ``summary`` (all numbers), ``markdown``, ``csvout``,
``figure_kit``, ``plots``, ``confusion_figure``, ``console_summary``, ``cli``.
"""

from ssd.report.cli import main, report
from ssd.report.compare import Options
from ssd.report.runs import Run, find_runs
from ssd.report.stats import Stat
from ssd.report.summary import Summary

__all__ = ["Options", "Run", "Stat", "Summary", "find_runs", "main", "report"]
