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

import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torch import nn

#: Uniform tap name -> module path inside a torchvision ResNet.
TV_TAPS: dict[str, str] = {
    "stem": "relu",
    "layer1": "layer1",
    "layer2": "layer2",
    "layer3": "layer3",
    "layer4": "layer4",
}


def load_weights(module: nn.Module, path: str | Path) -> None:
    """Load a local state dict file into ``module``.

    Accepts a plain state dict or ``{"state_dict": ...}``, and strips the ``module.``
    prefix that DDP-saved dicts carry. If the file's ``fc`` has a different number of
    classes than ``module`` (ImageNet weights, CIFAR head), ``fc`` keeps its fresh init
    and a warning says so; every other key must match exactly.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file {str(path)!r} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = module.state_dict()
    head = [k for k in state if k.startswith("fc.") and k in own and state[k].shape != own[k].shape]
    if head:
        warnings.warn(
            f"{path}: fc has a different number of classes; keeping a fresh head",
            stacklevel=2,
        )
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (head and k.startswith("fc."))]
    if missing or unexpected:
        raise RuntimeError(f"{path}: missing keys {missing}, unexpected keys {unexpected}")


def _tv(
    ctor: Callable[..., torchvision.models.ResNet], num_classes: int, pretrained: str | None
) -> torchvision.models.ResNet:
    net = ctor(weights=None, num_classes=num_classes)
    if pretrained:
        load_weights(net, pretrained)
    return net


def tv_resnet18(num_classes: int, pretrained: str | None = None) -> torchvision.models.ResNet:
    """torchvision ResNet-18 (ImageNet layout: 7x7 stride-2 stem + max-pool)."""
    return _tv(torchvision.models.resnet18, num_classes, pretrained)


def tv_resnet34(num_classes: int, pretrained: str | None = None) -> torchvision.models.ResNet:
    """torchvision ResNet-34."""
    return _tv(torchvision.models.resnet34, num_classes, pretrained)


def tv_resnet50(num_classes: int, pretrained: str | None = None) -> torchvision.models.ResNet:
    """torchvision ResNet-50 (Bottleneck blocks)."""
    return _tv(torchvision.models.resnet50, num_classes, pretrained)
