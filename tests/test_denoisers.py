"""Denoisers: shapes, identity at init, trainability, their configs, input checks."""

from __future__ import annotations

import pytest
import torch

from ssd.models import DnCNN, UNet
from ssd.parts import denoiser_factory
from ssd.stages import group_section

SMALL = {
    "dncnn": {"depth": 4, "width": 8, "channels": 3, "residual": True, "clamp_output": False},
    "unet": {"base": 8, "depth": 2, "channels": 3, "clamp_output": False},
}
CLASSES = {"dncnn": DnCNN, "unet": UNet}


@pytest.mark.parametrize("arch", ["dncnn", "unet"])
def test_shape_and_identity_at_init(arch: str) -> None:
    torch.manual_seed(0)
    model = CLASSES[arch](**SMALL[arch])
    x = torch.rand(2, 3, 32, 32)
    for mode in (model.train, model.eval):
        mode()
        out = model(x)
        assert out.shape == x.shape
        assert torch.equal(out, x)


@pytest.mark.parametrize("arch", ["dncnn", "unet"])
def test_gradient_flows(arch: str) -> None:
    torch.manual_seed(0)
    model = CLASSES[arch](**SMALL[arch])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.rand(2, 3, 32, 32)
    target = x * 0.5
    for _ in range(2):  # step 1 moves the zero-init last conv, step 2 reaches the rest
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), target).backward()
        opt.step()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads)
    first = next(model.parameters())
    assert first.grad.abs().sum() > 0
    assert not torch.equal(model(x), x)


def test_dncnn_residual_false_is_not_identity() -> None:
    model = DnCNN(depth=3, width=8, channels=3, residual=False, clamp_output=False)
    x = torch.rand(1, 3, 16, 16)
    assert model(x).shape == x.shape
    assert not torch.equal(model(x), x)


def test_clamp_output() -> None:
    x = torch.rand(1, 3, 16, 16) * 2 - 0.5
    assert torch.equal(DnCNN(depth=3, width=8, channels=3, residual=True, clamp_output=False)(x), x)
    out = DnCNN(depth=3, width=8, channels=3, residual=True, clamp_output=True)(x)
    assert out.min() >= 0 and out.max() <= 1
    out = UNet(channels=3, base=4, depth=1, clamp_output=True)(x)
    assert out.min() >= 0 and out.max() <= 1


def test_unet_rejects_indivisible_size() -> None:
    model = UNet(channels=3, base=4, depth=2, clamp_output=False)
    with pytest.raises(ValueError, match=r"divisible by 4; got 30x32"):
        model(torch.rand(1, 3, 30, 32))


def test_unet_other_channels_and_depth() -> None:
    model = UNet(channels=1, base=4, depth=3, clamp_output=False)
    x = torch.rand(2, 1, 16, 16)
    assert torch.equal(model(x), x)


def test_denoiser_configs_name_their_class() -> None:
    """conf/denoiser/*.yaml are _target_ sections (no registry): each builds its network."""
    built = {
        name: denoiser_factory(group_section("denoiser", name))() for name in ("dncnn", "dncnn_small", "unet")
    }
    assert isinstance(built["dncnn"], DnCNN) and isinstance(built["unet"], UNet)
    assert len(built["dncnn_small"].net) < len(built["dncnn"].net)  # depth 8 extends dncnn
