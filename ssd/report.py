"""``python -m ssd.report <sweep folders...> [--out DIR]``: a sweep's comparison table and plots.

Reads every run folder below the given folders (``results.json``, else the config a job
left behind) and writes into ``--out`` (default ``<folder>/report``):

* ``report.md``: noisy test accuracy, strategy x noise level, mean ± std over seeds with n;
  clean accuracy; the robustness curves; differences to a reference strategy; the teacher
  feature-quality numbers where runs have a ``feature_quality.json``; and every failed or
  incomplete run (listed, never silently dropped);
* ``accuracy.csv``, ``curves.csv``, ``runs.csv`` (one row per run), ``feature_quality.csv``;
* ``accuracy_vs_noise.png`` and ``robustness_curves.png``.

Runs are grouped by everything in their config that differs between them except the seed
(and launch details like devices or paths), so a sweep over e.g. ``strategy.lambda`` gets
one row per value instead of averaging different settings together.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssd.results import read_json

#: rows in this order first (the paper's comparison), other strategies after them by name
STRATEGY_ORDER = ("clean", "vanilla", "denoise", "joint", "student_teacher", "self_distill")
#: config keys that never make runs different settings (launch details, paths, the seed itself)
IGNORED_KEYS = (
    "seed",
    "data.seed",
    "sweep_name",
    "run_name",
    "resume",
    "tags",
    "eval_only",
    "noise.eval_levels",
)
IGNORED_PREFIXES = (
    "paths.",
    "logger.",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.strategy",
    "trainer.accelerator",
    "trainer.enable_progress_bar",
    "trainer.log_every_n_steps",
    "data.root",
    "data.cache_dir",
    "data.download",
    "data.num_workers",
    "data.eval_batch_size",
)


@dataclass
class Run:
    """One run folder, finished or not."""

    path: Path
    status: str  # complete | failed | incomplete
    strategy: str
    noise: str  # the noise model's name
    level_name: str
    level: float | None
    seed: int | None
    config: dict[str, Any]
    test_acc: float | None = None
    clean_acc: float | None = None
    robustness: dict[float, float] = field(default_factory=dict)
    error: str | None = None
    feature_quality: dict[str, Any] | None = None
    label: str = ""

    @property
    def column(self) -> tuple[str, str, float]:
        return (self.noise, self.level_name, self.level if self.level is not None else math.nan)


# --------------------------------------------------------------------------- finding runs


def _noise_facts(noise_cfg: Mapping[str, Any]) -> tuple[str, str, float | None]:
    """(name, level name, level) of a noise config, without training anything."""
    try:
        from ssd.noise import build_noise

        noise = build_noise(noise_cfg)
        return str(noise_cfg.get("name")), noise.level_name, float(noise.level)
    except Exception:  # noqa: BLE001 - a broken config is reported, not fatal
        return str(noise_cfg.get("name", "?")), "level", None


def _job_config(folder: Path) -> dict[str, Any] | None:
    """The config of a job that left no results.json (resolved if possible)."""
    from omegaconf import OmegaConf

    for candidate in (folder / "config.resolved.yaml", folder / ".hydra" / "config.yaml"):
        if candidate.exists():
            cfg = OmegaConf.load(candidate)
            try:
                return OmegaConf.to_container(cfg, resolve=True)
            except Exception:  # noqa: BLE001 - e.g. ${hydra:...} outside a Hydra app
                return OmegaConf.to_container(cfg, resolve=False)
    return None


def load_run(folder: Path) -> Run | None:
    """The run in ``folder``; None when the folder is not a run folder."""
    results = read_json(folder / "results.json")
    config = (results or {}).get("config") or _job_config(folder)
    if config is None:
        return None
    name, level_name, level = _noise_facts(config.get("noise", {}))
    status = (results or {}).get("status", "incomplete")
    run = Run(
        path=folder,
        status=status if status in ("complete", "failed") else "incomplete",
        strategy=str(config.get("strategy", {}).get("name", "?")),
        noise=name,
        level_name=level_name,
        level=level,
        seed=config.get("seed"),
        config=config,
        error=(results or {}).get("error"),
        feature_quality=read_json(folder / "feature_quality.json"),
    )
    if run.status == "complete":
        run.test_acc, run.clean_acc = results.get("test_acc"), results.get("clean_acc")
        run.robustness = {
            float(k.split("=", 1)[1]): float(v) for k, v in (results.get("robustness") or {}).items()
        }
        noise = results.get("noise") or {}
        run.level_name, run.level = noise.get("level_name", run.level_name), noise.get("level", run.level)
    return run


def find_runs(folders: Iterable[Path]) -> list[Run]:
    """Every run folder below ``folders``: one with results.json, or one a job started (its config)."""
    candidates: set[Path] = set()
    for folder in folders:
        for marker in ("results.json", "config.resolved.yaml", ".hydra/config.yaml"):
            candidates.update(
                p.parent.parent if marker.startswith(".hydra") else p.parent for p in folder.rglob(marker)
            )
    runs = [run for run in (load_run(c) for c in sorted(candidates)) if run is not None]
    label_settings(runs)
    return runs


# --------------------------------------------------------------------------- settings (rows)


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys -> leaf values (lists kept whole)."""
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def _ignored(key: str, level_name: str) -> bool:
    return (
        key in IGNORED_KEYS
        or key.startswith(IGNORED_PREFIXES)
        or key == f"noise.{level_name}"
        or key == "noise.name"
    )


