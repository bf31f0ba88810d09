"""FeatureTaps: which features, in what order, from which forward pass, and safely."""

from __future__ import annotations

import pytest
import torch

from ssd.models import FeatureTaps, resolve_taps, tap_shapes
from tests.helpers import classifier

MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]


@pytest.fixture(scope="module")
def r20() -> torch.nn.Module:
    torch.manual_seed(0)
    return classifier("resnet20", 10, MEAN, STD).eval()


@pytest.fixture(scope="module")
def r18() -> torch.nn.Module:
    torch.manual_seed(0)
    return classifier("resnet18", 10, MEAN, STD).eval()


def test_resolve_all_and_order(r20) -> None:
    assert list(resolve_taps("all", r20)) == ["stem", "layer1", "layer2", "layer3"]
    assert list(resolve_taps(["layer3", "stem"], r20)) == ["stem", "layer3"]
    assert resolve_taps("layer2", r20) == {"layer2": "backbone.layer2"}


def test_any_module_path_is_a_tap_in_network_order(r20) -> None:
    """As torchdistill's hooks: a dotted path below the backbone (or from the root) needs no named tap."""
    taps = resolve_taps(["layer2.0.conv1", "stem", "backbone.layer1.1"], r20)
    assert taps == {
        "stem": "backbone.stem",
        "backbone.layer1.1": "backbone.layer1.1",
        "layer2.0.conv1": "backbone.layer2.0.conv1",
    }
    shapes = tap_shapes(r20, ["layer2.0.conv1", "layer1.1.relu2"], (3, 32, 32))
    assert shapes == {"layer1.1.relu2": (16, 32, 32), "layer2.0.conv1": (32, 16, 16)}
    with pytest.raises(ValueError, match="names no feature taps"):  # a plain backbone: 'all' means nothing
        resolve_taps("all", r20.backbone.layer1)


def test_resolve_unknown_lists_valid(r20) -> None:
    with pytest.raises(
        ValueError, match=r"tap 'layer4' is not known: not a named tap \(stem, layer1, layer2, layer3"
    ):
        resolve_taps(["stem", "layer4"], r20)
    with pytest.raises(ValueError, match="more than once"):
        resolve_taps(["stem", "stem"], r20)


def test_a_feature_changed_in_place_later_is_an_error_not_a_wrong_feature() -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(inplace=True))
    with FeatureTaps(net, ["1"]) as taps:
        net(torch.randn(2, 3, 8, 8))
        with pytest.raises(RuntimeError, match=r"tap '1' \(1\): its output was changed in place"):
            taps.pop()
    with FeatureTaps(net, ["2"]) as taps:  # after the in-place op: fine
        net(torch.randn(2, 3, 8, 8))
        assert taps.pop()["2"].shape == (2, 4, 6, 6)


def test_resnet20_shapes(r20) -> None:
    with FeatureTaps(r20, "all") as taps:
        logits = r20(torch.rand(2, 3, 32, 32))
        feats = taps.pop()
    assert logits.shape == (2, 10)
    assert list(feats) == ["stem", "layer1", "layer2", "layer3"]
    assert {k: tuple(v.shape) for k, v in feats.items()} == {
        "stem": (2, 16, 32, 32),
        "layer1": (2, 16, 32, 32),
        "layer2": (2, 32, 16, 16),
        "layer3": (2, 64, 8, 8),
    }


def test_resnet18_shapes(r18) -> None:
    assert tap_shapes(r18, "all", (3, 32, 32)) == {
        "stem": (64, 32, 32),
        "layer1": (64, 32, 32),
        "layer2": (128, 16, 16),
        "layer3": (256, 8, 8),
        "layer4": (512, 4, 4),
    }


def test_tv_resnet18_stem_tap_fires_once() -> None:
    model = classifier("tv_resnet18", 10, MEAN, STD).eval()
    # tap_shapes would raise if the stem relu fired more than once per pass.
    assert tap_shapes(model, "all", (3, 64, 64)) == {
        "stem": (64, 32, 32),
        "layer1": (64, 16, 16),
        "layer2": (128, 8, 8),
        "layer3": (256, 4, 4),
        "layer4": (512, 2, 2),
    }


