"""Optimizer and learning-rate schedule shared by every strategy.

The optimizer arrives from config half-built (``_partial_: true``) and receives its
parameter groups here; the schedule is stepped per optimisation step so that warm-up
and cosine decay behave the same for any dataset size, batch size or number of devices.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from hydra.utils import instantiate

SCHEDULES = ("cosine", "constant", "multistep")


def build_optimizer(optim_cfg: Mapping[str, Any], params: Iterable[Any]) -> torch.optim.Optimizer:
    """Finish the partial optimizer of ``optim.optimizer`` with ``params`` (tensors or groups)."""
    factory = instantiate(optim_cfg["optimizer"])
    return factory(params)


def lr_lambda(sched_cfg: Mapping[str, Any], total_steps: int, steps_per_epoch: int) -> Callable[[int], float]:
    """Multiplier of the base lr at optimisation step ``step`` (linear warm-up, then the schedule)."""
    name = sched_cfg.get("name", "cosine")
    warmup = int(round(float(sched_cfg.get("warmup_epochs", 0)) * steps_per_epoch))
    warmup = min(warmup, max(total_steps - 1, 0))
    min_ratio = float(sched_cfg.get("min_lr_ratio", 0.0))
    milestones = [int(m * total_steps) for m in sched_cfg.get("milestones", [])]
    gamma = float(sched_cfg.get("gamma", 0.1))

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
