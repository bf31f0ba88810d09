"""What every report figure shares: pyplot without a display, one colour per row, row labels that wrap
instead of squeezing the panels, an x-range that a far-off point does not stretch, and intervals drawn
at the range's edge (with their value in words) when they fall off it."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DPI = 130
MIN_WIDTH = 5.5  # inches: room for the title and the setting line
FONT = 7  # points, row labels and ticks
LABEL_WIDTH = 44  # characters per line of a row label; longer labels wrap at spaces
#: colour of a verdict: the claim met (yes / higher), missed (no / lower), or undecided / within noise
VERDICT_COLOURS = {True: "#1e7b34", False: "#b03a2e", None: "0.4"}
GOAL_SHADE = "#e3f1e0"  # where the claim of a row holds


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def colours(labels: Sequence[str]) -> dict[str, Any]:
    """One colour per row, the same in every figure: tab10, then Dark2 (tab20 pairs look alike)."""
    plt = pyplot()
    palette = [*plt.get_cmap("tab10").colors, *plt.get_cmap("Dark2").colors]
    return {label: palette[i % len(palette)] for i, label in enumerate(labels)}


def wrap(label: str, width: int = LABEL_WIDTH) -> str:
    """``label`` on lines of at most ``width`` characters (a long config key list stays readable)."""
    return textwrap.fill(label, width, break_on_hyphens=False) or label


def text_inches(texts: Sequence[str], fontsize: float = FONT) -> float:
    """About how wide the widest line of ``texts`` is, in inches."""
    widest = max((len(line) for t in texts for line in t.splitlines()), default=0)
    return 0.3 + widest * fontsize * 0.55 / 72


def text_lines(texts: Sequence[str]) -> int:
    return sum(max(1, len(t.splitlines())) for t in texts)


def core_range(
    points: Sequence[tuple[float, float, float]],
    possible: tuple[float, float] = (-100.0, 100.0),
    ratio: float = 2.0,
) -> tuple[float, float]:
    """The x-range of (mean, low, high) points without outliers, inside the ``possible`` values.

    The most extreme mean is an outlier while the span with it is over ``ratio`` times the span
    without it (at most two are dropped, never below three points).
    """
    clip = lambda v: min(max(v, possible[0]), possible[1])  # noqa: E731
    kept = sorted(
        (m, clip(lo), clip(hi)) for m, lo, hi in points if all(math.isfinite(v) for v in (m, lo, hi))
    )
    if not kept:
        return -1.0, 1.0
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


def draw_interval(
    ax: Any,
    y: float,
    point: tuple[float, float, float],
    core: tuple[float, float],
    colour: Any,
    note: str = "",
    hollow: bool = False,
    possible: tuple[float, float] = (-100.0, 100.0),
) -> None:
    """A mean with its interval ``point = (mean, low, high)`` on row ``y``, ``note`` written right of it.

    A mean outside ``core`` is drawn as an arrow at the axis' edge, its value and interval in words. An
    interval reaching past the ``possible`` values (a t interval from two seeds can) is cut there and
    says so.
    """
    mean, low, high = point
    if low < possible[0] or high > possible[1]:
        low, high = max(low, possible[0]), min(high, possible[1])
        note = f"{note} (CI cut at {possible[0]:g}…{possible[1]:g})".strip()
    lo, hi = core
    if lo <= mean <= hi:
        ax.errorbar(mean, y, xerr=[[mean - low], [high - mean]], fmt="o", color=colour,
                    mfc="white" if hollow else colour, capsize=3, ms=5, lw=1.6)  # fmt: skip
        if note:
            ax.annotate(note, (min(high, hi), y), xytext=(5, 0), textcoords="offset points", va="center",
                        fontsize=FONT - 0.5, color=colour, annotation_clip=False)  # fmt: skip
        return
    left, right = ax.get_xlim()
    edge, marker, ha, dx = (left, "<", "left", 8) if mean < lo else (right, ">", "right", -8)
    ax.plot(edge, y, marker=marker, color=colour, ms=7, clip_on=False)
    text = f"{mean:.1f}" + ("" if low == high else f" [{low:.1f}, {high:.1f}]") + (f" {note}" if note else "")
    ax.annotate(text, (edge, y), xytext=(dx, 0), textcoords="offset points", ha=ha, va="center",
                fontsize=FONT - 0.5, color=colour)  # fmt: skip


def _fit(fig: Any, text: str, fontsize: float) -> str:
    """``text`` with each line wrapped to the figure's width (a narrow figure never cuts it)."""
    chars = max(40, int(fig.get_figwidth() * 72 / (fontsize * 0.55)))
    return "\n".join(textwrap.fill(line, chars) for line in text.splitlines())


def suptitle(fig: Any, text: str, fontsize: float = 8) -> None:
    fig.suptitle(_fit(fig, text, fontsize), fontsize=fontsize)


def footnote(fig: Any, text: str, fontsize: float = FONT) -> None:
    fig.supxlabel(_fit(fig, text, fontsize), fontsize=fontsize, color="0.3")


def save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    pyplot().close(fig)
    return path
