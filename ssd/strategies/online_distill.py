"""``online_distill``: self-distillation in one stage, the teacher an EMA of the student itself.

No teacher is trained first. The teacher is an exponential moving average of the student's
weights (mean-teacher style), kept by ``torch.optim.swa_utils.AveragedModel`` and updated after
every optimizer step:

    theta_T <- d_t * theta_T + (1 - d_t) * theta_S,   d_t = min(ema_decay, t / (t + 1))

with ``t`` the number of earlier updates, so the first update copies the student and the
teacher is the plain average of all iterates until that average would forget faster than
``ema_decay`` (Tarvainen & Valpola, 2017). It is never in the optimizer, has
``requires_grad=False``, runs in eval mode under ``torch.no_grad`` as a frozen teacher does.

Its BatchNorm statistics (``strategy.ema_bn``):

* ``ema``: averaged like the weights (integer buffers such as ``num_batches_tracked`` copied);
* ``student``: the student's own running statistics, copied at every update;
* ``recompute``: computed for the averaged weights (``torch.optim.swa_utils.update_bn``, averaged
  over DDP ranks) after the first update and every ``ema_bn_every``-th one, and at every epoch end,
  on the last ``ema_bn_batches`` training batches exactly as the teacher saw them (kept from this
  epoch's steps: no extra loading, no extra random draws, and a run resumed at an epoch boundary
  recomputes what an uninterrupted one does). Recomputing only at epoch ends, as SWA does for a
  model used once at the end, left the teacher with the statistics the first update copies (the
  student's after one step, nearly mean 0 / variance 1) for all of epoch 0: its features blew up
  and the student diverged.

The step is ``Distillation``'s (same taps, feature losses, ``teacher_input``, ``lambda``),
except that the distillation term is scaled by a warm-up ramp, linear in optimizer steps from
0 at the first step to 1 after ``warmup_epochs`` epochs (counted in optimizer steps, so gradient
accumulation does not stretch it): early on the EMA is no better than the student. Evaluation is
the shared one on the student; the EMA is also tested as a model of its own (``test/acc_ema``,
``test/acc_ema_clean``). The EMA is saved in checkpoints and with the stage (``stage_state``), so
a stage evaluated again from its folder, from the cache or by ``eval_only`` tests the trained EMA.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, update_bn
from torchmetrics.classification import MulticlassAccuracy

from ssd.config import Range
from ssd.config.errors import ConfigError
from ssd.strategies.distill import Distillation, _unwrapped

#: where the EMA teacher's BatchNorm statistics come from
EmaBatchNorm = Literal["ema", "student", "recompute"]


def ema_decay_at(update: int, ema_decay: float) -> float:
    """``d_t`` of the update rule: ``min(ema_decay, t / (t + 1))`` for the ``t``-th update (from 0)."""
    return min(float(ema_decay), update / (update + 1))


def warmup_scale(step: int, warmup_steps: int) -> float:
    """The distillation term's factor at an optimizer step: linear from 0 to 1 over ``warmup_steps``."""
    return 1.0 if warmup_steps <= 0 else min(1.0, step / warmup_steps)


