"""The report's figures: per-noise-level accuracy with 95% CIs, robustness curves, paired differences.

Each noise level gets its own panel with its own x-range, so methods a few points apart stay apart;
a single far-off point (e.g. a clean-trained model at high noise) is drawn at the panel's edge with its
value written next to it instead of stretching the axis. Every figure states the setting and n.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ssd.report.compare import level_text
from ssd.report.markdown import display
from ssd.report.summary import Summary

CI_NOTE = "mean and 95% CI over seeds (t-interval); hollow: one seed, no interval"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def colours(labels: Sequence[str]) -> dict[str, Any]:
    """One colour per row, the same in every figure."""
    cmap = _pyplot().get_cmap("tab10" if len(labels) <= 10 else "tab20")
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


def core_range(points: Sequence[tuple[float, float, float]], ratio: float = 2.0) -> tuple[float, float]:
    """The x-range of (mean, low, high) points without outliers.

    The most extreme mean is an outlier while the span with it is over ``ratio`` times the span
    without it (at most two are dropped, never below three points).
    """
    kept = sorted(points)
    span = lambda ps: max(p[2] for p in ps) - min(p[1] for p in ps)  # noqa: E731
    for _ in range(2):
        if len(kept) <= 3:
            break
        options = [(kept[1:], kept[0]), (kept[:-1], kept[-1])]
        rest, _ = min(options, key=lambda o: span(o[0]))
        if span(kept) > ratio * max(span(rest), 1.0):
            kept = rest
        else:
            break
    low, high = min(p[1] for p in kept), max(p[2] for p in kept)
    pad = max(0.08 * (high - low), 1.0)
    return low - pad, high + pad


def accuracy_figure(s: Summary, out: Path) -> Path:
    """accuracy_vs_noise.png: one panel per training noise level, methods side by side, 95% CIs and n."""
    plt = _pyplot()
    colour = colours(s.labels)
    rows = [lab for lab in s.labels if any((lab, c) in s.acc for c in s.columns)]
    ncol = max(1, len(s.columns))
    fig, axes = plt.subplots(
        1,
        ncol,
        figsize=(2.0 + 3.0 * ncol, 1.4 + 0.32 * len(rows)),
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    for ax, column in zip(axes[0], s.columns, strict=True):
        points = {}
        for y, label in enumerate(rows):
            stat = s.acc.get((label, column))
            if stat is not None:
                mean = stat.mean * 100
                low, high = (v * 100 for v in stat.ci) if stat.ci else (mean, mean)
                points[label] = (y, mean, low, high, stat.n)
        if not points:
            continue
        lo, hi = core_range([(m, lw, hg) for _, m, lw, hg, _ in points.values()])
        right = hi + 0.12 * (hi - lo)  # room for the n labels
        for label, (y, mean, low, high, n) in points.items():
            face = colour[label] if n > 1 else "white"
            if lo <= mean <= hi:
                ax.errorbar(mean, y, xerr=[[mean - low], [high - mean]], fmt="o", color=colour[label],
                            mfc=face, capsize=3, ms=5)  # fmt: skip
                ax.annotate(f"n={n}", (min(high, hi), y), xytext=(4, 0), textcoords="offset points",
                            va="center", fontsize=6, color="0.3", annotation_clip=False)  # fmt: skip
            else:  # off the core range: an arrow at the edge, the value in words
                edge, marker, ha = (lo, "<", "left") if mean < lo else (right, ">", "right")
                ax.plot(edge, y, marker=marker, color=colour[label], ms=7, clip_on=False)
                text = f"{mean:.1f}" + (f" [{low:.1f}, {high:.1f}]" if n > 1 else "") + f" n={n}"
                ax.annotate(text, (edge, y), xytext=(8 if ha == "left" else -8, 0), textcoords="offset points",
                            ha=ha, va="center", fontsize=6, color=colour[label])  # fmt: skip
        ax.set_xlim(lo, right)
        ax.set_title(level_text(column, s.several_noises), fontsize=9)
        ax.set_xlabel("noisy test accuracy (%)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(range(len(rows)), [display(r) for r in rows], fontsize=7)
    axes[0][0].invert_yaxis()
    fig.suptitle(f"Noisy test accuracy at the training noise level: {CI_NOTE}\n{s.setting}", fontsize=8)
    path = out / "accuracy_vs_noise.png"
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def curves_figure(s: Summary, out: Path) -> Path | None:
    """robustness_curves.png: accuracy at every test level per training level, 95% CI bars, legend inside."""
    if not s.curves:
        return None
    plt = _pyplot()
    colour = colours(s.labels)
    ncol = max(1, len(s.columns))
    fig, axes = plt.subplots(1, ncol, figsize=(1.0 + 3.6 * ncol, 4.6), squeeze=False, layout="constrained")
    shown_labels = []
    for ax, column in zip(axes[0], s.columns, strict=True):
        for label in s.labels:
            pts = sorted(
                (lvl, st) for (lab, col, lvl), st in s.curves.items() if lab == label and col == column
            )
            if not pts:
                continue
            shown_labels += [label] if label not in shown_labels else []
            ys = [st.mean * 100 for _, st in pts]
            err = [[(st.mean - st.ci[0]) * 100 if st.ci else 0.0 for _, st in pts],
                   [(st.ci[1] - st.mean) * 100 if st.ci else 0.0 for _, st in pts]]  # fmt: skip
            ax.errorbar([x for x, _ in pts], ys, yerr=err, marker=".", capsize=2, lw=1, color=colour[label])
        ax.axvline(column[2], color="0.6", lw=0.8, ls=":")  # the level it was trained at
        ax.set_title(f"trained at {level_text(column, s.several_noises)}", fontsize=9)
        ax.set_xlabel(f"test {column[1]}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)", fontsize=8)
    handles = [plt.Line2D([], [], color=colour[lab], marker=".", label=display(lab)) for lab in shown_labels]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(4, max(1, len(handles))), fontsize=7)
    note = "mean and 95% CI over seeds (t-interval); dotted: the training level"
    fig.suptitle(f"Robustness curves: {note}\n{s.setting}", fontsize=8)
    path = out / "robustness_curves.png"
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def differences_figure(s: Summary, out: Path) -> Path | None:
    """differences.png: every paired A − B per noise level, paired-t CI (thick) and bootstrap CI (thin)."""
    if not s.diffs:
        return None
    plt = _pyplot()
    pairs = list(dict.fromkeys((d.a, d.b) for d in s.diffs))
    ncol = max(1, len(s.columns))
    fig, axes = plt.subplots(
        1,
        ncol,
        figsize=(2.6 + 2.8 * ncol, 1.5 + 0.34 * len(pairs)),
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    o = s.options
    for ax, column in zip(axes[0], s.columns, strict=True):
        ax.axvspan(-o.equiv_margin, o.equiv_margin, color="0.92", zorder=0)
        ax.axvline(0, color="0.4", lw=0.8)
        ax.axvline(o.gain_margin, color="0.6", lw=0.8, ls="--")
        for d in (d for d in s.diffs if d.column == column):
            y = pairs.index((d.a, d.b))
            if d.t:
                ax.errorbar(d.mean, y, xerr=[[d.mean - d.t.low], [d.t.high - d.mean]], fmt="o", color="C0",
                            capsize=3, lw=2, ms=4)  # fmt: skip
            else:
                ax.plot(d.mean, y, "o", mfc="white", color="C0", ms=4)
            if d.boot:
                ax.errorbar(d.boot.mean, y + 0.25, xerr=[[d.boot.mean - d.boot.low], [d.boot.high - d.boot.mean]],
                            fmt="s", color="C1", capsize=2, lw=1, ms=3)  # fmt: skip
            right = max(d.t.high if d.t else d.mean, d.boot.high if d.boot else d.mean)
            ax.annotate(f"n={d.n}", (right, y), xytext=(4, 0), textcoords="offset points", va="center",
                        fontsize=6, color="0.3")  # fmt: skip
        left, right = ax.get_xlim()
        ax.set_xlim(left, right + 0.15 * (right - left))  # room for the n labels
        ax.set_title(level_text(column, s.several_noises), fontsize=9)
        ax.set_xlabel("A − B (points)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(range(len(pairs)), [f"{a} − {b}" for a, b in pairs], fontsize=7)
    axes[0][0].set_ylim(len(pairs) - 0.5, -0.6)
    handles = [
        plt.Line2D([], [], color="C0", marker="o", lw=2, label="95% CI, paired t over seeds"),
        plt.Line2D([], [], color="C1", marker="s", lw=1, label="95% CI, hierarchical bootstrap"),
        plt.Rectangle((0, 0), 1, 1, color="0.92", label=f"±{o.equiv_margin:g} pt"),
        plt.Line2D([], [], color="0.6", ls="--", label=f"+{o.gain_margin:g} pts"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=7)
    fig.suptitle(
        f"Paired differences in noisy test accuracy (same seeds, same test images)\n{s.setting}", fontsize=8
    )
    path = out / "differences.png"
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def plot(s: Summary, out: Path) -> list[Path]:
    """Every figure the summary supports; returns the files written."""
    if not s.complete:
        return []
    written = [accuracy_figure(s, out), curves_figure(s, out), differences_figure(s, out)]
    return [p for p in written if p is not None]