def label_settings(runs: Sequence[Run]) -> None:
    """``run.label``: the strategy plus every config value that differs among its runs (seed aside)."""
    by_strategy: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_strategy[run.strategy].append(run)
    for strategy, group in by_strategy.items():
        flat = [flatten(run.config) for run in group]
        keys = sorted(
            {k for f in flat for k in f if not _ignored(k, group[0].level_name) and k != "strategy.name"}
        )
        varying = [k for k in keys if len({repr(f.get(k)) for f in flat}) > 1]
        for run, f in zip(group, flat, strict=True):
            extra = ", ".join(f"{k}={f.get(k)}" for k in varying)
            run.label = f"{strategy} ({extra})" if extra else strategy


def row_order(labels: Iterable[str]) -> list[str]:
    def key(label: str) -> tuple[int, str]:
        base = label.split(" (", 1)[0]
        return (STRATEGY_ORDER.index(base) if base in STRATEGY_ORDER else len(STRATEGY_ORDER), label)

    return sorted(set(labels), key=key)


# --------------------------------------------------------------------------- statistics


@dataclass
class Stat:
    mean: float
    std: float | None  # sample std (n-1); None for a single value
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        n = len(values)
        mean = sum(values) / n
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
        return cls(mean, std, n)

    def text(self, scale: float = 100.0, digits: int = 2) -> str:
        spread = f" ± {self.std * scale:.{digits}f}" if self.std is not None else ""
        return f"{self.mean * scale:.{digits}f}{spread} (n={self.n})"


def column_label(column: tuple[str, str, float], several_noises: bool) -> str:
    noise, level_name, level = column
    return f"{noise} {level_name}={level:g}" if several_noises else f"{level_name}={level:g}"


def unique_complete(runs: Sequence[Run]) -> tuple[list[Run], list[Run]]:
    """Complete runs, one per (setting, noise level, seed): the newest; and the duplicates left out."""
    newest: dict[tuple[Any, ...], Run] = {}
    duplicates = []
    for run in sorted(
        (r for r in runs if r.status == "complete"), key=lambda r: (r.path / "results.json").stat().st_mtime
    ):
        key = (run.label, run.column, run.seed)
        if key in newest:
            duplicates.append(newest[key])
        newest[key] = run
    return list(newest.values()), duplicates


