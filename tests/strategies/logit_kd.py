"""``logit_kd`` (test only): logit distillation from a teacher stage (Hinton et al., 2015).

    CE(S(x~), y) + t^2 * KL(softmax(T(x~) / t) || softmax(S(x~) / t))

Everything else (the teacher stage, training noise, frozen-role and config checks, evaluation)
is the strategy contract's (ssd.strategies.base); the YAML is tests/conf/strategy/logit_kd.yaml.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ssd.config.checks import is_number, require
from ssd.strategies.base import NoisyImageModule


class LogitKD(NoisyImageModule):
    requires: ClassVar[tuple[str, ...]] = ("teacher",)  # a frozen stage, built from strategy.teacher

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        t = cfg["strategy"]["temperature"]
        require(is_number(t) and t > 0, "strategy.temperature", t, "must be a number > 0")

    def training_loss(
        self, x: Tensor, x_noisy: Tensor, y: Tensor
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        t = float(self.cfg["strategy"]["temperature"])
        with torch.no_grad():
            teacher = F.log_softmax(self.frozen["teacher"](x_noisy).float() / t, dim=1)
        logits = self.net(x_noisy)
        student = F.log_softmax(logits.float() / t, dim=1)
        kd = F.kl_div(student, teacher, reduction="batchmean", log_target=True) * t * t
        ce = F.cross_entropy(logits, y)
        return ce + kd, logits, {"ce": ce.detach(), "kd": kd.detach()}
