"""``python -m ssd.report <sweep folders...> [--out DIR]``: a sweep's comparison tables, intervals and plots.

Reads every run folder below the given folders (``results.json``, else the config a job left behind)
and writes into ``--out`` (default ``<folder>/report``):

* ``report.md``: the setting (data, #train/#test images, model, epochs, seeds); noisy and clean test
  accuracy, method x noise level, mean ± std with n; per noise level the 95% t-interval and the training
  compute; paired differences (each ``self_distill*`` minus vanilla, student_teacher and every denoise
  variant, or ``--compare A B``) with a paired-t and, where per-image files exist, a hierarchical
  bootstrap interval; one verdict line per comparison and noise level; robustness curves; feature
  quality; every failed, incomplete or duplicate run (listed, never silently dropped);
* ``accuracy.csv``, ``curves.csv``, ``runs.csv``, ``differences.csv``, ``feature_quality.csv``;
* ``accuracy_vs_noise.png``, ``robustness_curves.png``, ``differences.png``.

Modules, bottom up: ``stats`` (intervals, bootstrap, verdict rules), ``runs`` (finding runs, rows),
``predictions`` (per-image files), ``facts`` (compute, setting), ``compare`` (paired differences),
``summary`` (all numbers), ``markdown``, ``csvout``, ``plots``, ``cli``.
"""

from ssd.report.cli import main, report
from ssd.report.compare import Options
from ssd.report.runs import Run, find_runs
from ssd.report.stats import Stat
from ssd.report.summary import Summary

__all__ = ["Options", "Run", "Stat", "Summary", "find_runs", "main", "report"]
