"""Paired differences A − B per noise level, their 95% intervals, and the verdict each interval supports.

Runs pair by seed: the same seed of two methods at the same noise level (and so the same test images
with the same fixed evaluation noise). Two intervals per difference:

* **paired t over seeds**: the t-interval of the per-seed accuracy differences (needs >= 2 seeds);
* **hierarchical bootstrap**: only when every paired run left per-image files over the same test images;
  resamples the seeds and, once per replicate, the test images, shared by every seed and both methods
  (see ``stats.hierarchical_bootstrap``).

Verdicts use the paired t interval unless ``verdict_ci="bootstrap"`` (and a bootstrap exists): with
three seeds a bootstrap over seeds under-covers, the t interval does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from ssd.report.predictions import paired_differences
from ssd.report.runs import Column, Run, method_of
from ssd.report.stats import Interval, at_least, hierarchical_bootstrap, paired_t, sign, signed, within_margin

#: (A, B) patterns compared by default, when runs of both exist (fnmatch on the row's method or label)
DEFAULT_CONTRASTS = (
    ("self_distill*", "vanilla"),
    ("self_distill*", "student_teacher"),
    ("self_distill*", "denoise"),
    ("self_distill*", "denoise:*"),
    ("self_distill*", "denoise_frozen*"),
)
VERDICT_CIS = ("t", "bootstrap")


@dataclass
class Options:
    """Thresholds of the verdicts and settings of the bootstrap (the CLI's flags)."""

    equiv_margin: float = 1.0  # "A within this many points of B" (B = student_teacher)
    gain_margin: float = 2.0  # "A >= B + this many points" (B = vanilla)
    reps: int = 2000
    seed: int = 0
    verdict_ci: str = "t"
    confusion: tuple[tuple[str, str], ...] = ()  # (A, B) patterns whose confusion difference is drawn

    def __post_init__(self) -> None:
        if self.verdict_ci not in VERDICT_CIS:
            raise ValueError(f"verdict_ci={self.verdict_ci!r}; allowed: {', '.join(VERDICT_CIS)}")
        if self.reps < 1 or self.equiv_margin < 0:
            raise ValueError(
                f"reps={self.reps}, equiv_margin={self.equiv_margin}; allowed: reps >= 1, margin >= 0"
            )


@dataclass
class Difference:
    """A − B at one noise level, in points of noisy test accuracy."""

    a: str
    b: str
    column: Column
    seeds: list[int]
    mean: float
    t: Interval | None
    boot: Interval | None
    boot_note: str  # why there is no bootstrap interval
    kind: str  # equiv | gain | diff
    verdict: str = ""
    claim: str = ""  # what the verdict answers, e.g. "self_distill:same ≥ vanilla + 2 pts"
    goal: str = ""  # the same as a short question: "≥ +2 pts?", "within ±1 pt?", "higher or lower?"
    line: str = field(default="", repr=False)

    @property
    def n(self) -> int:
        return len(self.seeds)

    def verdict_ci(self, opts: Options) -> Interval | None:
        """The interval the verdict is read from: the bootstrap when asked for and made, else paired t."""
        return self.boot if opts.verdict_ci == "bootstrap" and self.boot is not None else self.t

    @property
    def supported(self) -> bool | None:
        """True when the verdict supports the claim (yes / higher), False when it refutes it (no / lower),
        None when undecided or within noise."""
        return {"yes": True, "higher": True, "no": False, "lower": False}.get(self.verdict)


def matches(label: str, pattern: str) -> bool:
    return fnmatchcase(label, pattern) or fnmatchcase(method_of(label), pattern)


def contrast_pairs(labels: Sequence[str], contrasts: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """(A, B) row labels for every contrast whose two patterns match rows, in row order, no repeats."""
    pairs: list[tuple[str, str]] = []
    for pa, pb in contrasts:
        for a in (lab for lab in labels if matches(lab, pa)):
            for b in (lab for lab in labels if matches(lab, pb) and lab != a):
                if (a, b) not in pairs:
                    pairs.append((a, b))
    return pairs


def kind_of(b: str) -> str:
    """equiv against the clean-teacher student, gain against vanilla, a plain sign test otherwise."""
    base = method_of(b).split(":", 1)[0]
    return {"student_teacher": "equiv", "vanilla": "gain"}.get(base, "diff")


RunIndex = dict[tuple[str, Column, int], Run]


def run_index(complete: Sequence[Run]) -> RunIndex:
    """(row label, column, seed) -> the complete run with a test accuracy there."""
    return {(r.label, r.column, r.seed): r for r in complete if r.test_acc is not None and r.seed is not None}


def common_seeds(index: RunIndex, a: str, b: str, column: Column) -> list[int]:
    """The seeds both ``a`` and ``b`` have a run of at ``column``: the pairs of a paired difference."""
    return sorted(s for (lab, col, s) in index if lab == a and col == column and (b, column, s) in index)


def _bootstrap(index: RunIndex, d: Difference, opts: Options) -> tuple[Interval | None, str]:
    pairs = [(index[(d.a, d.column, s)].path, index[(d.b, d.column, s)].path) for s in d.seeds]
    per_seed, why = paired_differences(pairs)
    return (None, why) if per_seed is None else (hierarchical_bootstrap(per_seed, opts.reps, opts.seed), "")


def judge(d: Difference, opts: Options, several_noises: bool = False) -> None:
    """Fill ``d.verdict`` (yes/no/undecided, or higher/lower/within noise) and its one-line sentence."""
    ci = d.verdict_ci(opts)
    if d.kind == "equiv":
        d.verdict, d.goal = within_margin(ci, opts.equiv_margin), f"within ±{opts.equiv_margin:g} pt?"
        d.claim = f"{d.a} within {opts.equiv_margin:g} pt of {d.b}"
    elif d.kind == "gain":
        d.verdict, d.goal = at_least(ci, opts.gain_margin), f"≥ +{opts.gain_margin:g} pts?"
        d.claim = f"{d.a} ≥ {d.b} + {opts.gain_margin:g} pts"
    else:
        d.verdict, d.goal, d.claim = sign(ci), "higher or lower?", f"{d.a} vs {d.b}"
    word = f"{d.verdict} at this n" if d.verdict == "undecided" else d.verdict
    if ci is None:
        detail = f"{d.a} − {d.b} = {signed(d.mean)} pts from n={d.n} seed; no interval from one seed"
    else:
        detail = f"{d.a} − {d.b} = {ci.text()} pts, 95% CI by {ci.how}, n={d.n}"
        if ci.contains_zero and d.verdict != "within noise":
            detail += "; within noise"
    if opts.verdict_ci == "bootstrap" and d.boot is None and d.boot_note:
        detail += f"; no bootstrap ({d.boot_note}), paired t used"
    d.line = f"{d.column.text(several_noises)}: {d.claim}: {word} ({detail})"


def differences(
    complete: Sequence[Run],
    labels: Sequence[str],
    columns: Sequence[Column],
    contrasts: Sequence[tuple[str, str]],
    opts: Options,
    several_noises: bool = False,
) -> list[Difference]:
    """Every A − B of ``contrasts`` at every noise level where both have runs of a common seed."""
    index = run_index(complete)
    out = []
    for a, b in contrast_pairs(labels, contrasts):
        for column in columns:
            seeds = common_seeds(index, a, b, column)
            if not seeds:
                continue
            diffs = [(index[(a, column, s)].test_acc - index[(b, column, s)].test_acc) * 100 for s in seeds]
            d = Difference(
                a, b, column, seeds, sum(diffs) / len(diffs), paired_t(diffs), None, "", kind_of(b)
            )
            d.boot, d.boot_note = _bootstrap(index, d, opts)
            judge(d, opts, several_noises)
            out.append(d)
    return out