def test_features_come_from_same_forward_and_match_submodules(r20) -> None:
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad(), FeatureTaps(r20, "all") as taps:
        logits = r20(x)
        feats = taps.pop()
        bb = r20.backbone
        stem = bb.stem(r20.normalize(x))
        l1 = bb.layer1(stem)
        l2 = bb.layer2(l1)
        l3 = bb.layer3(l2)
        manual_logits = bb.fc(bb.pool(l3))
    torch.testing.assert_close(feats["stem"], stem)
    torch.testing.assert_close(feats["layer1"], l1)
    torch.testing.assert_close(feats["layer2"], l2)
    torch.testing.assert_close(feats["layer3"], l3)
    torch.testing.assert_close(logits, manual_logits)
    # the last tap fully determines the logits: same pass, not a stale record
    torch.testing.assert_close(bb.fc(bb.pool(feats["layer3"])), logits)


def test_pop_clears_and_new_pass_replaces(r20) -> None:
    with torch.no_grad(), FeatureTaps(r20, ["layer1"]) as taps:
        r20(torch.zeros(2, 3, 32, 32))
        r20(torch.ones(1, 3, 32, 32))
        assert taps.pop()["layer1"].shape[0] == 1
        with pytest.raises(RuntimeError, match="no features recorded"):
            taps.pop()


def test_disabled_records_nothing(r20) -> None:
    with torch.no_grad(), FeatureTaps(r20, "all") as taps:
        taps.disable()
        r20(torch.zeros(1, 3, 32, 32))
        with pytest.raises(RuntimeError, match="no features recorded"):
            taps.pop()
        taps.enable()
        r20(torch.zeros(1, 3, 32, 32))
        assert len(taps.pop()) == 4


def test_hooks_removed(r20) -> None:
    def n_hooks() -> int:
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in r20.modules())

    before = n_hooks()
    taps = FeatureTaps(r20, "all")
    assert n_hooks() > before
    taps.remove()
    assert n_hooks() == before
    taps.remove()  # idempotent
    with torch.no_grad():
        r20(torch.zeros(1, 3, 32, 32))
    with pytest.raises(RuntimeError):
        taps.pop()


def test_autocast_bf16_and_channels_last(r20) -> None:
    x = torch.rand(2, 3, 32, 32).to(memory_format=torch.channels_last)
    model = classifier("resnet20", 10, MEAN, STD).eval().to(memory_format=torch.channels_last)
    with torch.no_grad(), FeatureTaps(model, "all") as taps, torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
        feats = taps.pop()
    assert logits.shape == (2, 10)
    assert feats["layer3"].shape == (2, 64, 8, 8)
    assert feats["layer2"].dtype == torch.bfloat16
    assert feats["layer2"].is_contiguous(memory_format=torch.channels_last)


def test_taps_keep_graph_and_are_not_mutated_later() -> None:
    torch.manual_seed(0)
    model = classifier("resnet18", 10, MEAN, STD).train()
    with FeatureTaps(model, "all") as taps:
        logits = model(torch.rand(2, 3, 32, 32))
        feats = taps.pop()
    # an in-place write after recording would bump the version counter
    versions = {k: v._version for k, v in feats.items()}
    snapshot = {k: v.detach().clone() for k, v in feats.items()}
    loss = logits.sum() + sum(f.pow(2).mean() for f in feats.values())
    loss.backward()  # autograd rejects tensors modified after use
    assert {k: v._version for k, v in feats.items()} == versions
    for k, v in feats.items():
        assert torch.equal(v.detach(), snapshot[k])
    assert model.backbone.stem[0].weight.grad is not None


def test_tap_shapes_restores_mode(r20) -> None:
    r20.train()
    r20.backbone.layer1.eval()
    stats = r20.backbone.stem[1].running_mean.clone()
    tap_shapes(r20, ["stem"], (2, 3, 32, 32))
    assert r20.training and not r20.backbone.layer1.training
    assert torch.equal(r20.backbone.stem[1].running_mean, stats)
    r20.eval()


def test_wrapped_model_is_unwrapped(r20) -> None:
    wrapped = torch.nn.DataParallel(r20)  # stands in for DDP: same .module contract
    with torch.no_grad(), FeatureTaps(wrapped, ["layer3"]) as taps:
        wrapped(torch.zeros(1, 3, 32, 32))
        assert taps.pop()["layer3"].shape == (1, 64, 8, 8)


def test_module_called_twice_is_rejected() -> None:
    class Twice(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = torch.nn.Identity()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.block(self.block(x))

    model = Twice()
    with FeatureTaps(model, ["block"]), pytest.raises(RuntimeError, match="fired twice"):
        model(torch.zeros(1))
