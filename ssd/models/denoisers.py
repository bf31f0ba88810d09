"""Image denoisers for the two-stage (`denoise`) and `joint` strategies.

Inputs and outputs are images in [0,1] (no normalisation; no clamp unless
``clamp_output=True``, so an MSE loss sees the raw prediction).

Both nets are residual and their last conv starts at zero weights and bias, so at
init the denoiser is exactly the identity: stage-2/joint training starts from "do no
harm" (the classifier sees the noisy image unchanged) instead of from a random image
transform, and the net only has to learn the noise (a small correction). The zero conv
still gets gradient (its input activations are non-zero), and once it moves the earlier
layers do too.
"""

from __future__ import annotations

from typing import Annotated

import torch
from torch import Tensor, nn

from ssd.config import Range


def _conv_bn_relu(in_ch: int, out_ch: int) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]


def _zero_(conv: nn.Conv2d) -> nn.Conv2d:
    nn.init.zeros_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


class DnCNN(nn.Module):
    """Zhang et al. 2017: conv+relu, (depth-2) x conv+bn+relu, conv.

    ``residual=True`` (the paper's residual learning): the net predicts the noise and the
    output is ``x - net(x)``; its last conv is zero-initialised (identity at init).
    ``residual=False`` predicts the clean image directly (default init for the last conv,
    since a zero conv would output a black image).
    """

    def __init__(
        self,
        depth: Annotated[int, Range(ge=2)],
        width: Annotated[int, Range(gt=0)],
        channels: Annotated[int, Range(gt=0)],
        residual: bool,
        clamp_output: bool,
    ) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError(f"DnCNN depth must be >= 2, got {depth}")
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += _conv_bn_relu(width, width)
        last = nn.Conv2d(width, channels, 3, padding=1)
        layers.append(_zero_(last) if residual else last)
        self.net = nn.Sequential(*layers)
        self.residual = residual
        self.clamp_output = clamp_output

    def forward(self, x: Tensor) -> Tensor:
        out = x - self.net(x) if self.residual else self.net(x)
        return out.clamp(0.0, 1.0) if self.clamp_output else out


class _DoubleConv(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(*_conv_bn_relu(in_ch, out_ch), *_conv_bn_relu(out_ch, out_ch))


class _Up(nn.Module):
    """Upsample by 2 (transposed conv), concatenate the skip, double conv."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
        self.conv = _DoubleConv(2 * out_ch, out_ch)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.conv(torch.cat([self.up(x), skip], dim=1))


class UNet(nn.Module):
    """A small U-Net: ``depth`` max-pool levels down, transposed convs up, skips between.

    Channels double per level (``base``, ``2*base``, ...). Output is ``x + net(x)`` with a
    zero-initialised last 1x1 conv (identity at init). H and W must be divisible by
    ``2**depth``.
    """

    def __init__(
        self,
        channels: Annotated[int, Range(gt=0)],
        base: Annotated[int, Range(gt=0)],
        depth: Annotated[int, Range(ge=1)],
        clamp_output: bool,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"UNet depth must be >= 1, got {depth}")
        self.depth = depth
        self.clamp_output = clamp_output
        widths = [base * 2**i for i in range(depth + 1)]
        self.inc = _DoubleConv(channels, widths[0])
        self.pool = nn.MaxPool2d(2)
        self.down = nn.ModuleList(_DoubleConv(widths[i], widths[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(_Up(widths[i + 1], widths[i]) for i in reversed(range(depth)))
        self.out = _zero_(nn.Conv2d(widths[0], channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        factor = 2**self.depth
        if h % factor or w % factor:
            raise ValueError(
                f"UNet(depth={self.depth}) needs height and width divisible by {factor}; "
                f"got {h}x{w} (pad or crop the images)"
            )
        skips = [self.inc(x)]
        for down in self.down:
            skips.append(down(self.pool(skips[-1])))
        y = skips.pop()
        for up in self.up:
            y = up(y, skips.pop())
        out = x + self.out(y)
        return out.clamp(0.0, 1.0) if self.clamp_output else out
