"""Statistics of a sweep: mean ± std with a t-interval, paired differences, and a hierarchical bootstrap.

t quantiles come from ``scipy.stats``. The bootstrap is written here: it resamples at two levels (seeds,
then test images shared by every seed), which ``scipy.stats.bootstrap`` (one level of observations)
does not do; see ``hierarchical_bootstrap``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

#: the confidence level of every interval in the report
CONFIDENCE = 0.95


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"t_quantile: p={p!r} must be in (0, 1) and df={df!r} > 0")
    return float(scipy_stats.t.ppf(p, df))


def t_interval(mean: float, std: float | None, n: int) -> tuple[float, float] | None:
    """The 95% t-interval of a mean from its sample std; None with fewer than two values."""
    if std is None or n < 2:
        return None
    half = t_quantile(0.5 + CONFIDENCE / 2.0, n - 1) * std / math.sqrt(n)
    return mean - half, mean + half


@dataclass
class Stat:
    """Mean, sample std and n of one cell (values over seeds)."""

    mean: float
    std: float | None  # sample std (n-1); None for a single value
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        n = len(values)
        mean = sum(values) / n
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
        return cls(mean, std, n)

    @property
    def ci(self) -> tuple[float, float] | None:
        """95% t-interval of the mean over seeds (None for n=1)."""
        return t_interval(self.mean, self.std, self.n)

    def text(self, scale: float = 100.0, digits: int = 2) -> str:
        spread = f" ± {self.std * scale:.{digits}f}" if self.std is not None else ""
        return f"{self.mean * scale:.{digits}f}{spread} (n={self.n})"

    def ci_text(self, scale: float = 100.0, digits: int = 2) -> str:
        ci = self.ci
        return "—" if ci is None else f"[{ci[0] * scale:.{digits}f}, {ci[1] * scale:.{digits}f}]"


def signed(value: float, digits: int = 2) -> str:
    """``+1.23`` / ``-1.23``, and ``+0.00`` rather than ``-0.00`` for a value that rounds to zero."""
    rounded = round(value, digits)
    return f"{rounded if rounded != 0 else 0.0:+.{digits}f}"


@dataclass
class Interval:
    """A mean difference with its 95% interval, and how the interval was made."""

    mean: float
    low: float
    high: float
    n: int  # seeds (pairs)
    how: str  # "paired t" | "hierarchical bootstrap"

    def text(self, digits: int = 2) -> str:
        return f"{signed(self.mean, digits)} [{signed(self.low, digits)}, {signed(self.high, digits)}]"

    @property
    def contains_zero(self) -> bool:
        return self.low <= 0.0 <= self.high


def paired_t(diffs: Sequence[float]) -> Interval | None:
    """95% paired t-interval of the mean of per-seed differences; None with fewer than two pairs."""
    stat = Stat.of(list(diffs)) if diffs else None
    ci = stat.ci if stat else None
    return None if stat is None or ci is None else Interval(stat.mean, ci[0], ci[1], stat.n, "paired t")


def hierarchical_bootstrap(
    per_seed: np.ndarray | Sequence[np.ndarray], reps: int = 2000, seed: int = 0, scale: float = 100.0
) -> Interval:
    """Percentile 95% interval of the mean paired difference, resampling seeds and test images.

    ``per_seed[s, i]``: seed ``s``'s difference ``correct_A - correct_B`` on test image ``i`` (values
    -1, 0, 1). Every seed and both methods test the same images, so each replicate draws ONE resample
    of the images, shared by every seed and both methods, and resamples the seeds with replacement.
    (Resampling the images separately within each seed would treat the seeds' test sets as independent
    and narrow the interval by up to sqrt(seeds).)

    Images with the same column ``per_seed[:, i]`` (one of at most 3**seeds patterns) are
    interchangeable, so an image resample is a multinomial draw of how often each pattern occurs:
    exactly the image-level bootstrap, without materialising reps x images indices.
    ``scipy.stats.bootstrap`` resamples one level of observations, so it cannot do the seed level.
    """
    try:
        diffs = np.asarray(per_seed, dtype=float)
    except ValueError as err:  # ragged: seeds of different lengths
        raise ValueError("hierarchical_bootstrap: every seed must cover the same test images") from err
    if diffs.ndim != 2 or diffs.shape[0] < 1 or diffs.shape[1] < 1 or reps < 1:
        raise ValueError(
            f"hierarchical_bootstrap: needs seeds x images differences with >= 1 of each and reps >= 1 "
            f"(got shape {diffs.shape}, reps={reps})"
        )
    rng = np.random.default_rng(seed)
    n_seeds, n_images = diffs.shape
    patterns, counts = np.unique(diffs.T, axis=0, return_counts=True)  # K x seeds, K
    chosen = rng.integers(0, n_seeds, size=(reps, n_seeds))  # seeds with replacement
    weights = rng.multinomial(n_images, counts / n_images, size=reps)  # images: one draw per replicate
    seed_means = weights @ patterns / n_images  # reps x seeds, every seed on the same image resample
    boot = np.take_along_axis(seed_means, chosen, axis=1).mean(axis=1) * scale
    point = float(diffs.mean()) * scale
    low, high = np.percentile(boot, [50.0 * (1 - CONFIDENCE), 50.0 * (1 + CONFIDENCE)])
    return Interval(point, float(low), float(high), n_seeds, "hierarchical bootstrap")


# --------------------------------------------------------------------------- verdicts


def within_margin(ci: Interval | None, margin: float) -> str:
    """'yes' when the CI lies inside [-margin, +margin], 'no' when entirely outside, else 'undecided'."""
    if ci is None:
        return "undecided"
    if -margin <= ci.low and ci.high <= margin:
        return "yes"
    if ci.low > margin or ci.high < -margin:
        return "no"
    return "undecided"


def at_least(ci: Interval | None, margin: float) -> str:
    """'yes' when the CI's lower bound is >= margin, 'no' when its upper bound is < margin."""
    if ci is None:
        return "undecided"
    if ci.low >= margin:
        return "yes"
    if ci.high < margin:
        return "no"
    return "undecided"


def sign(ci: Interval | None) -> str:
    """'higher' / 'lower' when the CI excludes 0, 'within noise' when it contains 0."""
    if ci is None:
        return "undecided"
    if ci.low > 0:
        return "higher"
    if ci.high < 0:
        return "lower"
    return "within noise"
