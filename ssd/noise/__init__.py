"""Noise models (training noise), fixed per-sample evaluation noise, and the contract between them."""

from ssd.noise.contract import check_draws_only
from ssd.noise.counter import CounterDraws
from ssd.noise.draws import Draws, GeneratorDraws
from ssd.noise.fixed import fixed_noisy, sample_keys, sample_seed
from ssd.noise.models import GaussianNoise, NoiseModel, NoNoise, PoissonGaussianNoise, PoissonNoise

__all__ = [
    "NoiseModel",
    "GaussianNoise",
    "PoissonNoise",
    "PoissonGaussianNoise",
    "NoNoise",
    "Draws",
    "GeneratorDraws",
    "CounterDraws",
    "check_draws_only",
    "fixed_noisy",
    "sample_keys",
    "sample_seed",
]
