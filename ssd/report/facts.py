"""What a run cost (training seconds of all its stages) and what it was trained on (the setting line).

Compute: the sum of ``fit_seconds`` over the run's stage tree (``results["stages"]``, each stage's
``requires`` included, one network counted once). A stage fetched from the cache counts the fit time it
took when it was trained, if its record carries it; a stage without any (an external checkpoint, an old
cache entry) makes the total a lower bound, shown as ``≥``. "Vanilla-epoch equivalents" divide that by
the mean seconds per epoch of the vanilla runs at the same noise level, so methods compare in units that
do not depend on the machine.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ssd.report.predictions import count_test_images, load_predictions
from ssd.report.runs import Column, Run


def stage_records(results: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every stage record of a run, nested ``requires`` included, each network once."""
    seen: set[tuple[Any, Any]] = set()
    todo = list((results.get("stages") or {}).values())
    while todo:
        record = todo.pop(0)
        if not isinstance(record, Mapping):
            continue
        ident = (record.get("strategy"), record.get("key"))
        if record.get("key") is not None and ident in seen:
            continue
        seen.add(ident)
        yield record
        todo.extend((record.get("requires") or {}).values())


@dataclass
class Compute:
    """Training seconds of a run; ``complete`` is False when some stage's fit time is unknown."""

    seconds: float
    complete: bool


def training_seconds(run: Run) -> Compute | None:
    """The run's total training seconds over its stages; None when it records no stages."""
    records = list(stage_records(run.results))
    if not records:
        return None
    known = [r.get("fit_seconds") for r in records]
    return Compute(sum(float(s) for s in known if s is not None), all(s is not None for s in known))


def _main_epoch_seconds(run: Run) -> float | None:
    main = (run.results.get("stages") or {}).get("main") or {}
    seconds, epochs = main.get("fit_seconds"), main.get("epochs")
    return float(seconds) / int(epochs) if seconds is not None and epochs else None


def vanilla_epoch_seconds(runs: Sequence[Run]) -> dict[Column, float]:
    """Noise column -> mean fit seconds per epoch of the vanilla runs there."""
    per: dict[Column, list[float]] = defaultdict(list)
    for run in runs:
        value = _main_epoch_seconds(run) if run.method == "vanilla" else None
        if value is not None:
            per[run.column].append(value)
    return {column: sum(vs) / len(vs) for column, vs in per.items()}


@dataclass
class CellCompute:
    """Mean training seconds of a cell's runs, and the same in vanilla-epoch equivalents."""

    seconds: float
    complete: bool
    vanilla_epochs: float | None

    def text(self) -> tuple[str, str]:
        bound = "" if self.complete else "≥"
        ve = "—" if self.vanilla_epochs is None else f"{bound}{self.vanilla_epochs:.1f}"
        return f"{bound}{self.seconds:.{1 if self.seconds < 10 else 0}f}", ve


def cell_compute(runs: Sequence[Run]) -> dict[tuple[str, Column], CellCompute]:
    """(setting, column) -> mean training compute of its runs."""
    per_epoch = vanilla_epoch_seconds(runs)
    cells: dict[tuple[str, Column], list[Compute]] = defaultdict(list)
    for run in runs:
        found = training_seconds(run)
        if found is not None:
            cells[(run.label, run.column)].append(found)
    out = {}
    for (label, column), found in cells.items():
        seconds = sum(c.seconds for c in found) / len(found)
        unit = per_epoch.get(column)
        out[(label, column)] = CellCompute(
            seconds, all(c.complete for c in found), seconds / unit if unit else None
        )
    return out


# --------------------------------------------------------------------------- the setting line


def _first(mapping: Mapping[str, Any], *keys: str) -> Any:
    return next((mapping[k] for k in keys if mapping.get(k) is not None), None)


