"""Noise models (training noise) and fixed per-sample evaluation noise."""

from ssd.noise.counter import CounterDraws
from ssd.noise.draws import Draws, GeneratorDraws
from ssd.noise.fixed import fixed_noisy, sample_keys, sample_seed, training_generator
from ssd.noise.models import (
    NOISE_MODELS,
    GaussianNoise,
    NoiseModel,
    NoNoise,
    PoissonGaussianNoise,
    PoissonNoise,
    build_noise,
)

__all__ = [
    "NoiseModel",
    "GaussianNoise",
    "PoissonNoise",
    "PoissonGaussianNoise",
    "NoNoise",
    "build_noise",
    "NOISE_MODELS",
    "Draws",
    "GeneratorDraws",
    "CounterDraws",
    "fixed_noisy",
    "sample_keys",
    "sample_seed",
    "training_generator",
]