class OnlineDistillation(Distillation):
    """Student ``self.net`` distilled from ``self.ema``, the exponential moving average of its own weights.

    Args (besides ``Distillation``'s):
        ema_decay: ``d``, in [0, 1) (1 would never move the teacher).
        warmup_epochs: epochs over which the distillation term ramps from 0 to 1 (0: no ramp).
        ema_bn: where the EMA's BatchNorm statistics come from (module docstring).
        ema_bn_batches: the latest training batches that recompute them (``ema_bn=recompute``).
        ema_bn_every: optimizer steps between recomputations (``ema_bn=recompute``).
    """

    def __init__(
        self,
        *,
        ema_decay: Annotated[float, Range(ge=0, lt=1)],
        warmup_epochs: Annotated[float, Range(ge=0)],
        ema_bn: EmaBatchNorm,
        ema_bn_batches: Annotated[int, Range(gt=0)],
        ema_bn_every: Annotated[int, Range(gt=0)],
        **distillation: Any,
    ):
        self.ema_decay = float(ema_decay)
        self.ema_bn = ema_bn
        self.ema_bn_batches = int(ema_bn_batches)
        self.ema_bn_every = int(ema_bn_every)
        #: the teacher's views of this epoch's latest batches (ema_bn=recompute)
        self._bn_views: deque[Tensor] = deque(maxlen=self.ema_bn_batches)
        self.warmup_epochs = float(warmup_epochs)
        self.warmup_steps: int | None = None  # set when a fit starts
        if distillation.get("adapter"):
            raise ConfigError(
                "strategy.adapter=True is not allowed: must be false: the EMA teacher is the student's own shape"
            )
        super().__init__(**distillation)
        n = int(self.data.num_classes)
        self.ema_test_accs = nn.ModuleDict(
            {
                "noisy": MulticlassAccuracy(num_classes=n, average="micro"),
                "clean": MulticlassAccuracy(num_classes=n, average="micro"),
            }
        )

    def attach_teacher(self) -> nn.Module:
        #: the teacher: the student's initial weights, then their EMA (saved in checkpoints, unlike frozen stages)
        self.ema = AveragedModel(_unwrapped(self.net), multi_avg_fn=self._average, use_buffers=True)  # a copy
        self.ema.requires_grad_(False).eval()
        self._updates = 0  # mirrors ema.n_averaged on the host (read once per fit: no sync per step)
        self._decay = 0.0
        return self.ema.module

    @property
    def teacher(self) -> nn.Module:
        return self.ema.module

    def train(self, mode: bool = True) -> OnlineDistillation:
        """The EMA teacher stays in eval mode (running statistics, never batch statistics)."""
        super().train(mode)
        self.ema.eval()
        return self

    # ------------------------------------------------------------------ the average
    def _average(self, averaged: list[Tensor], current: list[Tensor], num_averaged: Tensor) -> None:
        """``AveragedModel``'s update of one group of tensors (one device and dtype) after the first."""
        buffers = {b.data_ptr() for b in self.ema.module.buffers()}
        is_buffer = [t.data_ptr() in buffers for t in averaged]
        weights = [
            (a, c)
            for a, c, b in zip(averaged, current, is_buffer, strict=True)
            if not b or self.ema_bn == "ema"
        ]
        copies = [
            (a, c)
            for a, c, b in zip(averaged, current, is_buffer, strict=True)
            if b and self.ema_bn == "student"
        ]
        if weights and averaged[0].is_floating_point():
            torch._foreach_lerp_([a for a, _ in weights], [c for _, c in weights], 1.0 - self._decay)
        elif weights:  # integer buffers (num_batches_tracked): the student's count
            copies += weights
        for a, c in copies:
            a.copy_(c)

    def update_ema(self) -> None:
        """One EMA step toward the student's current weights (after each optimizer step); under
        ``ema_bn=recompute``, the first update (which copies the student, buffers too) and every
        ``ema_bn_every``-th one are followed by the statistics of the new weights."""
        update = self._updates
        self._decay = ema_decay_at(update, self.ema_decay)
        self.ema.update_parameters(_unwrapped(self.net))
        self._updates += 1
        if self.ema_bn == "recompute" and update % self.ema_bn_every == 0 and self._bn_views:
            self.recompute_ema_batchnorm()

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        self.update_ema()

    # ------------------------------------------------------------------ training
    def on_train_start(self) -> None:
        """The warm-up in optimizer steps, now that the trainer knows the batches per epoch."""
        self._updates = int(self.ema.n_averaged)
        batches = self.trainer.num_training_batches
        if math.isfinite(batches):
            per_epoch = math.ceil(batches / max(int(self.trainer.accumulate_grad_batches), 1))
        else:  # a loader without a length
            per_epoch = self.trainer.estimated_stepping_batches / max(int(self.trainer.max_epochs or 1), 1)
        self.warmup_steps = round(self.warmup_epochs * per_epoch)

    def distill_scale(self) -> float:
        """The warm-up ramp at this optimizer step (1 outside a fit, where there are no steps to count)."""
        return 1.0 if self.warmup_steps is None else warmup_scale(int(self.global_step), self.warmup_steps)

    def teacher_view(self, x: Tensor, x_noisy: Tensor) -> Tensor:
        """The teacher's view; under ``ema_bn=recompute`` also kept for the next recomputation."""
        view = super().teacher_view(x, x_noisy)
        if self.ema_bn == "recompute" and self.training:
            self._bn_views.append(view.detach())
        return view

    def on_train_epoch_start(self) -> None:
        """Each epoch recomputes from its own batches (a run resumed here then does what an unbroken one does)."""
        self._bn_views.clear()

    def on_train_epoch_end(self) -> None:
        if self.ema_bn == "recompute" and self._bn_views:
            self.recompute_ema_batchnorm()  # the statistics of the weights the epoch ended with

    @torch.no_grad()
    def recompute_ema_batchnorm(self) -> None:
        """BatchNorm statistics of the averaged weights, from the latest ``ema_bn_batches`` training batches
        as the teacher saw them, averaged over ranks."""
        update_bn(list(self._bn_views), self.ema.module)
        self.ema.eval()
        for module in self.ema.module.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
                for name in ("running_mean", "running_var"):
                    buffer = getattr(module, name)
                    buffer.copy_(self.trainer.strategy.reduce(buffer.clone(), reduce_op="mean"))

    # ------------------------------------------------------------------ the stage's EMA
    def stage_state(self) -> dict[str, Tensor]:
        return {f"ema.{k}": v.detach().cpu() for k, v in self.ema.state_dict().items()}

    def load_stage_state(self, state: Mapping[str, Tensor]) -> None:
        self.ema.load_state_dict({k[len("ema.") :]: v for k, v in state.items() if k.startswith("ema.")})
        self._updates = int(self.ema.n_averaged)

    # ------------------------------------------------------------------ evaluation of the EMA itself
    def on_test_start(self) -> None:
        """An EMA that was never updated (weights loaded without one) is the student itself."""
        if int(self.ema.n_averaged) == 0:
            self.ema.update_parameters(_unwrapped(self.net))

    def test_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        super().test_step(batch, batch_idx)
        x, y, idx = batch
        for name, noise in (("noisy", self.noise), ("clean", self.test_noises["clean"])):
            self.ema_test_accs[name].update(self.ema.module(self.eval_noisy(x, idx, noise)), y)

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        for name, metric in self.ema_test_accs.items():
            self.log("test/acc_ema" if name == "noisy" else f"test/acc_ema_{name}", metric.compute())
            metric.reset()

    @classmethod
    def method_label(cls, section: Mapping[str, Any]) -> str:
        return f"{section['name']}:{section['teacher_input']}"