def _short_source(source: Any) -> str | None:
    """``results["data"]["source"]`` without paths and counts: "cifar10 from subset", "synthetic 4 classes"."""
    if not isinstance(source, str) or not source.strip():
        return None
    return re.sub(r"\s*\(.*\)\s*$", "", re.sub(r"\s/\S+", "", source)).strip() or None


def run_setting(run: Run) -> dict[str, Any]:
    """Dataset, variant, train and test image counts, model and epochs of one run (None when unknown).

    Reads ``results["data"]`` (``source``, ``splits``: the sizes the run really used) first, then the
    per-image files, then the config (``data.limit_*``, the synthetic set's ``train``/``test``).
    """
    cfg, res = run.config, run.results
    data_cfg, facts = cfg.get("data") or {}, res.get("data") if isinstance(res.get("data"), Mapping) else {}
    splits = facts.get("splits") if isinstance(facts.get("splits"), Mapping) else {}
    main = (res.get("stages") or {}).get("main") or {}
    train = splits.get("train")
    test = splits.get("test") or count_test_images(run.path)
    variant = data_cfg.get("variant")
    if variant in (None, "auto"):
        short = _short_source(facts.get("source")) or ""
        variant = short.removeprefix(str(data_cfg.get("name"))).strip() or None
    model = cfg.get("model") or {}
    return {
        "dataset": data_cfg.get("name"),
        "variant": variant,
        "train": train if train is not None else data_cfg.get("limit_train") or data_cfg.get("train"),
        "train_seen": main.get("train_samples_per_epoch") if train is None else None,
        "test": test if test is not None else data_cfg.get("limit_test") or data_cfg.get("test"),
        "model": _first(model, "arch", "name") or str(model.get("_target_", "")).rsplit(".", 1)[-1] or None,
        "epochs": (cfg.get("trainer") or {}).get("max_epochs"),
    }


def num_classes(run: Run) -> int | None:
    """How many classes the run's data has: results.json's data facts, the data config, the CIFAR name,
    or the class names in its per-image file; None when none of them says."""
    from ssd.data.cifar import CIFAR_NUM_CLASSES

    facts = run.results.get("data") if isinstance(run.results.get("data"), Mapping) else {}
    data_cfg = run.config.get("data") or {}
    found = (
        facts.get("num_classes") or data_cfg.get("num_classes") or CIFAR_NUM_CLASSES.get(data_cfg.get("name"))
    )
    if found is None and (predictions := load_predictions(run.path)) is not None and predictions.classes:
        found = len(predictions.classes)
    return int(found) if found else None


def _values(settings: Sequence[Mapping[str, Any]], key: str) -> list[Any]:
    found = {s[key] for s in settings if s.get(key) is not None}
    return sorted(found, key=lambda v: (isinstance(v, str), v if not isinstance(v, str) else 0, str(v)))


def _join(values: Sequence[Any], fmt: str = "{}") -> str:
    return "/".join(fmt.format(v) for v in values)


def describe_setting(runs: Sequence[Run]) -> str:
    """One line: data (variant), #train, #test images, model, epochs and seeds of ``runs``."""
    settings = [run_setting(r) for r in runs]
    parts = []
    data = _join(_values(settings, "dataset"))
    variant = _join(_values(settings, "variant"))
    if data:
        parts.append(f"{data} ({variant})" if variant else data)
    if train := _values(settings, "train"):
        parts.append(f"{_join(train, '{:,}')} train images")
    elif seen := _values(settings, "train_seen"):
        parts.append(f"{_join(seen, '{:,}')} train images per epoch")
    if test := _values(settings, "test"):
        parts.append(f"{_join(test, '{:,}')} test images")
    if model := _values(settings, "model"):
        parts.append(_join(model))
    if epochs := _values(settings, "epochs"):
        parts.append(f"{_join(epochs)} epoch{'' if epochs == [1] else 's'}")
    seeds = sorted({r.seed for r in runs if r.seed is not None})
    if seeds:
        parts.append(f"seeds {', '.join(map(str, seeds))}")
    return " · ".join(parts) if parts else "setting unknown"
