"""``online_distill``: self-distillation in one stage, the teacher an EMA of the student itself.

No teacher is trained first. The teacher is an exponential moving average of the student's
weights (mean-teacher style), updated after every optimizer step:

    theta_T <- d_t * theta_T + (1 - d_t) * theta_S,   d_t = min(ema_decay, t / (t + 1))

with ``t`` the number of earlier updates, so the first update copies the student and the
teacher is the plain average of all iterates until that average would forget faster than
``ema_decay`` (Tarvainen & Valpola, 2017). BatchNorm: the teacher always runs in eval mode,
with running statistics that are the same EMA of the student's running statistics (integer
buffers, e.g. ``num_batches_tracked``, are copied). It is never in the optimizer, has
``requires_grad=False`` and runs under ``torch.no_grad`` as a frozen teacher does.

The step is ``Distillation``'s (same taps, feature losses, ``teacher_input``, ``lambda``),
except that the distillation term is scaled by a warm-up ramp, linear in training steps
from 0 at the first step to 1 after ``warmup_epochs`` epochs: early on the EMA is no better
than the student. Evaluation is the shared one on the student; the EMA weights are also
tested as a model of their own (``test/acc_ema``, ``test/acc_ema_clean``). The EMA is part
of the module's state, so checkpoints and resumed runs keep it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from ssd.config.checks import require, require_number
from ssd.noise import fixed_noisy
from ssd.strategies.distill import Distillation, _unwrapped


def ema_decay_at(update: int, ema_decay: float) -> float:
    """``d_t`` of the update rule: ``min(ema_decay, t / (t + 1))`` for the ``t``-th update (from 0)."""
    return min(float(ema_decay), update / (update + 1))


def warmup_scale(step: int, warmup_steps: int) -> float:
    """The distillation term's factor at a training step: linear from 0 to 1 over ``warmup_steps``."""
    return 1.0 if warmup_steps <= 0 else min(1.0, step / warmup_steps)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """``teacher <- decay * teacher + (1 - decay) * student``, parameters and floating buffers; others copied."""
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.lerp_(s.detach(), 1.0 - decay)
    for t, s in zip(teacher.buffers(), student.buffers(), strict=True):
        if t.is_floating_point():
            t.lerp_(s, 1.0 - decay)
        else:
            t.copy_(s)


class OnlineDistillation(Distillation):
    """Student ``self.net`` distilled from ``self.ema``, the exponential moving average of its own weights."""

    def attach_teacher(self) -> nn.Module:
        strategy_cfg = self.cfg["strategy"]
        self.ema_decay = float(strategy_cfg["ema_decay"])
        self.warmup_epochs = float(strategy_cfg["warmup_epochs"])
        self.warmup_steps: int | None = None  # set when a fit starts
        #: the teacher: the student's initial weights, then their EMA (saved in checkpoints, unlike frozen stages)
        self.ema = copy.deepcopy(_unwrapped(self.net)).eval().requires_grad_(False)
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        n = int(self.data_info["num_classes"])
        self.ema_test_accs = nn.ModuleDict(
            {
                "noisy": MulticlassAccuracy(num_classes=n, average="micro"),
                "clean": MulticlassAccuracy(num_classes=n, average="micro"),
            }
        )
        return self.ema

    @property
    def teacher(self) -> nn.Module:
        return self.ema

    def train(self, mode: bool = True) -> OnlineDistillation:
        """The EMA teacher stays in eval mode (running statistics, never batch statistics)."""
        super().train(mode)
        self.ema.eval()
        return self

    # ------------------------------------------------------------------ config
    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """The EMA's keys, then the student step's (the EMA teacher has the student's architecture and taps)."""
        require_number(cfg, "strategy.ema_decay", low=0, high=1)
        require_number(cfg, "strategy.warmup_epochs", low=0)
        adapter = cfg["strategy"]["adapter"]
        require(
            adapter is False,
            "strategy.adapter",
            adapter,
            "must be false: the EMA teacher is the student's own shape",
        )
        super().check_config(cfg)

    @classmethod
    def method_label(cls, cfg: Mapping[str, Any]) -> str:
        return f"{cfg['strategy']['name']}:{cfg['strategy']['teacher_input']}"

    # ------------------------------------------------------------------ training
    def on_train_start(self) -> None:
        """Steps of the warm-up, now that the trainer knows the batches per epoch."""
        per_epoch = self.trainer.num_training_batches
        if not math.isfinite(per_epoch):  # a loader without a length
            per_epoch = self.trainer.estimated_stepping_batches / max(int(self.trainer.max_epochs or 1), 1)
        self.warmup_steps = round(self.warmup_epochs * per_epoch)

    def distill_scale(self) -> float:
        """The warm-up ramp at this step (1 outside a fit, where there are no steps to count)."""
        return 1.0 if self.warmup_steps is None else warmup_scale(int(self.global_step), self.warmup_steps)

    def update_ema(self) -> None:
        """One EMA step toward the student's current weights (after each optimizer step)."""
        ema_update(self.ema, _unwrapped(self.net), ema_decay_at(int(self.ema_updates), self.ema_decay))
        self.ema_updates += 1

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        self.update_ema()

    # ------------------------------------------------------------------ evaluation of the EMA itself
    def test_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        super().test_step(batch, batch_idx)
        x, y, idx = batch
        for name, noise in (("noisy", self.noise), ("clean", self.test_noises["clean"])):
            self.ema_test_accs[name].update(
                self.ema(fixed_noisy(noise, x, idx, int(self.cfg["eval_seed"]))), y
            )

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        for name, metric in self.ema_test_accs.items():
            self.log("test/acc_ema" if name == "noisy" else f"test/acc_ema_{name}", metric.compute())
            metric.reset()