def cell_stats(runs: Sequence[Run], value: str) -> dict[tuple[str, tuple[str, str, float]], Stat]:
    """(setting, noise column) -> Stat of ``run.<value>`` over seeds."""
    values: dict[tuple[str, tuple[str, str, float]], list[float]] = defaultdict(list)
    for run in runs:
        v = getattr(run, value)
        if v is not None:
            values[(run.label, run.column)].append(float(v))
    return {key: Stat.of(vs) for key, vs in values.items()}


def curve_stats(runs: Sequence[Run]) -> dict[tuple[str, tuple[str, str, float], float], Stat]:
    """(setting, training noise column, evaluated level) -> Stat over seeds."""
    values: dict[tuple[str, tuple[str, str, float], float], list[float]] = defaultdict(list)
    for run in runs:
        for level, acc in run.robustness.items():
            values[(run.label, run.column, level)].append(acc)
    return {key: Stat.of(vs) for key, vs in values.items()}


def feature_stats(runs: Sequence[Run]) -> dict[tuple[str, tuple[str, str, float], str, str, str], Stat]:
    """(setting, column, compared network, metric, tap) -> Stat over seeds, from feature_quality.json."""
    values: dict[tuple[str, tuple[str, str, float], str, str, str], list[float]] = defaultdict(list)
    for run in runs:
        for network, comparison in ((run.feature_quality or {}).get("comparisons") or {}).items():
            for metric in ("cka", "rel_mse"):
                for tap, v in (comparison.get(metric) or {}).items():
                    if v is not None:
                        values[(run.label, run.column, network, metric, tap)].append(float(v))
    return {key: Stat.of(vs) for key, vs in values.items()}


# --------------------------------------------------------------------------- writing


