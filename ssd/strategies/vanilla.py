"""``vanilla``: train the classifier on noisy images, ``CE(g(x~), y)``.

The plain baseline, and the teacher stage of ``self_distill``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ssd.strategies.base import NoisyImageModule


class Vanilla(NoisyImageModule):
    def training_loss(
        self, x: Tensor, x_noisy: Tensor, y: Tensor
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        logits = self.net(x_noisy)
        return F.cross_entropy(logits, y), logits, {}
