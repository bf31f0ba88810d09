"""The contract every noise model keeps, checked on a tiny batch: its randomness comes only from
the draws it is handed.

Evaluation noise is fixed per test image because ``fixed_noisy`` hands the model counter draws
keyed by image (``ssd.noise.fixed``). A model that calls ``torch.rand`` itself, draws one value
for the whole batch, or looks at its neighbours would make a test accuracy depend on the run,
the batch size or the batch order, and nothing would fail. ``check_draws_only`` finds that: ssd
runs it on the configured noise model before any data is read (a config error), and the test
suite runs it on every noise config in ``conf/noise/`` and on out-of-tree ones.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from ssd.config.errors import ConfigError
from ssd.noise.counter import CounterDraws
from ssd.noise.fixed import fixed_noisy, sample_keys
from ssd.noise.models import NoiseModel

__all__ = ["check_draws_only"]


def _reseed_globals(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def check_draws_only(noise: NoiseModel, key: str = "noise") -> None:
    """Raise ConfigError naming ``key`` unless ``noise`` draws only from the source it is handed.

    Checked on CPU with a 4-image batch: the same keys give the same noise whatever the global
    RNGs hold; an image's noise does not depend on the other images of its batch or their order;
    the input is not changed in place; the same generator seed gives the same training noise, and
    the global RNG is left untouched.
    """
    images = torch.rand((4, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    idx = torch.tensor([3, 0, 7, 1])
    described = f"{key} ({type(noise).__module__}.{type(noise).__qualname__})"

    def fail(what: str) -> ConfigError:
        return ConfigError(
            f"{described} is not allowed: {what}; a noise model must take every random number from the "
            "Draws it is handed (draws.normal/uniform/poisson, first dimension the batch), so that "
            "evaluation noise stays fixed per image (see ssd/noise/contract.py)"
        )

    before = images.clone()
    state, np_state, py_state = torch.random.get_rng_state(), np.random.get_state(), random.getstate()
    try:
        _reseed_globals(1)
        first = fixed_noisy(noise, images, idx, seed=5)
        _reseed_globals(2)
        second = fixed_noisy(noise, images, idx, seed=5)
        alone = torch.cat([fixed_noisy(noise, images[i : i + 1], idx[i : i + 1], seed=5) for i in range(4)])
        order = torch.tensor([2, 0, 3, 1])
        shuffled = fixed_noisy(noise, images[order], idx[order], seed=5)
        counter_out = noise.corrupt(images, CounterDraws(sample_keys(5, idx)))
        _reseed_globals(3)
        trained_a = noise(images, generator=torch.Generator().manual_seed(9))
        global_state = torch.random.get_rng_state()
        trained_b = noise(images, generator=torch.Generator().manual_seed(9))
        untouched = torch.equal(global_state, torch.random.get_rng_state())
    finally:  # the caller's global streams, as they were
        torch.random.set_rng_state(state)
        np.random.set_state(np_state)
        random.setstate(py_state)
    if not torch.equal(images, before):
        raise fail("it changed its input images in place")
    if first.shape != images.shape or first.dtype != images.dtype:
        raise fail(f"it returned {tuple(first.shape)} {first.dtype} for {tuple(images.shape)} {images.dtype}")
    if not torch.equal(first, second) or not torch.equal(first, counter_out):
        raise fail("the same evaluation keys gave different noise (a random number not taken from the draws)")
    if not torch.allclose(first, alone, atol=1e-6, rtol=0):
        raise fail("an image's evaluation noise depends on the other images of its batch")
    if not torch.allclose(first[order], shuffled, atol=1e-6, rtol=0):
        raise fail("an image's evaluation noise depends on its place in the batch")
    if not torch.equal(trained_a, trained_b) or not untouched:
        raise fail("training noise is not a function of the generator it is handed")
