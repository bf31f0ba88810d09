"""Classifier backbones: shapes, sizes, normalisation, the model configs and weight loading."""

from __future__ import annotations

import pytest
import torch

from ssd.models import Classifier
from ssd.models.cifar_resnet import resnet20
from ssd.paths import conf_dir
from tests.helpers import classifier

MEAN, STD = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]
CIFAR_ARCHS = ["resnet20", "resnet32", "resnet56", "resnet18"]
TV_ARCHS = ["tv_resnet18", "tv_resnet34", "tv_resnet50"]


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("arch", CIFAR_ARCHS + TV_ARCHS)
def test_output_shape(arch: str) -> None:
    torch.manual_seed(0)
    size = 32 if arch in CIFAR_ARCHS else 64
    model = classifier(arch, 7, MEAN, STD).eval()
    with torch.no_grad():
        logits = model(torch.rand(2, 3, size, size))
    assert logits.shape == (2, 7)
    assert torch.isfinite(logits).all()


def test_every_model_config_builds_its_backbone() -> None:
    """conf/model/*.yaml name callables (no registry): each builds for a class count and names its taps."""
    from ssd.data.protocol import DataFacts
    from ssd.parts import classifier_factory
    from ssd.stages import group_section

    names = sorted(p.stem for p in (conf_dir() / "model").glob("*.yaml"))
    assert names == sorted(CIFAR_ARCHS + TV_ARCHS)
    for name in names:
        with torch.device("meta"):
            net = classifier_factory(group_section("model", name), DataFacts(7, 32, (0.5,) * 3, (0.5,) * 3))()
        assert net.backbone.fc.out_features == 7 and list(net.taps)[0] == "stem", name


def test_parameter_counts() -> None:
    assert 0.26e6 < _n_params(classifier("resnet20", 10, MEAN, STD)) < 0.28e6
    assert 11.0e6 < _n_params(classifier("resnet18", 10, MEAN, STD)) < 11.3e6


def test_option_b_shortcut_adds_projections() -> None:
    assert _n_params(resnet20(10, shortcut="B")) > _n_params(resnet20(10))


def test_uniform_module_names() -> None:
    for arch in CIFAR_ARCHS:
        names = {n for n, _ in classifier(arch, 10, MEAN, STD).backbone.named_children()}
        stages = {"layer1", "layer2", "layer3"} | ({"layer4"} if arch == "resnet18" else set())
        assert names == {"stem", "pool", "fc"} | stages


def test_classifier_normalises() -> None:
    torch.manual_seed(0)
    model = classifier("resnet20", 10, MEAN, STD).eval()
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.backbone((x - mean) / std))
    assert model.mean.shape == model.std.shape == (1, 3, 1, 1)
    assert {"mean", "std"} <= set(model.state_dict())


def test_classifier_taps_are_relative_paths() -> None:
    model = classifier("resnet18", 10, MEAN, STD)
    assert list(model.taps) == ["stem", "layer1", "layer2", "layer3", "layer4"]
    assert model.taps["layer2"] == "backbone.layer2"
    tv = classifier("tv_resnet18", 10, MEAN, STD)
    assert tv.taps["stem"] == "backbone.relu"
    for m in (model, tv):
        for path in m.taps.values():
            m.get_submodule(path)  # raises if a path is wrong


def test_bad_stats_rejected() -> None:
    with pytest.raises(ValueError, match="channels"):
        Classifier(resnet20(10), [0.5, 0.5, 0.5], [0.5, 0.5])
    with pytest.raises(ValueError, match="positive"):
        Classifier(resnet20(10), [0.5] * 3, [0.5, 0.0, 0.5])


def test_pretrained_loads_local_state_dict(tmp_path) -> None:
    torch.manual_seed(0)
    src = classifier("resnet20", 10, MEAN, STD)
    path = tmp_path / "w.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.backbone.state_dict().items()}}, path)
    dst = classifier("resnet20", 10, MEAN, STD, pretrained=str(path))
    for k, v in src.backbone.state_dict().items():
        torch.testing.assert_close(dst.backbone.state_dict()[k], v)


def test_pretrained_with_other_head_keeps_fresh_fc(tmp_path) -> None:
    src = classifier("resnet20", 100, MEAN, STD)
    path = tmp_path / "w.pt"
    torch.save(src.backbone.state_dict(), path)
    with pytest.warns(UserWarning, match="fresh head"):
        dst = classifier("resnet20", 10, MEAN, STD, pretrained=str(path))
    assert dst.backbone.fc.out_features == 10
    torch.testing.assert_close(dst.backbone.stem[0].weight, src.backbone.stem[0].weight)


def test_pretrained_missing_file() -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        classifier("resnet20", 10, MEAN, STD, pretrained="/nonexistent/w.pt")
