"""Statistics of a sweep: mean ± std with a t-interval, paired differences, and a hierarchical bootstrap.

Kept free of scipy (not a dependency): the Student t quantile comes from the regularised incomplete
beta function, which is accurate to ~1e-10 here, far below the reported two decimals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: the confidence level of every interval in the report
CONFIDENCE = 0.95


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for num in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t (bisection on the cdf)."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"t_quantile: p={p!r} must be in (0, 1) and df={df!r} > 0")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


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
    per_seed: Sequence[np.ndarray], reps: int = 2000, seed: int = 0, scale: float = 100.0
) -> Interval:
    """Percentile 95% interval of the mean paired difference, resampling seeds, then test images.

    ``per_seed[s]`` holds one seed's per-image differences ``correct_A - correct_B`` (values -1, 0, 1;
    the same images for both methods, so each image's resampling is shared by the two). Resampling N
    images of a seed with replacement only changes how many of them are -1, 0 and +1, which is a
    multinomial draw: exactly the image-level bootstrap, without materialising reps x N indices.
    """
    if not per_seed or reps < 1:
        raise ValueError(
            f"hierarchical_bootstrap: needs >= 1 seed and reps >= 1 (got {len(per_seed)}, {reps})"
        )
    rng = np.random.default_rng(seed)
    n_seeds = len(per_seed)
    sizes = np.array([d.size for d in per_seed])
    if (sizes == 0).any():
        raise ValueError("hierarchical_bootstrap: a seed has no test images")
    probs = [np.array([(d == v).sum() for v in (-1, 0, 1)], dtype=float) / d.size for d in per_seed]
    chosen = rng.integers(0, n_seeds, size=(reps, n_seeds))  # level 1: seeds with replacement
    means = np.empty((n_seeds, reps, n_seeds))
    for s, p in enumerate(probs):  # level 2: images of every slot whose seed is s
        counts = rng.multinomial(sizes[s], p, size=(reps, n_seeds))
        means[s] = (counts[..., 2] - counts[..., 0]) / sizes[s]
    boot = means[chosen, np.arange(reps)[:, None], np.arange(n_seeds)[None, :]].mean(axis=1) * scale
    point = float(np.mean([d.mean() for d in per_seed])) * scale
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