def shown(path: Path, folders: Sequence[Path]) -> str:
    """``path`` relative to the folder it was found in."""
    for folder in folders:
        if path.is_relative_to(folder):
            return str(Path(folder.name) / path.relative_to(folder))
    return str(path)


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


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def plot(
    acc: Mapping[Any, Stat],
    curves: Mapping[Any, Stat],
    labels: Sequence[str],
    columns: Sequence[Any],
    out: Path,
) -> list[Path]:
    """accuracy_vs_noise.png (noisy test accuracy per strategy) and robustness_curves.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    colour = {
        label: plt.get_cmap("tab10")(i % 10) for i, label in enumerate(labels)
    }  # one colour per strategy everywhere
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for label in labels:
        pts = [(c[2], acc[(label, c)]) for c in columns if (label, c) in acc]
        if pts:
            xs = [x for x, _ in pts]
            ax.errorbar(
                xs,
                [s.mean * 100 for _, s in pts],
                yerr=[(s.std or 0) * 100 for _, s in pts],
                marker="o",
                capsize=3,
                label=label,
                color=colour[label],
            )
    ax.set_xlabel(columns[0][1] if columns else "noise level")
    ax.set_ylabel("noisy test accuracy (%)")
    ax.set_title("test accuracy at the training noise level (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_noise.png", dpi=130)
    plt.close(fig)
    written.append(out / "accuracy_vs_noise.png")

    if curves:
        fig, axes = plt.subplots(
            1, len(columns), figsize=(4 * len(columns) + 2, 3.6), sharey=True, squeeze=False
        )
        for ax, column in zip(axes[0], columns, strict=True):
            for label in labels:
                pts = sorted(
                    (lvl, s) for (lab, col, lvl), s in curves.items() if lab == label and col == column
                )
                if pts:
                    ax.plot(
                        [x for x, _ in pts], [s.mean * 100 for _, s in pts], marker=".", color=colour[label]
                    )
            ax.set_title(f"trained at {column[1]}={column[2]:g}", fontsize=9)
            ax.set_xlabel(f"test {column[1]}")
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("test accuracy (%)")
        handles = [plt.Line2D([], [], color=colour[label], marker=".", label=label) for label in labels]
        fig.legend(handles=handles, loc="center right", fontsize=7)
        fig.tight_layout(rect=(0, 0, 1 - 1.8 / (4 * len(columns) + 2), 1))
        fig.savefig(out / "robustness_curves.png", dpi=130)
        plt.close(fig)
        written.append(out / "robustness_curves.png")
    return written


@dataclass
class Summary:
    """Everything the outputs are made of: the runs and their statistics."""

    folders: Sequence[Path]
    runs: list[Run]
    complete: list[Run]
    duplicates: list[Run]
    labels: list[str]  # rows (settings), in paper order
    columns: list[tuple[str, str, float]]  # training noise levels
    names: list[str]  # column headers
    acc: dict[Any, Stat]
    clean: dict[Any, Stat]
    curves: dict[Any, Stat]
    features: dict[Any, Stat]

    @classmethod
    def of(cls, folders: Sequence[Path]) -> Summary:
        runs = find_runs(folders)
        if not runs:
            raise FileNotFoundError(
                f"no run folders (results.json or a job's config) below {', '.join(map(str, folders))}"
            )
        complete, duplicates = unique_complete(runs)
        columns = sorted({r.column for r in complete})
        several = len({c[0] for c in columns}) > 1
        return cls(
            folders, runs, complete, duplicates, row_order(r.label for r in complete), columns,
            [column_label(c, several) for c in columns], cell_stats(complete, "test_acc"),
            cell_stats(complete, "clean_acc"), curve_stats(complete), feature_stats(complete),
        )  # fmt: skip

    @property
    def unfinished(self) -> list[Run]:
        return [r for r in self.runs if r.status != "complete"]


def difference_sections(s: Summary, reference: str) -> list[str]:
    """``reference`` (and its variants) minus every other setting, per noise level."""
    md = []
    for ref in [lab for lab in s.labels if lab == reference or lab.startswith(f"{reference} (")]:
        rows = []
        for lab in (lab for lab in s.labels if lab != ref):
            cells = [
                f"{(s.acc[(ref, c)].mean - s.acc[(lab, c)].mean) * 100:+.2f}"
                if (ref, c) in s.acc and (lab, c) in s.acc
                else "—"
                for c in s.columns
            ]
            rows.append([lab, *cells])
        md += ["", f"## {ref} minus each strategy (points of noisy test accuracy)", ""]
        md += [markdown_table(["strategy", *s.names], rows)]
    return md


def curve_sections(s: Summary) -> list[str]:
    md = ["", "## Robustness curves (test accuracy at other noise levels)"] if s.curves else []
    for column, name in zip(s.columns, s.names, strict=True):
        here = {(lab, lvl): stat for (lab, col, lvl), stat in s.curves.items() if col == column}
        levels = sorted({lvl for _, lvl in here})
        rows = [lab for lab in s.labels if any(key[0] == lab for key in here)]
        headers = [f"{column[1]}={v:g}" for v in levels]
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
    several = len({c[0] for c in s.columns}) > 1
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
        rows.append([label, column_label(column, several), network, metric, *cells])
    title = "## Feature agreement with the clean teacher on clean images (feature_quality.json)"
    return ["", title, "", markdown_table(["run", "noise", "network", "metric", *taps], rows)]


def unfinished_section(s: Summary) -> list[str]:
    if not s.unfinished and not s.duplicates:
        return []
    rows = [
        [
            shown(r.path, s.folders),
            r.status,
            r.strategy,
            f"{r.level_name}={r.level:g}" if r.level is not None else "?",
            str(r.seed),
            (r.error or "")[:120],
        ]
        for r in s.unfinished
    ]
    rows += [
        [
            shown(r.path, s.folders),
            "duplicate",
            r.strategy,
            f"{r.level_name}={r.level:g}",
            str(r.seed),
            "a newer run of the same setting and seed is used",
        ]
        for r in s.duplicates
    ]
    header = ["run", "status", "strategy", "noise", "seed", "error"]
    return [
        "",
        "## Failed, incomplete and duplicate runs (not in the tables)",
        "",
        markdown_table(header, rows),
    ]


def markdown(s: Summary, reference: str, images: Sequence[Path]) -> str:
    md = [f"# Sweep report: {', '.join(str(f) for f in s.folders)}", ""]
    md += [
        f"{len(s.complete)} complete runs, {len(s.unfinished)} failed or incomplete, {len(s.duplicates)} duplicates "
        "left out. Accuracies in %, last epoch, mean ± sample std over seeds (n = seeds)."
    ]
    md += [
        "",
        "## Noisy test accuracy (tested at the training noise level)",
        "",
        grid(s.acc, s.labels, s.columns, s.names, Stat.text),
    ]
    md += ["", "## Clean test accuracy", "", grid(s.clean, s.labels, s.columns, s.names, Stat.text)]
    md += difference_sections(s, reference) + curve_sections(s) + feature_section(s) + unfinished_section(s)
    md += ["", *[f"![{p.stem}]({p.name})" for p in images]]
    return "\n".join(md) + "\n"


def write_csvs(s: Summary, out: Path) -> None:
    def std(stat: Stat) -> float | str:
        return stat.std if stat.std is not None else ""

    write_csv(
        out / "accuracy.csv",
        ["strategy", "noise", "level_name", "level", "metric", "mean", "std", "n"],
        [
            [lab, c[0], c[1], c[2], metric, st.mean, std(st), st.n]
            for metric, stats in (("test_acc", s.acc), ("clean_acc", s.clean))
            for (lab, c), st in sorted(stats.items())
        ],
    )
    write_csv(
        out / "curves.csv",
        ["strategy", "noise", "level_name", "train_level", "test_level", "mean", "std", "n"],
        [
            [lab, c[0], c[1], c[2], lvl, st.mean, std(st), st.n]
            for (lab, c, lvl), st in sorted(s.curves.items())
        ],
    )
    write_csv(
        out / "runs.csv",
        [
            "run",
            "status",
            "strategy",
            "setting",
            "noise",
            "level_name",
            "level",
            "seed",
            "test_acc",
            "clean_acc",
            "error",
        ],
        [
            [
                r.path,
                r.status,
                r.strategy,
                r.label,
                r.noise,
                r.level_name,
                r.level,
                r.seed,
                r.test_acc,
                r.clean_acc,
                r.error or "",
            ]
            for r in s.runs
        ],
    )
    if s.features:
        write_csv(
            out / "feature_quality.csv",
            ["strategy", "noise", "level", "network", "metric", "tap", "mean", "std", "n"],
            [
                [lab, c[0], c[2], net, metric, tap, st.mean, std(st), st.n]
                for (lab, c, net, metric, tap), st in sorted(s.features.items())
            ],
        )


def report(folders: Sequence[Path], out: Path, reference: str = "self_distill") -> str:
    """Write every output into ``out``; return the markdown."""
    summary = Summary.of(folders)
    out.mkdir(parents=True, exist_ok=True)
    images = (
        plot(summary.acc, summary.curves, summary.labels, summary.columns, out) if summary.complete else []
    )
    text = markdown(summary, reference, images)
    (out / "report.md").write_text(text)
    write_csvs(summary, out)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ssd.report", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "folders", nargs="+", type=Path, help="sweep (or run) folders; every run below them is read"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: <first folder>/report)"
    )
    parser.add_argument(
        "--reference", default="self_distill", help="strategy the difference table is computed for"
    )
    args = parser.parse_args(argv)
    missing = [str(f) for f in args.folders if not f.is_dir()]
    if missing:
        print(f"ssd.report: not a folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    out = args.out or args.folders[0] / "report"
    try:
        text = report(args.folders, out, args.reference)
    except FileNotFoundError as err:
        print(f"ssd.report: {err}", file=sys.stderr)
        return 2
    print(text)
    print(
        f"ssd.report: wrote {out}/report.md, accuracy.csv, curves.csv, runs.csv and the plots",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
