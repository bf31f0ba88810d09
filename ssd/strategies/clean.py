"""``clean`` (reference): train on clean images, ``CE(g(x), y)``; evaluated on noisy ones.

Shows how far a classifier that never saw noise collapses, and is the clean teacher of
``student_teacher`` and the frozen classifier of ``denoise``/``joint``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ssd.strategies.base import NoisyImageModule


class Clean(NoisyImageModule):
    trains_on_noise = False

    def training_loss(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        logits = self.net(x)
        return F.cross_entropy(logits, y), logits, {}
