"""Optimizer and learning-rate schedule shared by every strategy, and the check of their config.

The optimizer arrives from config half-built (``_partial_: true``) and receives its
parameter groups here; the schedule is stepped per optimisation step so that warm-up
and cosine decay behave the same for any dataset size, batch size or number of devices.
The same check serves the run's ``optim`` and a strategy's own ``strategy.optim``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from hydra.utils import get_class, instantiate

from ssd.config.checks import get_key, is_finite, require, require_choice
from ssd.config.errors import ConfigError

SCHEDULES = ("cosine", "constant", "multistep")


def build_optimizer(optim_cfg: Mapping[str, Any], params: Iterable[Any]) -> torch.optim.Optimizer:
    """Finish the partial optimizer of ``optim.optimizer`` with ``params`` (tensors or groups)."""
    factory = instantiate(optim_cfg["optimizer"])
    return factory(params)


def lr_lambda(sched_cfg: Mapping[str, Any], total_steps: int, steps_per_epoch: int) -> Callable[[int], float]:
    """Multiplier of the base lr at optimisation step ``step`` (linear warm-up, then the schedule)."""
    name = sched_cfg["name"]
    # optional (a strategy's own optim section may leave them out): no warm-up, decay to 0
    warmup = int(round(float(sched_cfg.get("warmup_epochs", 0)) * steps_per_epoch))
    warmup = min(warmup, max(total_steps - 1, 0))
    min_ratio = float(sched_cfg.get("min_lr_ratio", 0.0))
    if name == "multistep":  # its own keys (checked to be there), read only where they mean something
        milestones = [int(m * total_steps) for m in sched_cfg["milestones"]]
        gamma = float(sched_cfg["gamma"])

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if name == "constant":
            return 1.0
        if name == "multistep":
            return gamma ** sum(step >= m for m in milestones)
        progress = (step - warmup) / max(total_steps - warmup, 1)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, sched_cfg: Mapping[str, Any], total_steps: int, steps_per_epoch: int
) -> dict[str, Any]:
    """Lightning ``lr_scheduler`` dict stepping a LambdaLR every optimisation step.

    ``min_lr_ratio`` is a fraction of each group's base lr, so groups with different learning
    rates (joint training) decay alike.
    """
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(sched_cfg, total_steps, steps_per_epoch)
    )
    return {"scheduler": schedule, "interval": "step", "frequency": 1}


def check_optim_section(cfg: Mapping[str, Any], key: str) -> None:
    """An optimizer + scheduler section (``optim``, or a strategy's own ``strategy.optim``) at ``key``."""
    optim = get_key(cfg, key)
    require(
        isinstance(optim, Mapping) and isinstance(optim.get("optimizer"), Mapping),
        key,
        optim,
        "must have an optimizer section (with _target_) and a scheduler section, like conf/optim/*.yaml",
    )
    target = optim["optimizer"].get("_target_")
    try:
        get_class(str(target))
    except Exception:  # noqa: BLE001 - hydra raises several types here
        raise ConfigError(
            f"{key}.optimizer._target_={target!r} is not allowed: must be an importable optimizer class "
            "such as torch.optim.SGD"
        ) from None
    lr = optim["optimizer"].get("lr")
    require(is_finite(lr) and lr > 0, f"{key}.optimizer.lr", lr, "must be a finite number > 0")
    for name, low, high in (("weight_decay", 0.0, math.inf), ("momentum", 0.0, 1.0)):
        if name in optim["optimizer"]:
            value = optim["optimizer"][name]
            require(
                is_finite(value) and low <= value <= high,
                f"{key}.optimizer.{name}",
                value,
                f"must be a finite number in [{low:g}, {high:g}]",
            )
    sched = optim.get("scheduler")
    require(
        isinstance(sched, Mapping), f"{key}.scheduler", sched, "must be a section with name, warmup_epochs"
    )
    require_choice(cfg, f"{key}.scheduler.name", SCHEDULES)
    if sched["name"] == "multistep":
        for name in ("milestones", "gamma"):
            require(name in sched, f"{key}.scheduler", sched, f"needs {name} for the multistep schedule")
    checks = (("warmup_epochs", 0.0, math.inf), ("min_lr_ratio", 0.0, 1.0), ("gamma", 0.0, math.inf))
    for name, low, high in checks:
        if sched.get(name) is not None:
            value = sched[name]
            require(
                is_finite(value) and low <= value <= high,
                f"{key}.scheduler.{name}",
                value,
                f"must be a finite number in [{low:g}, {high:g}]",
            )
    milestones = sched.get("milestones", [])
    require(
        isinstance(milestones, list) and all(is_finite(m) and 0 <= m <= 1 for m in milestones),
        f"{key}.scheduler.milestones",
        milestones,
        "must be a list of fractions of training in [0, 1]",
    )
