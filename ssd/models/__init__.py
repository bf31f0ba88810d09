"""Networks: classifier backbones (with named feature taps), the normalising classifier, denoisers."""

from ssd.models.cifar_resnet import CifarResNet, resnet18_cifar, resnet20, resnet32, resnet56
from ssd.models.classifier import Classifier
from ssd.models.denoisers import DnCNN, UNet
from ssd.models.imagenet import tv_resnet18, tv_resnet34, tv_resnet50
from ssd.models.taps import FeatureTaps, resolve_taps, tap_shapes

__all__ = [
    "CifarResNet",
    "Classifier",
    "DnCNN",
    "FeatureTaps",
    "UNet",
    "resnet18_cifar",
    "resnet20",
    "resnet32",
    "resnet56",
    "resolve_taps",
    "tap_shapes",
    "tv_resnet18",
    "tv_resnet34",
    "tv_resnet50",
]
