"""``logit_kd``: logit distillation from a teacher stage (Hinton et al., 2015).

    CE(S(x~), y) + t^2 * KL(softmax(T(x~) / t) || softmax(S(x~) / t))

A strategy is a ``NoisyImageModule`` with one method to write, ``training_loss``; its own keys are
typed ``__init__`` arguments, and ``requires`` names the stages it needs (here a teacher, which ssd
trains first or finds in its cache). Everything else (training noise, evaluation, checkpoints)
is the base class's.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ssd.config import Range
from ssd.strategies import NoisyImageModule


class LogitKD(NoisyImageModule):
    requires: ClassVar[tuple[str, ...]] = ("teacher",)  # strategy.teacher: {strategy, ckpt, overrides}

    def __init__(self, *, temperature: Annotated[float, Range(gt=0)], **common: Any) -> None:
        super().__init__(**common)
        self.temperature = temperature

    def training_loss(
        self, x: Tensor, x_noisy: Tensor, y: Tensor
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        t = self.temperature
        with torch.no_grad():
            teacher = F.log_softmax(self.frozen["teacher"](x_noisy).float() / t, dim=1)
        logits = self.net(x_noisy)
        student = F.log_softmax(logits.float() / t, dim=1)
        kd = F.kl_div(student, teacher, reduction="batchmean", log_target=True) * t * t
        ce = F.cross_entropy(logits, y)
        return ce + kd, logits, {"ce": ce.detach(), "kd": kd.detach()}
