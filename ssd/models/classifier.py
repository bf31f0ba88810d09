"""A classifier = normalisation + a backbone whose feature taps can be named.

Images flow through the framework in [0,1]; normalisation lives here (as buffers, so it
moves with the model and is saved in checkpoints) and nowhere in the data pipeline. The
backbone is any ``nn.Module`` mapping normalised NCHW images to logits; ``ssd.parts`` builds it
from ``model._target_`` with ``num_classes`` filled in. A backbone may name its feature taps
(``backbone.taps``: name -> module path, e.g. ssd's ResNets: ``stem``, ``layer1`` ...); any other
module of it can be tapped by its dotted path (``ssd.models.taps``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def _channel_stats(values: Sequence[float] | Tensor, what: str) -> list[float]:
    """Checked on the host (so a network can be built on the meta device)."""
    floats = [float(v) for v in (values.tolist() if isinstance(values, Tensor) else values)]
    if not floats:
        raise ValueError(f"{what} must be a non-empty list of per-channel values, got {values!r}")
    return floats


class Classifier(nn.Module):
    """``forward(x01) -> logits``: normalises [0,1] NCHW images, then runs the backbone.

    ``taps`` maps the backbone's named taps (network order) to module paths relative to this
    module (e.g. ``"layer1" -> "backbone.layer1"``); ``tap_root`` is where other dotted paths start.
    """

    mean: Tensor
    std: Tensor
    tap_root = "backbone"

    def __init__(
        self, backbone: nn.Module, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor
    ) -> None:
        super().__init__()
        means, stds = _channel_stats(mean, "mean"), _channel_stats(std, "std")
        if len(means) != len(stds):
            raise ValueError(f"mean has {len(means)} channels but std has {len(stds)}")
        if min(stds) <= 0:
            raise ValueError(f"std must be positive, got {stds}")
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(means, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(stds, dtype=torch.float32).view(1, -1, 1, 1))
        named = getattr(backbone, "taps", None) or {}
        self.taps: dict[str, str] = {name: f"{self.tap_root}.{path}" for name, path in named.items()}

    def normalize(self, x: Tensor) -> Tensor:
        """Map [0,1] images to the backbone's input space."""
        return (x - self.mean) / self.std

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(self.normalize(x))
