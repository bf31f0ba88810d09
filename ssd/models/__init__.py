"""Networks: classifier backbones with uniform feature taps, and denoisers."""

from ssd.models.classifier import ARCHITECTURES, ArchSpec, Classifier, build_classifier
from ssd.models.denoisers import DENOISERS, DnCNN, UNet, build_denoiser
from ssd.models.taps import FeatureTaps, resolve_taps, tap_shapes

__all__ = [
    "ARCHITECTURES",
    "DENOISERS",
    "ArchSpec",
    "Classifier",
    "DnCNN",
    "FeatureTaps",
    "UNet",
    "build_classifier",
    "build_denoiser",
    "resolve_taps",
    "tap_shapes",
]
