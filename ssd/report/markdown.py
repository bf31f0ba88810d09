"""The report as markdown: tables a README can paste, each stating its setting and n."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ssd.report.runs import level_symbol, method_of, shown
from ssd.report.stats import Stat, signed
from ssd.report.summary import Summary

CLEAN_NOTE = "`clean` is trained on clean images (and tested on noisy ones like every row)."


def display(label: str) -> str:
    """A row label for readers: says what ``clean`` means."""
    return (
        label.replace("clean", "clean, trained on clean images", 1) if method_of(label) == "clean" else label
    )


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def grid(
    stats: Mapping[tuple[str, Any], Stat],
    labels: Sequence[str],
    columns: Sequence[Any],
    names: Sequence[str],
    fmt: Any,
) -> str:
    rows = [
        [label, *(fmt(stats[(label, c)]) if (label, c) in stats else "—" for c in columns)]
        for label in labels
    ]
    return markdown_table(["strategy", *names], rows)


def setting_note(s: Summary, extra: str = "n = seeds per cell") -> str:
    return f"_Setting: {s.setting}; {extra}._"


def cell_sections(s: Summary) -> list[str]:
    """Per noise level: mean ± std, the 95% t-interval, n and training compute of every row."""
    md = ["", "## Per noise level: mean, 95% CI over seeds and training compute", "", setting_note(s)]
    md += [
        "",
        "Noisy test accuracy in %; 95% CI: t-interval of the mean over seeds. Train s: seconds of "
        "training summed over the run's stages (cached stages count their original fit time; ≥ where "
        "some stage's time is unknown). VE: the same in vanilla epochs at this noise level.",
    ]
    for column in s.columns:
        rows = []
        for label in s.labels:
            stat = s.acc.get((label, column))
            if stat is None:
                continue
            seconds, ve = s.compute[(label, column)].text() if (label, column) in s.compute else ("—", "—")
            spread = f"{stat.std * 100:.2f}" if stat.std is not None else "—"
            rows.append(
                [display(label), f"{stat.mean * 100:.2f}", spread, stat.ci_text(), str(stat.n), seconds, ve]
            )
        header = ["method", "mean", "std", "95% CI", "n", "train s", "VE"]
        md += ["", f"### {column.text(s.several_noises)}", "", markdown_table(header, rows)]
    return md


def paired_sections(s: Summary) -> list[str]:
    """The paired differences A − B with both intervals, then one verdict line per comparison and level."""
    if not s.diffs:
        return []
    o = s.options
    rows = [
        [
            f"{d.a} − {d.b}",
            d.column.text(s.several_noises),
            str(d.n),
            signed(d.mean),
            f"[{signed(d.t.low)}, {signed(d.t.high)}]" if d.t else "—",
            f"[{signed(d.boot.low)}, {signed(d.boot.high)}]" if d.boot else "—",
            d.verdict,
        ]
        for d in s.diffs
    ]
    header = ["A − B", "noise", "n", "mean", "95% CI paired t", "95% CI hier. bootstrap", "verdict"]
    used = (
        "the hierarchical bootstrap where it exists (else paired t)"
        if o.verdict_ci == "bootstrap"
        else "paired t"
    )
    md = ["", "## Paired differences (points of noisy test accuracy)", "", setting_note(s), ""]
    md += [
        "Pairs are runs of the same seed at the same noise level (the same test images and evaluation "
        "noise). **Paired t**: t-interval over the per-seed differences (n = pairs); it measures training "
        "randomness on this test set. **Hierarchical bootstrap**: "
        f"{o.reps} resamples (rng seed {o.seed}) of the seeds and, once per resample, of the test images, "
        "the same images for every seed and both methods (every run tests the same images); percentile "
        "interval; it adds test-image sampling (how the result would vary on another test set of this "
        "size) but with few seeds under-covers their variation. "
        f"'—' where a run has no per-image file. Verdicts use {used}.",
        "",
        markdown_table(header, rows),
        "",
        "## Verdicts",
        "",
        f"_Within {o.equiv_margin:g} pt: yes if the 95% CI lies inside ±{o.equiv_margin:g}, no if it lies "
        f"entirely outside. ≥ +{o.gain_margin:g} pts: yes if the CI's lower bound is ≥ {o.gain_margin:g}, "
        f"no if its upper bound is below. Otherwise undecided at this n. {setting_note(s)[1:]}",
        "",
        *[f"- {d.line}" for d in sorted(s.diffs, key=lambda d: s.columns.index(d.column))],
    ]
    return md


def difference_sections(s: Summary, reference: str) -> list[str]:
    """``reference`` (and its variants) minus every other setting, per noise level (means only)."""
    md = []
    refs = [
        lab for lab in s.labels if lab == reference or lab.startswith((f"{reference} (", f"{reference}:"))
    ]
    for ref in refs:
        rows = []
        for lab in (lab for lab in s.labels if lab != ref):
            cells = [
                signed((s.acc[(ref, c)].mean - s.acc[(lab, c)].mean) * 100)
                if (ref, c) in s.acc and (lab, c) in s.acc
                else "—"
                for c in s.columns
            ]
            rows.append([lab, *cells])
        md += ["", f"## {ref} minus each strategy (points of noisy test accuracy)", ""]
        md += [
            setting_note(s, "differences of means over seeds, no interval (see the paired differences)"),
            "",
        ]
        md += [markdown_table(["strategy", *s.names], rows)]
    return md


def curve_sections(s: Summary) -> list[str]:
    title = "## Robustness curves (test accuracy at other noise levels)"
    note = setting_note(s, "means over seeds, n as in the noisy test accuracy table")
    md = ["", title, "", note] if s.curves else []
    for column, name in zip(s.columns, s.names, strict=True):
        here = {(lab, lvl): stat for (lab, col, lvl), stat in s.curves.items() if col == column}
        levels = sorted({lvl for _, lvl in here})
        rows = [lab for lab in s.labels if any(key[0] == lab for key in here)]
        headers = [f"{level_symbol(column.level_name)}={v:g}" for v in levels]
        md += [
            "",
            f"Trained at {name}:",
            "",
            grid(here, rows, levels, headers, lambda st: f"{st.mean * 100:.2f}"),
        ]
    return md


def feature_section(s: Summary) -> list[str]:
    if not s.features:
        return []
    taps = sorted({key[4] for key in s.features}, key=lambda t: (t != "stem", t))
    order = {lab: i for i, lab in enumerate(s.labels)}
    rows = []
    for label, column, network, metric in sorted(
        {k[:4] for k in s.features}, key=lambda k: (order.get(k[0], 99), *k[1:])
    ):
        cells = [
            s.features[(label, column, network, metric, t)].text(1.0, 3)
            if (label, column, network, metric, t) in s.features
            else "—"
            for t in taps
        ]
        rows.append([label, column.text(s.several_noises), network, metric, *cells])
    title = "## Feature agreement with the clean teacher on clean images (feature_quality.json)"
    return ["", title, "", markdown_table(["run", "noise", "network", "metric", *taps], rows)]


def unfinished_section(s: Summary) -> list[str]:
    """Every run left out of the tables, with its status and why."""
    if not s.left_out:
        return []
    rows = [
        [shown(r.path, s.folders), status, r.strategy, r.column.text() if r.level is not None else "?",
         str(r.seed), why[:120]]
        for r, status, why in s.left_out
    ]  # fmt: skip
    header = ["run", "status", "strategy", "noise", "seed", "error"]
    return [
        "",
        "## Failed, unfinished and duplicate runs (not in the tables)",
        "",
        markdown_table(header, rows),
    ]


def markdown(s: Summary, reference: str, images: Sequence[Path]) -> str:
    md = [f"# Sweep report: {', '.join(str(f) for f in s.folders)}", "", setting_note(s), ""]
    md += [f"{s.counts_text}. Accuracies in %, last epoch, mean ± sample std over seeds (n = seeds)."]
    md += [
        "",
        "## Noisy test accuracy (tested at the training noise level)",
        "",
        grid(s.acc, s.labels, s.columns, s.names, Stat.text),
    ]
    if any(method_of(lab) == "clean" for lab in s.labels):
        md += ["", CLEAN_NOTE]
    md += ["", "## Clean test accuracy", "", grid(s.clean, s.labels, s.columns, s.names, Stat.text)]
    md += cell_sections(s) + paired_sections(s)
    md += difference_sections(s, reference) + curve_sections(s) + feature_section(s) + unfinished_section(s)
    md += ["", s.confusion_note] if s.confusion_note else []
    md += ["", *[f"![{p.stem}]({p.name})" for p in images]]
    return "\n".join(md) + "\n"
