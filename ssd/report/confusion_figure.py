"""``confusion_<A>_minus_<B>.png``: where two methods' mistakes differ, one column per noise level.

Top: the confusion-matrix difference A − B (row = true class, column = predicted class, points of that
class's images; blue: A predicts that cell more often, red: less), so a gain on the diagonal and the
confusions it came from read together. Bottom: each class's accuracy difference with its 95% paired t
interval over seeds, coloured when the interval excludes 0.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ssd.report.confusion import ConfusionDifference
from ssd.report.figure_kit import FONT, MIN_WIDTH, VERDICT_COLOURS, pyplot, save, suptitle, text_inches
from ssd.report.summary import Summary

MAX_NUMBERS = 12  # classes up to which every cell's value is written in it
MAX_CLASSES = 20  # classes up to which every class gets a tick and a per-class row; beyond, the extremes


def file_name(a: str, b: str) -> str:
    slug = lambda t: re.sub(r"[^\w.-]+", "-", t).strip("-")  # noqa: E731
    return f"confusion_{slug(a)}_minus_{slug(b)}.png"


def _heatmap(ax: Any, d: ConfusionDifference, names: list[str], limit: float) -> Any:
    k = len(names)
    image = ax.imshow(d.matrix, cmap="RdBu", vmin=-limit, vmax=limit)
    rectangle = pyplot().Rectangle
    for i in range(k if k <= MAX_CLASSES else 0):  # the diagonal: per-class accuracy
        ax.add_patch(rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="0.2", lw=0.7))
    if k <= MAX_NUMBERS:
        for i, j in np.ndindex(k, k):
            value = d.matrix[i, j]
            if np.isfinite(value) and abs(value) >= 0.05:
                strong = abs(value) > 0.6 * limit
                ax.text(j, i, f"{value:+.1f}", ha="center", va="center", fontsize=5.5,
                        color="white" if strong else "0.15")  # fmt: skip
    ticks = range(k) if k <= MAX_CLASSES else range(0, k, max(1, k // 10))
    ax.set_xticks(list(ticks), [names[t] for t in ticks], rotation=90, fontsize=FONT - 1)
    ax.set_yticks(list(ticks), [names[t] for t in ticks], fontsize=FONT - 1)
    ax.set_xlabel("predicted class", fontsize=FONT)
    ax.set_ylabel("true class", fontsize=FONT)
    return image


def shown_classes(d: ConfusionDifference) -> list[int]:
    """Every class in order, or with many classes the ``MAX_CLASSES`` with the largest gains and losses."""
    finite = [c for c in range(len(d.per_class_mean)) if np.isfinite(d.per_class_mean[c])]
    if len(finite) <= MAX_CLASSES:
        return finite
    ranked = sorted(finite, key=lambda c: d.per_class_mean[c])
    return ranked[-(MAX_CLASSES // 2) :][::-1] + ranked[: MAX_CLASSES // 2][::-1]


def _per_class(ax: Any, d: ConfusionDifference, names: list[str]) -> None:
    shown = shown_classes(d)
    for y, c in enumerate(shown):
        mean, ci = d.per_class_mean[c], d.per_class[c]
        supported = None if ci is None or ci.contains_zero else ci.low > 0
        colour = VERDICT_COLOURS[supported]
        err = [[mean - ci.low], [ci.high - mean]] if ci else None
        ax.errorbar(mean, y, xerr=err, fmt="o", color=colour, mfc="white" if ci is None else colour, ms=4,
                    capsize=2, lw=1.2)  # fmt: skip
    ax.axvline(0, color="0.25", lw=0.8)
    ax.set_yticks(range(len(shown)), [names[c] for c in shown], fontsize=FONT - 1)
    ax.set_ylim(len(shown) - 0.5, -0.5)
    extremes = len(shown) < len(names)
    ax.set_xlabel(
        f"per-class accuracy A − B (points){'; the largest gains and losses' if extremes else ''}",
        fontsize=FONT,
    )
    ax.grid(axis="x", alpha=0.3)
    ax.tick_params(labelsize=FONT - 1)


def confusion_figure(s: Summary, a: str, b: str, out: Path) -> Path:
    """One figure for A − B: a heatmap and the per-class differences at each noise level it has."""
    plt = pyplot()
    found = [d for d in s.confusions if (d.a, d.b) == (a, b)]
    names = s.classes
    k, ncol = len(names), len(found)
    side = max(2.6, min(6.0, 0.28 * k + 0.8 + text_inches(names, FONT - 1)))
    bars = max(2.2, 0.2 * min(k, MAX_CLASSES))
    fig, axes = plt.subplots(2, ncol, figsize=(max(MIN_WIDTH + 1.0, 0.6 + side * ncol), side + bars + 1.0),
                             squeeze=False, layout="constrained", height_ratios=[side, bars])  # fmt: skip
    values = np.concatenate([np.abs(d.matrix[np.isfinite(d.matrix)]) for d in found])
    limit = max(float(values.max()) if values.size else 0.0, 1.0)
    image = None
    for column, d in enumerate(found):
        image = _heatmap(axes[0][column], d, names, limit)
        axes[0][column].set_title(f"{d.column.text(s.several_noises)} (n={d.n} seeds)", fontsize=9)
        _per_class(axes[1][column], d, names)
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="A − B (points of the true class's images)")
    diagonal = "; outlined: the diagonal, per-class accuracy" if k <= MAX_CLASSES else ""
    suptitle(
        fig,
        f"Where {a} (A) and {b} (B) differ, class by class. Top: confusion-matrix difference A − B (blue: A "
        f"predicts the cell more often{diagonal}).\nBottom: per-class accuracy A − B, mean and 95% paired t "
        f"CI over seeds (green / red: CI above / below 0) · {s.setting}",
    )
    return save(fig, out / file_name(a, b))


def confusion_figures(s: Summary, out: Path) -> list[Path]:
    """One figure per compared pair that has confusion differences."""
    pairs = list(dict.fromkeys((d.a, d.b) for d in s.confusions))
    return [confusion_figure(s, a, b, out) for a, b in pairs]
