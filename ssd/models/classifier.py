"""A classifier = normalisation + backbone + the names of its feature taps.

Images flow through the framework in [0,1]; normalisation lives here (as buffers, so it
moves with the model and is saved in checkpoints) and nowhere in the data pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ssd.models import cifar_resnet, imagenet


class ArchSpec(NamedTuple):
    """How to build a backbone from ``num_classes``, and its tap name -> module path map."""

    build: Callable[[int], nn.Module]
    taps: Mapping[str, str]


ARCHITECTURES: dict[str, ArchSpec] = {
    "resnet20": ArchSpec(cifar_resnet.resnet20, cifar_resnet.TAPS_3_STAGES),
    "resnet32": ArchSpec(cifar_resnet.resnet32, cifar_resnet.TAPS_3_STAGES),
    "resnet56": ArchSpec(cifar_resnet.resnet56, cifar_resnet.TAPS_3_STAGES),
    "resnet18": ArchSpec(cifar_resnet.resnet18_cifar, cifar_resnet.TAPS_4_STAGES),
    "tv_resnet18": ArchSpec(imagenet.tv_resnet18, imagenet.TV_TAPS),
    "tv_resnet34": ArchSpec(imagenet.tv_resnet34, imagenet.TV_TAPS),
    "tv_resnet50": ArchSpec(imagenet.tv_resnet50, imagenet.TV_TAPS),
}


def _channel_stats(values: Sequence[float] | Tensor, what: str) -> Tensor:
    t = torch.as_tensor([float(v) for v in values], dtype=torch.float32)
    if t.ndim != 1 or t.numel() == 0:
        raise ValueError(f"{what} must be a non-empty list of per-channel values, got {values!r}")
    return t.view(1, -1, 1, 1)


class Classifier(nn.Module):
    """``forward(x01) -> logits``: normalises [0,1] NCHW images, then runs the backbone.

    ``taps`` maps uniform tap names (network order: "stem", "layer1", ...) to dotted
    module paths relative to this module (e.g. "backbone.layer1"), for ``FeatureTaps``.
    """

    mean: Tensor
    std: Tensor

    def __init__(
        self,
        backbone: nn.Module,
        mean: Sequence[float] | Tensor,
        std: Sequence[float] | Tensor,
        taps: Mapping[str, str],
        arch: str = "",
    ) -> None:
        super().__init__()
        mean_t, std_t = _channel_stats(mean, "mean"), _channel_stats(std, "std")
        if mean_t.shape != std_t.shape:
            raise ValueError(f"mean has {mean_t.shape[1]} channels but std has {std_t.shape[1]}")
        if (std_t <= 0).any():
            raise ValueError(f"std must be positive, got {std_t.flatten().tolist()}")
        self.arch = arch
        self.backbone = backbone
        self.register_buffer("mean", mean_t)
        self.register_buffer("std", std_t)
        self.taps: dict[str, str] = {name: f"backbone.{path}" for name, path in taps.items()}

    def normalize(self, x: Tensor) -> Tensor:
        """Map [0,1] images to the backbone's input space."""
        return (x - self.mean) / self.std

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(self.normalize(x))


def build_classifier(
    arch: str,
    num_classes: int,
    mean: Sequence[float] | Tensor,
    std: Sequence[float] | Tensor,
    pretrained: str | None = None,
) -> Classifier:
    """Build ``ARCHITECTURES[arch]`` for ``num_classes``; load local backbone weights if given.

    Hydra target (``_target_: ssd.models.build_classifier``); ``num_classes``, ``mean`` and
    ``std`` come from the datamodule at build time.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"model.arch={arch!r} is not known; valid: {', '.join(ARCHITECTURES)}")
    spec = ARCHITECTURES[arch]
    backbone = spec.build(int(num_classes))
    if pretrained:
        imagenet.load_weights(backbone, pretrained)
    return Classifier(backbone, mean, std, spec.taps, arch=arch)
