"""The report's figures: per-noise-level accuracy with 95% CIs, robustness curves, paired differences.

Each figure reads without the README: what is drawn, the interval, n and the setting are on it.

* accuracy: one panel per noise level with its own x-range, so methods a few points apart stay apart
  (every point carries its CI, so the zoom cannot exaggerate); a far-off point (a clean-trained model at
  high noise) sits at the panel's edge with its value in words;
* robustness curves: accuracy from 0 (never autoscaled), with the chance level, so a flat curve looks flat;
* differences: one interval per comparison (the one its verdict reads), coloured by the verdict, the
  region where the claim holds shaded on its own row with its thresholds written there.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

from ssd.report.compare import Difference
from ssd.report.confusion_figure import confusion_figures
from ssd.report.figure_kit import (
    FONT,
    GOAL_SHADE,
    MIN_WIDTH,
    VERDICT_COLOURS,
    colours,
    core_range,
    draw_interval,
    footnote,
    pyplot,
    save,
    suptitle,
    text_inches,
    text_lines,
    wrap,
)
from ssd.report.markdown import display
from ssd.report.runs import level_symbol
from ssd.report.summary import Summary

CI_NOTE = "mean and 95% CI over seeds (t-interval)"
ACCURACY = (0.0, 100.0)  # the values an accuracy (%) can take
HOLLOW_NOTE = "hollow: one seed, no interval"


def accuracy_figure(s: Summary, out: Path) -> Path:
    """accuracy_vs_noise.png: one panel per training noise level, methods side by side, 95% CIs and n."""
    plt = pyplot()
    colour = colours(s.labels)
    rows = [lab for lab in s.labels if any((lab, c) in s.acc for c in s.columns)]
    names = [wrap(display(r)) for r in rows]
    ncol = max(1, len(s.columns))
    width = max(MIN_WIDTH, text_inches(names) + 3.0 * ncol)
    fig, axes = plt.subplots(1, ncol, figsize=(width, 1.6 + 0.3 * text_lines(names)), sharey=True, squeeze=False,
                             layout="constrained")  # fmt: skip
    for ax, column in zip(axes[0], s.columns, strict=True):
        points = {}
        for y, label in enumerate(rows):
            stat = s.acc.get((label, column))
            if stat is not None:
                mean = stat.mean * 100
                low, high = (v * 100 for v in stat.ci) if stat.ci else (mean, mean)
                points[label] = (y, (mean, low, high), stat.n)
        lo, hi = core_range([p for _, p, _ in points.values()], ACCURACY)
        ax.set_xlim(lo, hi + 0.14 * (hi - lo))  # room for the n labels
        for label, (y, point, n) in points.items():
            draw_interval(ax, y, point, (lo, hi), colour[label], f"n={n}", hollow=n < 2, possible=ACCURACY)
        ax.set_title(column.text(s.several_noises), fontsize=9)
        ax.set_xlabel("noisy test accuracy (%)", fontsize=8)
        ax.tick_params(labelsize=FONT)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(range(len(rows)), names, fontsize=FONT)
    axes[0][0].set_ylim(len(rows) - 0.5, -0.5)
    suptitle(fig, f"Noisy test accuracy at the training noise level: {CI_NOTE}; {HOLLOW_NOTE}\n{s.setting}")
    return save(fig, out / "accuracy_vs_noise.png")


def curves_figure(s: Summary, out: Path) -> Path | None:
    """robustness_curves.png: accuracy at every test level per training level, from 0 %, with chance."""
    if not s.curves:
        return None
    plt = pyplot()
    colour = colours(s.labels)
    ncol = max(1, len(s.columns))
    width = max(MIN_WIDTH, 1.0 + 3.4 * ncol)
    shown_labels = [lab for lab in s.labels if any(key[0] == lab for key in s.curves)]
    names = [wrap(display(lab)) for lab in shown_labels]
    per_row = max(1, min(len(names), int(width // max(text_inches(names) + 0.5, 1.0))))
    legend = math.ceil(len(names) / per_row) * max(len(n.splitlines()) for n in names) * 0.17
    fig, axes = plt.subplots(1, ncol, figsize=(width, 4.2 + legend), sharey=True, squeeze=False,
                             layout="constrained")  # fmt: skip
    highest = max((st.ci[1] if st.ci else st.mean) * 100 for st in s.curves.values())
    chance = 100.0 / s.num_classes if s.num_classes else None
    for ax, column in zip(axes[0], s.columns, strict=True):
        for label in s.labels:
            pts = sorted(
                (lvl, st) for (lab, col, lvl), st in s.curves.items() if lab == label and col == column
            )
            if not pts:
                continue
            ys = [st.mean * 100 for _, st in pts]
            err = [[(st.mean - st.ci[0]) * 100 if st.ci else 0.0 for _, st in pts],
                   [(st.ci[1] - st.mean) * 100 if st.ci else 0.0 for _, st in pts]]  # fmt: skip
            ax.errorbar([x for x, _ in pts], ys, yerr=err, marker=".", capsize=2, lw=1, color=colour[label])
        if column.blind:  # trained (and tested) on a range of levels
            ax.axvspan(column.level, column.level_max, color="0.85", zorder=0)
        else:
            ax.axvline(column.level, color="0.5", lw=0.8, ls=":")
        ax.text(column.level_max, 0.98, "trained ", transform=ax.get_xaxis_transform(), fontsize=6, color="0.4",
                va="top", ha="right", rotation=90)  # fmt: skip
        if chance is not None:
            ax.axhline(chance, color="0.3", lw=0.8, ls="--")
            ax.text(0.99, chance, f"chance (1/{s.num_classes})", transform=ax.get_yaxis_transform(),
                    ha="right", va="bottom", fontsize=6, color="0.3")  # fmt: skip
        ax.set_title(f"trained at {column.text(s.several_noises)}", fontsize=9)
        ax.set_xlabel(f"test {level_symbol(column.level_name)}", fontsize=8)
        ax.tick_params(labelsize=FONT)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylim(0, min(100.0, 10 * math.ceil((highest + 5) / 10)))  # from 0: flat stays flat
    axes[0][0].set_ylabel("test accuracy (%)", fontsize=8)
    handles = [
        plt.Line2D([], [], color=colour[lab], marker=".", label=n)
        for lab, n in zip(shown_labels, names, strict=True)
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=per_row, fontsize=FONT)
    suptitle(fig, f"Robustness curves: {CI_NOTE}; y axis from 0\n{s.setting}")
    return save(fig, out / "robustness_curves.png")


def _shade_goal(ax: Any, d: Difference, y: float, s: Summary) -> None:
    """Shade where ``d``'s claim holds on its own row, its thresholds written at the shade's edges."""
    o, (left, right) = s.options, ax.get_xlim()
    if d.kind == "equiv":
        edges, x0, width = [-o.equiv_margin, o.equiv_margin], -o.equiv_margin, 2 * o.equiv_margin
    elif d.kind == "gain":
        edges, x0, width = [o.gain_margin], o.gain_margin, max(right - o.gain_margin, 0.0)
    else:
        return
    ax.add_patch(pyplot().Rectangle((x0, y - 0.42), width, 0.84, color=GOAL_SHADE, lw=0, zorder=0))
    for x in edges:
        if left <= x <= right:
            ax.plot([x, x], [y - 0.42, y + 0.42], color="#7aa874", lw=0.8, ls="--", zorder=1)
            ax.text(x, y - 0.4, f"{x:+g}", fontsize=6.5, color="#4d7a48", ha="center", va="top")


def differences_figure(s: Summary, out: Path) -> Path | None:
    """differences.png: one row per comparison A − B, one panel per noise level, one interval per cell."""
    if not s.diffs:
        return None
    plt = pyplot()
    o = s.options
    pairs = list(dict.fromkeys((d.a, d.b) for d in s.diffs))
    goal = {(d.a, d.b): d.goal for d in s.diffs}
    names = [f"{wrap(f'{a} − {b}')}\n{goal[(a, b)]}" for a, b in pairs]
    n_usual = Counter(d.n for d in s.diffs).most_common(1)[0][0]
    how = {ci.how for d in s.diffs if (ci := d.verdict_ci(o)) is not None} or {"paired t"}
    ncol = max(1, len(s.columns))
    width = max(MIN_WIDTH, text_inches(names) + 3.0 * ncol)
    fig, axes = plt.subplots(1, ncol, figsize=(width, 1.7 + 0.26 * text_lines(names)), sharey=True, squeeze=False,
                             layout="constrained")  # fmt: skip
    thresholds = [0.0, -o.equiv_margin, o.equiv_margin, o.gain_margin]
    for ax, column in zip(axes[0], s.columns, strict=True):
        here = [d for d in s.diffs if d.column == column]
        points = {
            id(d): (d.mean, ci.low, ci.high) if (ci := d.verdict_ci(o)) else (d.mean,) * 3 for d in here
        }
        lo, hi = core_range(list(points.values()))
        lo, hi = min(lo, min(thresholds) - 0.5), max(hi, max(thresholds) + 0.5)  # the thresholds always show
        ax.set_xlim(lo, hi + 0.3 * (hi - lo))  # room for the verdict words
        ax.axvline(0, color="0.25", lw=0.9, zorder=1)
        for d in here:
            y = pairs.index((d.a, d.b))
            _shade_goal(ax, d, y, s)
            one_seed = d.verdict_ci(o) is None
            note = "1 seed" if one_seed else d.verdict + (f" (n={d.n})" if d.n != n_usual else "")
            draw_interval(ax, y, points[id(d)], (lo, hi), VERDICT_COLOURS[d.supported], note, hollow=one_seed)
        ax.set_title(column.text(s.several_noises), fontsize=9)
        ax.set_xlabel("A − B (points of noisy test accuracy)", fontsize=8)
        ax.tick_params(labelsize=FONT)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(range(len(pairs)), names, fontsize=FONT)
    axes[0][0].set_ylim(len(pairs) - 0.5, -0.5)
    suptitle(
        fig,
        f"Paired differences A − B: mean and 95% CI ({' / '.join(sorted(how))}) over n={n_usual} seeds, "
        f"same seeds and test images\n{s.setting}",
    )
    footnote(
        fig,
        "shaded: where the row's claim holds · green: the CI says it holds (yes / higher) · red: it "
        "does not (no / lower) · grey: undecided at this n",
    )
    return save(fig, out / "differences.png")


def plot(s: Summary, out: Path) -> list[Path]:
    """Every figure the summary supports; returns the files written."""
    if not s.complete:
        return []
    written = [accuracy_figure(s, out), curves_figure(s, out), differences_figure(s, out)]
    return [p for p in written if p is not None] + confusion_figures(s, out)
