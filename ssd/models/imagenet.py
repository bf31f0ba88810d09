"""Torchvision's ImageNet ResNets, built without downloads, plus local weight loading.

``weights=None`` always: this framework never fetches weights from the internet. A
``pretrained`` path to a local state-dict file is loaded when given.

Tap map (torchvision names: conv1, bn1, relu, maxpool, layer1..4, avgpool, fc). The stem
tap is the top-level ``relu`` module: torchvision's ``ResNet._forward_impl`` calls it
exactly once (conv1 -> bn1 -> relu -> maxpool); every Basic/Bottleneck block owns its own
``relu`` (``layer1.0.relu``, ...), so a hook on the top-level one fires once per forward
and records the stem output after its ReLU, before the max-pool. That ReLU is in-place,
but only on bn1's output, which nothing else reads; max-pool and the blocks never write
into their inputs (blocks do ``out += identity`` on their own fresh ``out``), so tapped
tensors are not changed later in the pass.
"""

from __future__ import annotations

from collections.abc import Callable

import torchvision

from ssd.models.weights import load_pretrained

#: Uniform tap name -> module path inside a torchvision ResNet.
TV_TAPS: dict[str, str] = {
    "stem": "relu",
    "layer1": "layer1",
    "layer2": "layer2",
    "layer3": "layer3",
    "layer4": "layer4",
}


def _tv(
    ctor: Callable[..., torchvision.models.ResNet], num_classes: int, pretrained: str | None
) -> torchvision.models.ResNet:
    net = ctor(weights=None, num_classes=num_classes)
    net.taps = dict(TV_TAPS)  # named feature taps (any other module path can be tapped too)
    return load_pretrained(net, pretrained)


def tv_resnet18(num_classes: int, pretrained: str | None = None) -> torchvision.models.ResNet:
    """torchvision ResNet-18 (ImageNet layout: 7x7 stride-2 stem + max-pool)."""
    return _tv(torchvision.models.resnet18, num_classes, pretrained)


def tv_resnet34(num_classes: int, pretrained: str | None = None) -> torchvision.models.ResNet:
    """torchvision ResNet-34."""
    return _tv(torchvision.models.resnet34, num_classes, pretrained)


def tv_resnet50(num_classes: int, pretrained: str | None = None) -> torchvision.models.ResNet:
    """torchvision ResNet-50 (Bottleneck blocks)."""
    return _tv(torchvision.models.resnet50, num_classes, pretrained)
