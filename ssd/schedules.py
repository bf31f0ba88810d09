"""Learning-rate schedules, stepped every optimizer step, each with a linear warm-up.

A schedule is a callable ``(optimizer, *, total_steps, steps_per_epoch, **its own keys) ->
torch.optim.lr_scheduler.LRScheduler``; ``optim.scheduler`` names one with ``_target_`` and
``_partial_: true``, and ``configure_optimizers`` finishes it once the trainer knows how many
steps there are (``ssd.parts.schedule``: ``total_steps`` and ``steps_per_epoch`` are passed where
its signature takes them, so ``torch.optim.lr_scheduler.StepLR`` and friends work as well, stepped
per optimizer step). Stepping per optimizer step makes warm-up and decay behave the same for any
dataset size, batch size, gradient accumulation or number of devices. ``min_lr_ratio`` is a
fraction of each parameter group's base lr, so groups with different learning rates (joint
training) decay alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Annotated

import torch
from torch.optim.lr_scheduler import LambdaLR

from ssd.config import Range

Epochs = Annotated[float, Range(ge=0)]
Fraction = Annotated[float, Range(ge=0, le=1)]


def _warmup_steps(warmup_epochs: float, steps_per_epoch: int, total_steps: int) -> int:
    return min(int(round(float(warmup_epochs) * steps_per_epoch)), max(total_steps - 1, 0))


def _with_warmup(after: Callable[[int], float], warmup: int) -> Callable[[int], float]:
    """``after`` behind a linear warm-up of ``warmup`` steps (``after`` sees steps counted from its start)."""

    def factor(step: int) -> float:
        return (step + 1) / warmup if step < warmup else after(step - warmup)

    return factor


def cosine(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    steps_per_epoch: int,
    warmup_epochs: Epochs,
    min_lr_ratio: Fraction,
) -> LambdaLR:
    """Linear warm-up, then cosine decay from the base lr to ``min_lr_ratio`` of it."""
    warmup = _warmup_steps(warmup_epochs, steps_per_epoch, total_steps)
    span = max(total_steps - warmup, 1)

    def decay(step: int) -> float:
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(step / span, 1.0)))

    return LambdaLR(optimizer, _with_warmup(decay, warmup))


def constant(
    optimizer: torch.optim.Optimizer, *, total_steps: int, steps_per_epoch: int, warmup_epochs: Epochs
) -> LambdaLR:
    """Linear warm-up, then the base lr."""
    return LambdaLR(
        optimizer, _with_warmup(lambda step: 1.0, _warmup_steps(warmup_epochs, steps_per_epoch, total_steps))
    )


def multistep(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    steps_per_epoch: int,
    warmup_epochs: Epochs,
    milestones: Sequence[Fraction],
    gamma: Annotated[float, Range(gt=0)],
) -> LambdaLR:
    """Linear warm-up, then the lr times ``gamma`` at each milestone (fractions of training)."""
    warmup = _warmup_steps(warmup_epochs, steps_per_epoch, total_steps)
    steps = [int(m * total_steps) for m in milestones]

    def factor(step: int) -> float:
        return (step + 1) / warmup if step < warmup else gamma ** sum(step >= m for m in steps)

    return LambdaLR(optimizer, factor)
