"""BatchNorm folding (ssd.models.fold): same network function, fewer layers, fully undone by restore()."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ssd.models import FeatureTaps
from ssd.models.fold import FoldedBatchNorm, conv_bn_pairs
from tests.helpers import classifier

MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]


def trained_like(arch: str, seed: int = 0) -> nn.Module:
    """A frozen classifier whose BatchNorms are far from the identity (as after training)."""
    torch.manual_seed(seed)
    net = classifier(arch, 10, MEAN, STD)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.2, 3.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    return net.eval().requires_grad_(False)


def n_batchnorms(net: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())


@pytest.mark.parametrize("arch", ["resnet20", "resnet18", "tv_resnet18"])
def test_every_batchnorm_folds_and_float32_logits_match(arch: str) -> None:
    net = trained_like(arch)
    x = torch.rand(4, 3, 32, 32)
    reference = net(x)
    count = n_batchnorms(net)
    folded = FoldedBatchNorm(net, x)
    assert len(folded) == count > 0 and n_batchnorms(net) == 0  # shortcut projections included
    out = net(x)
    assert torch.allclose(out, reference, rtol=1e-5, atol=1e-5 * reference.abs().max().item())
    folded.restore()
    assert n_batchnorms(net) == count


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def test_folded_features_match_within_bf16_tolerance_and_channels_last() -> None:
    net = trained_like("resnet20").to(memory_format=torch.channels_last)
    x = torch.rand(8, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    taps = ["stem", "layer1", "layer2", "layer3"]
    with FeatureTaps(net, taps) as t:
        net(x)
        exact = t.pop()  # float32, unfolded
        with torch.autocast("cpu", dtype=torch.bfloat16):
            net(x)
            unfolded = t.pop()
            handle = FoldedBatchNorm(net, x)
            net(x)
            folded = t.pop()  # the taps' modules keep their paths: hooks still fire
        net(x)
        folded_fp32 = t.pop()
    handle.restore()
    for name in taps:
        assert folded[name].dtype == unfolded[name].dtype == torch.bfloat16
        # float32: the same features up to rounding; bf16: folded and unfolded agree to bf16 precision
        # (8-bit mantissa, errors growing with depth), and folding adds no error of its own
        assert relative_error(folded_fp32[name], exact[name]) < 1e-5, name
        assert relative_error(folded[name], unfolded[name]) < 2e-2, name
        assert relative_error(folded[name], exact[name]) <= 1.25 * relative_error(unfolded[name], exact[name])
    assert all(
        m.weight.is_contiguous(memory_format=torch.channels_last)
        for m in net.modules()
        if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)
    )


def test_restore_puts_back_the_same_objects_and_values() -> None:
    net = trained_like("resnet20")
    before = copy.deepcopy(net.state_dict())
    params = {n: p for n, p in net.named_parameters()}
    modules = dict(net.named_modules())
    handle = FoldedBatchNorm(net, torch.rand(2, 3, 32, 32))
    assert "backbone.stem.1" in handle.folded
    assert net.backbone.stem[0].bias is not None and not net.backbone.stem[0].bias.requires_grad
    handle.restore()
    assert list(net.state_dict()) == list(before)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert all(p is params[n] for n, p in net.named_parameters())
    assert all(m is modules[n] for n, m in net.named_modules())
    handle.restore()  # twice is harmless


def test_only_eval_mode_batchnorm_after_a_conv_is_folded() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1)
    )
    net.eval()
    pairs = conv_bn_pairs(net, torch.rand(2, 3, 8, 8))
    assert pairs == [("0", "1")]  # the second BatchNorm follows a ReLU
    net[1].train()
    assert conv_bn_pairs(net, torch.rand(2, 3, 8, 8)) == []  # batch statistics are not an affine map


class ConvOutputUsedTwice(nn.Module):
    """A conv output read by its BatchNorm and by a function outside any module: folding would be wrong."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


def test_a_fold_that_changes_the_output_is_refused_and_undone() -> None:
    net = ConvOutputUsedTwice().eval()
    net.bn.running_mean.fill_(0.7)
    net.bn.running_var.fill_(3.0)
    state = copy.deepcopy(net.state_dict())
    with pytest.raises(RuntimeError, match="changed the network's output"):
        FoldedBatchNorm(net, torch.rand(2, 3, 8, 8))
    assert isinstance(net.bn, nn.BatchNorm2d) and net.conv.weight is not None
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
