"""A torchvision backbone with named feature taps: MobileNetV3-Small, built without downloads.

ssd fills in ``num_classes``; any module of the network can be distilled by its dotted path
(``strategy.taps=[features.2.block.0]``), and ``taps`` names a few so that ``strategy.taps=all``
means something for it.
"""

from __future__ import annotations

from typing import Annotated

import torchvision
from torch import nn

from ssd.config import Range


def mobilenet_v3_small(num_classes: int, width_mult: Annotated[float, Range(gt=0)]) -> nn.Module:
    net = torchvision.models.mobilenet_v3_small(weights=None, num_classes=num_classes, width_mult=width_mult)
    net.taps = {"stem": "features.0", "middle": "features.6", "late": "features.12"}
    return net
