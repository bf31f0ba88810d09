"""``python -m ssd.bench``: training-step throughput of every strategy against a hand-written loop.

Researchers adopt a framework only if it costs them nothing in speed, so this measures, for one
model, batch size, precision and device, train images/s of

* ``raw``: a minimal PyTorch loop (``ssd.bench.rawloop``), with the same model, in-memory data,
  batched crop/flip, noise, optimizer, schedule, memory format and precision as the strategies:
  the floor for framework overhead;
* every strategy of ``conf/strategy/`` through the real Lightning path (``ssd.bench.rows``:
  ``build_module``, ``build_trainer``, the datamodule's loader and ``on_after_batch_transfer``).
  Stages a strategy requires (a teacher, a denoiser) are built with random weights: a step
  costs the same whatever the weights, and nothing has to be trained first;
* optional named variants of a strategy (``ROW_VARIANTS``, e.g. the distillation step without
  BatchNorm folding and the fused loss), so the effect of a switch is a ratio in one run.

Rows are measured in interleaved rounds (``ssd.bench.timing``), one fit (or raw run) per row per
round, so load drift on a shared machine hits every row alike; ratios are medians of per-round
ratios. Each run has untimed warm-up steps, then a timed window of whole steps (data, noise,
forward, backward, optimizer, hooks) between two device synchronisations and none inside. Data +
noise (loader, transfer, crop/flip, noise draw) is timed on its own through the same objects and
reported as a share of each row's step time. ``--profile ROW`` shows with ``torch.profiler`` where
a row's step time goes. ``ssd.bench.table`` computes the ratios and checks the targets;
``ssd.bench.cli`` is the command line.
"""

import importlib
from typing import Any

#: public name -> the module of this package that defines it (imported on first use, so that
#: ``python -m ssd.bench.wholerun --plain`` starts as lean as a plain script)
_WHERE = {
    **dict.fromkeys(("main", "parse_args", "run_benchmark"), "cli"),
    **dict.fromkeys(("RawLoop", "precision_mode"), "rawloop"),
    **dict.fromkeys(
        (
            "LightningRow",
            "build_frozen",
            "compose_run_cfg",
            "discover_strategies",
            "frozen_stages",
            "row_config",
            "run_overrides",
            "trains",
        ),
        "rows",
    ),
    **dict.fromkeys(
        (
            "PREFERRED_ORDER",
            "ROW_VARIANTS",
            "TARGET_DATA_NOISE_SHARE",
            "TARGET_STUDENT_STEP",
            "TARGET_VANILLA_VS_RAW",
            "BenchSettings",
        ),
        "settings",
    ),
    **dict.fromkeys(("check_targets", "format_table", "summarise"), "table"),
    **dict.fromkeys(("RowResult", "StepWindow", "Window", "paired_ratio", "run_rounds"), "timing"),
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'ssd.bench' has no attribute {name!r}")
    return getattr(importlib.import_module(f"ssd.bench.{_WHERE[name]}"), name)


__all__ = [
    "PREFERRED_ORDER",
    "ROW_VARIANTS",
    "TARGET_DATA_NOISE_SHARE",
    "TARGET_STUDENT_STEP",
    "TARGET_VANILLA_VS_RAW",
    "BenchSettings",
    "LightningRow",
    "RawLoop",
    "RowResult",
    "StepWindow",
    "Window",
    "build_frozen",
    "check_targets",
    "compose_run_cfg",
    "discover_strategies",
    "format_table",
    "frozen_stages",
    "main",
    "paired_ratio",
    "parse_args",
    "precision_mode",
    "row_config",
    "run_benchmark",
    "run_overrides",
    "run_rounds",
    "summarise",
    "trains",
]
