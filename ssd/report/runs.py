"""Finding run folders and reading what each left behind: results.json, or the config of a job that died.

Rows ("settings") are the run's ``method`` (``results["method"]``, else its strategy name) plus every
config value that differs among the complete runs of that method, seed aside, so two methods never share
a row and a sweep over e.g. ``strategy.lambda`` gets one row per value instead of averaging settings.
Failed and unfinished runs never rename rows: their configs may be unresolved (``auto``) or invalid.

Columns are what a run was tested at: its noise model and level, or for blind training (``noise.sigma_max``
set: each image draws its level from [sigma, sigma_max], in training and in the test) that range.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ssd.results import read_json

#: rows in this order first (the paper's comparison), other methods after them by name
STRATEGY_ORDER = (
    "clean",
    "vanilla",
    "denoise_frozen",
    "denoise",
    "joint",
    "student_teacher",
    "online_distill",
    "self_distill",
)
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

#: statuses a run folder can have (results.json's ``status``; a folder without one is ``incomplete``)
STATUSES = ("complete", "failed", "interrupted", "superseded", "incomplete")
#: how a level is written in labels
SYMBOLS = {"sigma": "σ"}


def level_symbol(level_name: str) -> str:
    return SYMBOLS.get(level_name, level_name)


class Column(NamedTuple):
    """What runs were trained and tested at: the noise model and its level, or its range when blind."""

    noise: str
    level_name: str
    level: float
    level_max: float  # == level for a fixed level; > level when each image draws it from [level, level_max]

    @property
    def blind(self) -> bool:
        return self.level_max > self.level

    def text(self, several_noises: bool = False) -> str:
        """``σ=0.2``, ``σ∈[0.1,0.3]`` (blind), with the noise model's name when a sweep has several."""
        value = f"∈[{self.level:g},{self.level_max:g}]" if self.blind else f"={self.level:g}"
        text = f"{level_symbol(self.level_name)}{value}"
        return f"{self.noise} {text}" if several_noises else text


@dataclass
class Run:
    """One run folder, finished or not."""

    path: Path
    status: str  # one of STATUSES
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
    method: str = ""  # results["method"], else the strategy name
    results: dict[str, Any] = field(default_factory=dict)  # the whole results.json (stages, data facts)
    level_max: float | None = None  # blind training: the top of the level range

    @property
    def column(self) -> Column:
        level = self.level if self.level is not None else math.nan
        return Column(
            self.noise, self.level_name, level, self.level_max if self.level_max is not None else level
        )


def method_of(label: str) -> str:
    """The method part of a row label ``"method (key=value, ...)"``."""
    return label.split(" (", 1)[0]


def _noise_facts(noise_cfg: Mapping[str, Any]) -> tuple[str, str, float | None]:
    """(name, level name, level) of a noise config, without training anything (also the ``noise.name``
    configs of runs from before issue 17)."""
    try:
        from ssd.parts import build_noise

        noise = build_noise(noise_cfg)
        return noise.name, noise.level_name, float(noise.level)
    except Exception:  # noqa: BLE001 - a broken config is reported, not fatal
        name = str(noise_cfg.get("name", "?"))
        level_name = "ppp" if name.startswith("poisson") else "sigma"
        level = noise_cfg.get(level_name, 0.0 if name == "none" else None)
        return name, level_name, float(level) if isinstance(level, int | float) else None


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
    results = read_json(folder / "results.json") or {}
    config = results.get("config") or _job_config(folder)
    if config is None:
        return None
    name, level_name, level = _noise_facts(config.get("noise", {}))
    status = results.get("status", "incomplete")
    strategy = str(config.get("strategy", {}).get("name", "?"))
    method = results.get("method", strategy)
    if not isinstance(method, str) or not method.strip():
        raise ValueError(
            f"{folder / 'results.json'}: method={method!r}; allowed: a non-empty string such as 'vanilla'"
        )
    run = Run(
        path=folder,
        status=status if status in STATUSES else "incomplete",
        strategy=strategy,
        noise=name,
        level_name=level_name,
        level=level,
        seed=results.get("seed", config.get("seed")),
        config=config,
        error=results.get("error"),
        feature_quality=read_json(folder / "feature_quality.json"),
        method=method.strip(),
        results=results,
    )
    if run.status == "complete":
        run.test_acc, run.clean_acc = results.get("test_acc"), results.get("clean_acc")
        run.robustness = {
            float(k.split("=", 1)[1]): float(v) for k, v in (results.get("robustness") or {}).items()
        }
        noise = results.get("noise") or {}
        run.level_name, run.level = noise.get("level_name", run.level_name), noise.get("level", run.level)
    top = (config.get("noise") or {}).get(f"{run.level_name}_max")
    run.level_max = float(top) if isinstance(top, int | float) and not isinstance(top, bool) else None
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


def _ignored(key: str, level_names: set[str]) -> bool:
    """Keys that are not settings: launch details, the seed, and the noise level (the column)."""
    noise_keys = {
        "noise.name",
        *(f"noise.{n}" for n in level_names),
        *(f"noise.{n}_max" for n in level_names),
    }
    return (
        key in IGNORED_KEYS or key.startswith(IGNORED_PREFIXES) or key in noise_keys or key == "strategy.name"
    )


def label_settings(runs: Sequence[Run]) -> None:
    """``run.label``: the method plus every config value that differs among its complete runs (seed aside).

    Only complete runs decide which keys vary: a failed run's config may be unresolved or invalid, and
    must not rename the rows of the runs that worked. Other runs get the same keys, for ``runs.csv``.
    """
    by_method: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_method[run.method].append(run)
    for method, group in by_method.items():
        basis = [flatten(run.config) for run in group if run.status == "complete"]
        level_names = {run.level_name for run in group}
        keys = sorted({k for f in basis for k in f if not _ignored(k, level_names)})
        varying = [k for k in keys if len({repr(f.get(k)) for f in basis}) > 1]
        for run in group:
            f = flatten(run.config)
            extra = ", ".join(f"{k}={f.get(k)}" for k in varying)
            run.label = f"{method} ({extra})" if extra else method


def row_order(labels: Iterable[str]) -> list[str]:
    """Paper order by the method's strategy (the part before ':'), then by name."""

    def key(label: str) -> tuple[int, str]:
        base = method_of(label).split(":", 1)[0]
        return (STRATEGY_ORDER.index(base) if base in STRATEGY_ORDER else len(STRATEGY_ORDER), label)

    return sorted(set(labels), key=key)


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


def shown(path: Path, folders: Sequence[Path]) -> str:
    """``path`` relative to the folder it was found in."""
    for folder in folders:
        if path.is_relative_to(folder):
            return str(Path(folder.name) / path.relative_to(folder))
    return str(path)
