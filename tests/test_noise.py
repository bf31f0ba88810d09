"""Tests for ssd.noise: statistics of each model, config building, reproducible streams."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from ssd.noise import (
    NOISE_MODELS,
    GaussianNoise,
    NoiseModel,
    NoNoise,
    PoissonGaussianNoise,
    PoissonNoise,
    build_noise,
    fixed_noisy,
    sample_seed,
    training_generator,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def const(value: float, shape: tuple[int, ...] = (4, 3, 128, 128)) -> torch.Tensor:
    return torch.full(shape, value)


# --- statistics ---------------------------------------------------------------------


def test_gaussian_statistics():
    x = const(0.5)
    n = GaussianNoise(0.2)(x, generator=gen()) - x
    assert abs(n.mean().item()) < 2e-3
    assert n.std().item() == pytest.approx(0.2, rel=0.01)


def test_gaussian_clip():
    x = torch.rand(8, 3, 32, 32, generator=gen(1))
    clipped = GaussianNoise(0.5, clip=True)(x, generator=gen(2))
    assert clipped.min() >= 0.0 and clipped.max() <= 1.0
    free = GaussianNoise(0.5)(x, generator=gen(2))
    assert free.min() < 0.0 and free.max() > 1.0


def test_gaussian_sigma_range_per_sample():
    x = torch.zeros(16, 3, 64, 64)
    noise = GaussianNoise(0.1, sigma_max=0.3)
    assert noise.level == 0.1
    stds = noise(x, generator=gen(3)).flatten(1).std(dim=1)
    assert stds.min().item() > 0.1 * 0.95
    assert stds.max().item() < 0.3 * 1.05
    assert stds.max().item() - stds.min().item() > 0.05  # samples really differ


def test_poisson_statistics():
    x = const(0.3)
    ppp = 20.0
    y = PoissonNoise(ppp)(x, generator=gen(4))
    assert y.mean().item() == pytest.approx(0.3, rel=0.01)
    assert y.var().item() == pytest.approx(0.3 / ppp, rel=0.03)
    # counts are integers: values lie on the 1/ppp grid
    assert torch.allclose(y * ppp, (y * ppp).round(), atol=1e-4)


def test_poisson_more_photons_less_noise():
    x = const(0.5)
    low = (PoissonNoise(5.0)(x, generator=gen(5)) - x).std()
    high = (PoissonNoise(500.0)(x, generator=gen(5)) - x).std()
    assert high < low


def test_poisson_gaussian_statistics():
    x = const(0.4)
    ppp, read = 30.0, 0.05
    y = PoissonGaussianNoise(ppp, read)(x, generator=gen(6))
    assert y.mean().item() == pytest.approx(0.4, rel=0.01)
    assert y.var().item() == pytest.approx(0.4 / ppp + read**2, rel=0.03)


def test_none_is_identity():
    x = torch.rand(2, 3, 8, 8, generator=gen(7))
    y = NoNoise()(x)
    assert torch.equal(x, y)
    assert y is not x


@pytest.mark.parametrize(
    "noise", [GaussianNoise(0.1), PoissonNoise(10.0), PoissonGaussianNoise(10.0, 0.02), NoNoise()]
)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_shape_dtype_preserved(noise: NoiseModel, dtype: torch.dtype):
    x = torch.rand(2, 3, 5, 7, generator=gen(8)).to(dtype)
    y = noise(x, generator=gen(9))
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device


def test_rejects_integer_images():
    with pytest.raises(TypeError, match="float images"):
        GaussianNoise(0.1)(torch.zeros(1, 3, 4, 4, dtype=torch.uint8))


def test_generator_controls_randomness():
    x = torch.rand(4, 3, 16, 16, generator=gen(10))
    for noise in (GaussianNoise(0.1, sigma_max=0.2), PoissonNoise(10.0), PoissonGaussianNoise(10.0, 0.05)):
        assert torch.equal(noise(x, generator=gen(11)), noise(x, generator=gen(11)))
        assert not torch.equal(noise(x, generator=gen(11)), noise(x, generator=gen(12)))


# --- levels and descriptions ------------------------------------------------------------


def test_at_level():
    g = GaussianNoise(0.1, clip=True, sigma_max=0.3).at_level(0.25)
    assert g == GaussianNoise(0.25, clip=True)
    assert g.sigma_max is None and g.level == 0.25 and g.level_name == "sigma"

    p = PoissonNoise(10.0, clip=True).at_level(3.0)
    assert p == PoissonNoise(3.0, clip=True) and p.level_name == "ppp"

    pg = PoissonGaussianNoise(10.0, 0.02).at_level(50.0)
    assert pg == PoissonGaussianNoise(50.0, 0.02) and pg.level == 50.0

    assert NoNoise().level == 0.0 and NoNoise().level_name == "sigma"
    assert NoNoise().at_level(0.2) == GaussianNoise(0.2)
    assert NoNoise().at_level(0.0) == NoNoise()
    with pytest.raises(ValueError, match="noise.sigma"):
        NoNoise().at_level(-1.0)
    with pytest.raises(ValueError, match="noise.ppp"):
        PoissonNoise(10.0).at_level(0.0)


def test_describe():
    assert GaussianNoise(0.2).describe() == "gaussian(sigma=0.2)"
    assert GaussianNoise(0.1, clip=True, sigma_max=0.3).describe() == (
        "gaussian(sigma=0.1, clip=True, sigma_max=0.3)"
    )
    assert PoissonNoise(10).describe() == "poisson(ppp=10)"
    assert PoissonGaussianNoise(10, 0.01).describe() == "poisson_gaussian(ppp=10, read_sigma=0.01)"
    assert NoNoise().describe() == "none()"


# --- build_noise and validation -----------------------------------------------------------


def test_build_noise_each_name():
    assert set(NOISE_MODELS) == {"gaussian", "poisson", "poisson_gaussian", "none"}
    assert build_noise({"name": "gaussian", "sigma": 0.2}) == GaussianNoise(0.2)
    assert build_noise({"name": "poisson", "ppp": 10, "clip": True}) == PoissonNoise(10.0, clip=True)
    assert build_noise({"name": "poisson_gaussian", "ppp": 10, "read_sigma": 0.01}) == (
        PoissonGaussianNoise(10.0, 0.01)
    )
    assert build_noise({"name": "none"}) == NoNoise()


def test_build_noise_dictconfig_extra_and_null_keys():
    cfg = OmegaConf.create(
        {"name": "gaussian", "sigma": 0.1, "sigma_max": 0.3, "clip": False, "ppp": None, "eval_seed": 1}
    )
    assert build_noise(cfg) == GaussianNoise(0.1, sigma_max=0.3)
    cfg = OmegaConf.create({"name": "poisson", "sigma": 0.2, "sigma_max": None, "ppp": 5, "read_sigma": None})
    assert build_noise(cfg) == PoissonNoise(5.0)


def test_build_noise_unknown_name_lists_valid():
    with pytest.raises(ValueError) as err:
        build_noise({"name": "speckle", "sigma": 0.1})
    for name in NOISE_MODELS:
        assert name in str(err.value)
    with pytest.raises(ValueError, match="noise.name"):
        build_noise({"sigma": 0.1})


def test_build_noise_missing_parameter():
    with pytest.raises(ValueError, match="noise.sigma is missing"):
        build_noise({"name": "gaussian"})


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"name": "gaussian", "sigma": -0.1}, "noise.sigma=-0.1 is not allowed: must be a number >= 0"),
        ({"name": "gaussian", "sigma": "0.2"}, "noise.sigma='0.2' is not allowed"),
        ({"name": "gaussian", "sigma": True}, "noise.sigma=True is not allowed"),
        ({"name": "gaussian", "sigma": float("nan")}, "noise.sigma=nan is not allowed"),
        ({"name": "gaussian", "sigma": 0.3, "sigma_max": 0.2}, "noise.sigma_max=0.2 is not allowed"),
        ({"name": "gaussian", "sigma": 0.3, "clip": "yes"}, "noise.clip='yes' is not allowed"),
        ({"name": "poisson", "ppp": 0}, "noise.ppp=0 is not allowed: must be a number > 0"),
        ({"name": "poisson_gaussian", "ppp": 5, "read_sigma": -1}, "noise.read_sigma=-1 is not allowed"),
    ],
)
def test_build_noise_bad_values_name_the_key(cfg: dict, message: str):
    with pytest.raises(ValueError) as err:
        build_noise(cfg)
    assert message in str(err.value)


# --- fixed evaluation noise and training streams -----------------------------------------


@pytest.mark.parametrize(
    "noise", [GaussianNoise(0.2), PoissonGaussianNoise(8.0, 0.03), GaussianNoise(0.1, sigma_max=0.3)]
)
def test_fixed_noisy_invariant_to_batching(noise: NoiseModel):
    x = torch.rand(20, 3, 8, 8, generator=gen(20))
    idx = torch.arange(20) + 1000
    whole = fixed_noisy(noise, x, idx, seed=5)

    order = torch.randperm(20, generator=gen(21))
    pieces = [order[:3], order[3:10], order[10:13], order[13:20]]  # batches of 3 and 7
    for piece in pieces:
        part = fixed_noisy(noise, x[piece], idx[piece], seed=5)
        for row, i in enumerate(piece.tolist()):
            assert torch.equal(part[row], whole[i])


def test_fixed_noisy_depends_on_seed_and_index():
    noise = GaussianNoise(0.2)
    x = torch.full((2, 3, 8, 8), 0.5)  # same image twice
    a = fixed_noisy(noise, x, torch.tensor([0, 1]), seed=0)
    assert not torch.equal(a[0], a[1])  # different indices -> different noise
    b = fixed_noisy(noise, x, torch.tensor([0, 1]), seed=1)
    assert not torch.equal(a[0], b[0])  # different seeds -> different noise
    c = fixed_noisy(noise, x, torch.tensor([0, 1]), seed=0)
    assert torch.equal(a, c)  # same (seed, idx) -> same noise


def test_fixed_noisy_dtype_and_checks():
    x = torch.rand(3, 3, 4, 4, generator=gen(22)).to(torch.bfloat16)
    y = fixed_noisy(PoissonNoise(10.0), x, torch.arange(3), seed=0)
    assert y.dtype == torch.bfloat16 and y.shape == x.shape
    with pytest.raises(ValueError, match="indices"):
        fixed_noisy(GaussianNoise(0.1), x, torch.arange(2), seed=0)


def test_sample_seed_well_mixed():
    seeds = {sample_seed(s, i) for s in range(4) for i in range(500)}
    assert len(seeds) == 2000
    assert all(0 <= s < 2**63 for s in seeds)
    assert sample_seed(0, 1) == sample_seed(0, 1)
    assert sample_seed(-1, 3) >= 0  # negative seeds are fine


def test_training_generator_per_rank():
    r0 = torch.rand(1000, generator=training_generator(0, 0, "cpu"))
    r1 = torch.rand(1000, generator=training_generator(0, 1, "cpu"))
    assert not torch.equal(r0, r1)
    again = torch.rand(1000, generator=training_generator(0, 0, torch.device("cpu")))
    assert torch.equal(r0, again)
    other_seed = torch.rand(1000, generator=training_generator(1, 0, "cpu"))
    assert not torch.equal(r0, other_seed)
