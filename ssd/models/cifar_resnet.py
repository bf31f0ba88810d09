"""ResNets for 32x32 inputs (CIFAR), with module names that feature taps rely on.

Two families:

* He et al. 2016 (Sec. 4.2) ResNet-20/32/56: a 3x3 stem of 16 channels, three stages of
  ``n`` BasicBlocks with 16/32/64 channels, global average pool, linear head
  (6n + 2 layers). The shortcut that changes shape is **option A** by default, as in the
  paper's CIFAR experiments (parameter-free: subsample by 2 and zero-pad the new
  channels; ResNet-20 then has ~0.27M parameters). ``shortcut="B"`` gives the 1x1
  conv + BN projection instead.
* CIFAR ResNet-18: BasicBlock [2, 2, 2, 2], 64..512 channels, a 3x3 stride-1 stem and no
  max-pool (the usual adaptation of the ImageNet net to 32x32), 1x1 conv projection
  shortcuts; ~11.2M parameters.

Every net has the same top-level names: ``stem`` (conv-bn-relu; its output is the "stem"
tap), ``layer1`` .. ``layer3`` (``layer4`` for ResNet-18), ``pool`` (adaptive average pool
+ flatten) and ``fc``, and names them as its feature taps (``.taps``: name -> module path; any
other module path can be tapped too, see ``ssd.models.taps``). Tapped outputs (the stem and every block output) come out of
non-in-place ReLUs, and no later op writes into its input, so a recorded feature is
never changed by the rest of the forward pass (which autograd would otherwise reject
when a feature loss backpropagates through it).
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from ssd.models.weights import load_pretrained

Shortcut = Literal["A", "B"]


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)


class PadShortcut(nn.Module):
    """Option-A shortcut: keep every ``stride``-th pixel and zero-pad the extra channels."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        if out_ch < in_ch:
            raise ValueError(f"PadShortcut cannot shrink channels ({in_ch} -> {out_ch})")
        self.stride = stride
        self.pad_front = (out_ch - in_ch) // 2
        self.pad_back = out_ch - in_ch - self.pad_front

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_front, self.pad_back))


def _shortcut(in_ch: int, out_ch: int, stride: int, kind: Shortcut) -> nn.Module:
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    if kind == "A":
        return PadShortcut(in_ch, out_ch, stride)
    if kind == "B":
        return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))
    raise ValueError(f"shortcut={kind!r} is not known; valid: 'A', 'B'")


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection; the output ReLU is not in-place."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, shortcut: Shortcut) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_ch, out_ch, stride)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu1 = nn.ReLU(inplace=True)  # acts on a fresh, never-tapped tensor
        self.conv2 = _conv3x3(out_ch, out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = _shortcut(in_ch, out_ch, stride, shortcut)
        self.relu2 = nn.ReLU(inplace=False)  # block output: may be a tap

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """Stem -> stages of BasicBlocks (first block of stages 2.. strides by 2) -> pool -> fc."""

    def __init__(
        self,
        blocks: list[int],
        widths: list[int],
        num_classes: int,
        shortcut: Shortcut = "A",
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if len(blocks) != len(widths):
            raise ValueError("blocks and widths must have the same length")
        self.stem = nn.Sequential(
            _conv3x3(in_channels, widths[0]),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=False),  # its output is the "stem" tap
        )
        self.stage_names: list[str] = []
        in_ch = widths[0]
        for i, (n, width) in enumerate(zip(blocks, widths, strict=True)):
            layers = [
                BasicBlock(in_ch if j == 0 else width, width, 2 if (i > 0 and j == 0) else 1, shortcut)
                for j in range(n)
            ]
            name = f"layer{i + 1}"
            self.add_module(name, nn.Sequential(*layers))
            self.stage_names.append(name)
            in_ch = width
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.fc = nn.Linear(in_ch, num_classes)
        #: named feature taps (name -> module path): the stem and every stage output, in network order
        self.taps: dict[str, str] = {"stem": "stem", **{name: name for name in self.stage_names}}
        _kaiming_init(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return self.fc(self.pool(x))


def _kaiming_init(module: nn.Module) -> None:
    """He init for convs (fan_out, as torchvision); BN starts as the identity map."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight)
            nn.init.zeros_(m.bias)


def _he_resnet(n: int, num_classes: int, shortcut: Shortcut, pretrained: str | None) -> CifarResNet:
    return load_pretrained(CifarResNet([n, n, n], [16, 32, 64], num_classes, shortcut), pretrained)


def resnet20(num_classes: int, shortcut: Shortcut = "A", pretrained: str | None = None) -> CifarResNet:
    """He et al. ResNet-20 (n=3), ~0.27M parameters; ``pretrained``: a local state-dict file."""
    return _he_resnet(3, num_classes, shortcut, pretrained)


def resnet32(num_classes: int, shortcut: Shortcut = "A", pretrained: str | None = None) -> CifarResNet:
    """He et al. ResNet-32 (n=5), ~0.46M parameters."""
    return _he_resnet(5, num_classes, shortcut, pretrained)


def resnet56(num_classes: int, shortcut: Shortcut = "A", pretrained: str | None = None) -> CifarResNet:
    """He et al. ResNet-56 (n=9), ~0.85M parameters."""
    return _he_resnet(9, num_classes, shortcut, pretrained)


def resnet18_cifar(num_classes: int, pretrained: str | None = None) -> CifarResNet:
    """ResNet-18 for 32x32 inputs (3x3 stride-1 stem, no max-pool), ~11.2M parameters."""
    net = CifarResNet([2, 2, 2, 2], [64, 128, 256, 512], num_classes, shortcut="B")
    return load_pretrained(net, pretrained)
