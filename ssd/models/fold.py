"""Fold a frozen network's BatchNorm layers into the convolutions that feed them.

A BatchNorm in eval mode is an affine map per channel, ``y = a * x + b`` with
``a = gamma / sqrt(running_var + eps)`` and ``b = beta - a * running_mean``. When its input
is the output of a convolution (and of nothing else), ``bn(conv(x)) == conv'(x)`` with
``w' = a * w`` (per output channel) and ``bias' = a * bias + b``: one pass over the
activations instead of two. The arithmetic is PyTorch's own
(``torch.nn.utils.fusion.fuse_conv_bn_weights``, in the weights' dtype).

What stays hand-written, and why: ``fuse_conv_bn_eval`` returns a *new* convolution and
``torch.fx``'s fusion a traced copy whose stage modules are no longer called, so forward hooks
on module paths (the feature taps) would stop firing. This module folds in place, pairs
convolutions with BatchNorms from a real forward pass (any backbone, no tracing) and undoes
the fold afterwards.

Which convolution feeds which BatchNorm is read off one real forward pass (forward hooks,
tensor identity), not from module names, so it works for any backbone: a BatchNorm whose
input is not the fresh output of a convolution called once per pass is left as it is.

Folding happens in place and is undone by ``FoldedBatchNorm.restore()``, which puts the
original parameter objects and BatchNorm modules back, so hooks, module paths (feature
taps) and the caller's references stay valid and the state dict is bit-for-bit the one
before folding. Use it only on a network in eval mode whose parameters are not trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass
class _Fold:
    conv: nn.Conv2d
    weight: nn.Parameter
    bias: nn.Parameter | None
    parent: nn.Module
    bn_name: str
    bn: nn.Module


def _foldable_bn(bn: nn.Module) -> bool:
    """A BatchNorm that is an affine map: eval mode with running statistics."""
    return (
        isinstance(bn, _BN_TYPES)
        and not bn.training
        and bn.track_running_stats
        and bn.running_mean is not None
        and bn.running_var is not None
    )


@torch.no_grad()
def conv_bn_pairs(net: nn.Module, example: Tensor) -> list[tuple[str, str]]:
    """``[(conv path, bn path)]`` where the BatchNorm's input is the output of the convolution.

    Runs ``net(example)`` once with hooks. A convolution or BatchNorm called more than once
    per pass, a convolution whose output also goes elsewhere as a module input, and a
    BatchNorm in training mode are never paired.
    """
    names = {m: n for n, m in net.named_modules()}
    convs = [m for m in names if isinstance(m, nn.Conv2d)]
    bns = [m for m in names if isinstance(m, _BN_TYPES)]
    produced: dict[int, nn.Module] = {}  # id(output tensor) -> the conv that produced it
    outputs: list[Tensor] = []  # keep them alive so ids stay unique
    calls: dict[nn.Module, int] = {}
    consumers: dict[nn.Module, int] = {}  # conv -> module inputs that were its output
    feeds: dict[nn.Module, nn.Module] = {}  # bn -> conv

    def count_input(module: nn.Module, args: Any) -> None:
        for a in args:
            if isinstance(a, Tensor) and id(a) in produced:
                consumers[produced[id(a)]] = consumers.get(produced[id(a)], 0) + 1

    def after_conv(module: nn.Module, _args: Any, out: Tensor) -> None:
        calls[module] = calls.get(module, 0) + 1
        produced[id(out)] = module
        outputs.append(out)

    def before_bn(module: nn.Module, args: Any) -> None:
        calls[module] = calls.get(module, 0) + 1
        src = produced.get(id(args[0])) if args and isinstance(args[0], Tensor) else None
        if src is not None:
            feeds[module] = src

    handles = [m.register_forward_pre_hook(count_input) for m in names if m is not net]
    handles += [c.register_forward_hook(after_conv) for c in convs]
    handles += [b.register_forward_pre_hook(before_bn) for b in bns]
    try:
        net(example)
    finally:
        for h in handles:
            h.remove()
    pairs = []
    for bn, conv in feeds.items():
        once = calls.get(bn) == 1 and calls.get(conv) == 1 and consumers.get(conv) == 1
        if once and _foldable_bn(bn):
            pairs.append((names[conv], names[bn]))
    return pairs


def _folded(conv: nn.Conv2d, bn: nn.Module) -> tuple[Tensor, Tensor]:
    """(weight, bias) of ``bn(conv(.))`` as one convolution."""
    weight, bias = fuse_conv_bn_weights(
        conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
    )
    return weight.detach(), bias.detach()


def _set_weight(conv: nn.Conv2d, weight: Tensor) -> None:
    """A new frozen weight in the old one's memory format (channels_last stays channels_last)."""
    fmt = torch.channels_last if conv.weight.is_contiguous(memory_format=torch.channels_last) else None
    conv.weight = nn.Parameter(
        weight.contiguous(memory_format=fmt) if fmt else weight.contiguous(), requires_grad=False
    )


class FoldedBatchNorm:
    """The BatchNorm layers of ``net`` folded into their convolutions, in place, until ``restore()``.

    Args:
        net: a network in eval mode (its BatchNorms use running statistics).
        example: an input batch; one forward on it finds the conv -> BatchNorm pairs.
    """

    def __init__(self, net: nn.Module, example: Tensor) -> None:
        self.net = net
        self._folds: list[_Fold] = []
        probe = example.detach().float()[:2]
        with torch.autocast(example.device.type, enabled=False), torch.no_grad():
            pairs = conv_bn_pairs(net, probe)
            reference = net(probe)
            self._fold(pairs)
            self._check(reference, net(probe))

    def _fold(self, pairs: list[tuple[str, str]]) -> None:
        net = self.net
        for conv_path, bn_path in pairs:
            conv, bn = net.get_submodule(conv_path), net.get_submodule(bn_path)
            parent_path, _, bn_name = bn_path.rpartition(".")
            parent = net.get_submodule(parent_path) if parent_path else net
            self._folds.append(_Fold(conv, conv.weight, conv.bias, parent, bn_name, bn))
            weight, bias = _folded(conv, bn)
            _set_weight(conv, weight)
            conv.bias = nn.Parameter(bias, requires_grad=False)
            setattr(parent, bn_name, nn.Identity())

    def _check(self, reference: Tensor, folded: Tensor) -> None:
        """Undo and refuse when the folded network computes something else (a conv output also used
        by a function outside any module, which hooks cannot see)."""
        scale = reference.abs().max().clamp_min(1e-6)
        if not torch.allclose(folded, reference, rtol=1e-4, atol=1e-4 * float(scale)):
            self.restore()
            error = float((folded - reference).abs().max() / scale)
            raise RuntimeError(f"BatchNorm folding changed the network's output (relative error {error:.2e})")

    @property
    def folded(self) -> list[str]:
        """Paths of the BatchNorm layers folded away."""
        names = {m: n for n, m in self.net.named_modules()}
        return [f"{names[f.parent]}.{f.bn_name}".lstrip(".") for f in self._folds]

    def __len__(self) -> int:
        return len(self._folds)

    @torch.no_grad()
    def restore(self) -> None:
        """Put the original weights and BatchNorm modules back (moved to where the network now is)."""
        for f in reversed(self._folds):
            device = f.conv.weight.device
            for p in (f.weight, f.bias):
                if p is not None and p.device != device:
                    p.data = p.data.to(device)
            f.conv.weight = f.weight
            f.conv.bias = f.bias
            setattr(f.parent, f.bn_name, f.bn.to(device))
        self._folds = []
