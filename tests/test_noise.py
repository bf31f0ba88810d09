"""Tests for ssd.noise: statistics of each model, config building, reproducible streams."""

from __future__ import annotations

import math
import re

import pytest
import torch
from omegaconf import OmegaConf

from ssd.config import ConfigError
from ssd.noise import (
    CounterDraws,
    Draws,
    GaussianNoise,
    NoiseModel,
    NoNoise,
    PoissonGaussianNoise,
    PoissonNoise,
    check_draws_only,
    fixed_noisy,
    sample_keys,
    sample_seed,
)
from ssd.noise.hashing import MASK64, splitmix64, splitmix64_ref, stream_keys, to_int64
from ssd.noise.poisson import SMALL_RATE, poisson_counts
from ssd.parts import build_noise
from ssd.paths import conf_dir
from ssd.seeding import generator


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def const(value: float, shape: tuple[int, ...] = (4, 3, 128, 128)) -> torch.Tensor:
    return torch.full(shape, value)


# --- statistics ---------------------------------------------------------------------


def test_gaussian_statistics():
    x = const(0.5)
    n = GaussianNoise(0.2, clip=False, sigma_max=None)(x, generator=gen()) - x
    assert abs(n.mean().item()) < 2e-3
    assert n.std().item() == pytest.approx(0.2, rel=0.01)


def test_gaussian_clip():
    x = torch.rand(8, 3, 32, 32, generator=gen(1))
    clipped = GaussianNoise(0.5, clip=True, sigma_max=None)(x, generator=gen(2))
    assert clipped.min() >= 0.0 and clipped.max() <= 1.0
    free = GaussianNoise(0.5, clip=False, sigma_max=None)(x, generator=gen(2))
    assert free.min() < 0.0 and free.max() > 1.0


def test_gaussian_sigma_range_per_sample():
    x = torch.zeros(16, 3, 64, 64)
    noise = GaussianNoise(0.1, sigma_max=0.3, clip=False)
    assert noise.level == 0.1
    stds = noise(x, generator=gen(3)).flatten(1).std(dim=1)
    assert stds.min().item() > 0.1 * 0.95
    assert stds.max().item() < 0.3 * 1.05
    assert stds.max().item() - stds.min().item() > 0.05  # samples really differ


def test_poisson_statistics():
    x = const(0.3)
    ppp = 20.0
    y = PoissonNoise(ppp, clip=False)(x, generator=gen(4))
    assert y.mean().item() == pytest.approx(0.3, rel=0.01)
    assert y.var().item() == pytest.approx(0.3 / ppp, rel=0.03)
    # counts are integers: values lie on the 1/ppp grid
    assert torch.allclose(y * ppp, (y * ppp).round(), atol=1e-4)


def test_poisson_more_photons_less_noise():
    x = const(0.5)
    low = (PoissonNoise(5.0, clip=False)(x, generator=gen(5)) - x).std()
    high = (PoissonNoise(500.0, clip=False)(x, generator=gen(5)) - x).std()
    assert high < low


def test_poisson_gaussian_statistics():
    x = const(0.4)
    ppp, read = 30.0, 0.05
    y = PoissonGaussianNoise(ppp, read, clip=False)(x, generator=gen(6))
    assert y.mean().item() == pytest.approx(0.4, rel=0.01)
    assert y.var().item() == pytest.approx(0.4 / ppp + read**2, rel=0.03)


def test_none_is_identity():
    x = torch.rand(2, 3, 8, 8, generator=gen(7))
    y = NoNoise()(x)
    assert torch.equal(x, y)
    assert y is not x


@pytest.mark.parametrize(
    "noise",
    [
        GaussianNoise(0.1, clip=False, sigma_max=None),
        PoissonNoise(10.0, clip=False),
        PoissonGaussianNoise(10.0, 0.02, clip=False),
        NoNoise(),
    ],
)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_shape_dtype_preserved(noise: NoiseModel, dtype: torch.dtype):
    x = torch.rand(2, 3, 5, 7, generator=gen(8)).to(dtype)
    y = noise(x, generator=gen(9))
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device


def test_rejects_integer_images():
    with pytest.raises(TypeError, match="float images"):
        GaussianNoise(0.1, clip=False, sigma_max=None)(torch.zeros(1, 3, 4, 4, dtype=torch.uint8))


def test_generator_controls_randomness():
    x = torch.rand(4, 3, 16, 16, generator=gen(10))
    for noise in (
        GaussianNoise(0.1, sigma_max=0.2, clip=False),
        PoissonNoise(10.0, clip=False),
        PoissonGaussianNoise(10.0, 0.05, clip=False),
    ):
        assert torch.equal(noise(x, generator=gen(11)), noise(x, generator=gen(11)))
        assert not torch.equal(noise(x, generator=gen(11)), noise(x, generator=gen(12)))


# --- levels and descriptions ------------------------------------------------------------


def test_at_level():
    g = GaussianNoise(0.1, clip=True, sigma_max=0.3).at_level(0.25)
    assert g == GaussianNoise(0.25, clip=True, sigma_max=None)
    assert g.sigma_max is None and g.level == 0.25 and g.level_name == "sigma"

    p = PoissonNoise(10.0, clip=True).at_level(3.0)
    assert p == PoissonNoise(3.0, clip=True) and p.level_name == "ppp"

    pg = PoissonGaussianNoise(10.0, 0.02, clip=False).at_level(50.0)
    assert pg == PoissonGaussianNoise(50.0, 0.02, clip=False) and pg.level == 50.0

    assert NoNoise().level == 0.0 and NoNoise().level_name == "sigma"
    assert NoNoise().at_level(0.2) == GaussianNoise(0.2, clip=False, sigma_max=None)
    assert NoNoise().at_level(0.0) == NoNoise()
    with pytest.raises(ValueError, match="noise.sigma"):
        NoNoise().at_level(-1.0)
    with pytest.raises(ValueError, match="noise.ppp"):
        PoissonNoise(10.0, clip=False).at_level(0.0)


def test_describe():
    assert GaussianNoise(0.2, clip=False, sigma_max=None).describe() == "gaussian(sigma=0.2)"
    assert GaussianNoise(0.1, clip=True, sigma_max=0.3).describe() == (
        "gaussian(sigma=0.1, clip=True, sigma_max=0.3)"
    )
    assert PoissonNoise(10, clip=False).describe() == "poisson(ppp=10)"
    assert (
        PoissonGaussianNoise(10, 0.01, clip=False).describe() == "poisson_gaussian(ppp=10, read_sigma=0.01)"
    )
    assert NoNoise().describe() == "none()"


# --- build_noise and validation -----------------------------------------------------------


def test_build_noise_from_target_sections():
    assert build_noise(
        {"_target_": "ssd.noise.GaussianNoise", "sigma": 0.2, "clip": False, "sigma_max": None}
    ) == (GaussianNoise(0.2, clip=False, sigma_max=None))
    assert build_noise({"_target_": "ssd.noise.PoissonNoise", "ppp": 10, "clip": True}) == PoissonNoise(
        10.0, clip=True
    )
    pg = {
        "_target_": "ssd.noise.PoissonGaussianNoise",
        "ppp": 10,
        "read_sigma": 0.01,
        "clip": False,
        "eval_levels": [1.0],
    }
    assert build_noise(pg) == PoissonGaussianNoise(
        10.0, 0.01, clip=False
    )  # eval_levels: ssd's, not the model's
    assert build_noise(OmegaConf.create({"_target_": "ssd.noise.NoNoise"})) == NoNoise()
    assert isinstance(build_noise({"_target_": "ssd.noise.PoissonNoise", "ppp": 5, "clip": False}).ppp, float)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sigma": -0.1}, "noise.sigma=-0.1 is not allowed: must be a finite number in [0, 10]"),
        ({"sigma": "0.2"}, "noise.sigma='0.2' is not allowed"),
        ({"sigma": True}, "noise.sigma=True is not allowed"),
        ({"sigma": float("nan")}, "noise.sigma=nan is not allowed"),
        ({"sigma": 0.3, "sigma_max": 0.2}, "noise.sigma_max=0.2 is not allowed"),
        ({"sigma": 0.3, "clip": "yes"}, "noise.clip='yes' is not allowed"),
    ],
)
def test_bad_values_name_the_key(kwargs: dict, message: str):
    with pytest.raises(ValueError) as err:
        GaussianNoise(**{"clip": False, "sigma_max": None, **kwargs})
    assert message in str(err.value)
    with pytest.raises(
        ValueError, match=re.escape("noise.ppp=0 is not allowed: must be a finite number in (0, 1e+06]")
    ):
        PoissonNoise(0, clip=False)
    with pytest.raises(ValueError, match="noise.read_sigma=-1 is not allowed"):
        PoissonGaussianNoise(5, -1, clip=False)


# --- the contract: randomness only from the draws handed in ---------------------------------


@pytest.mark.parametrize("name", sorted(p.stem for p in (conf_dir() / "noise").glob("*.yaml")))
def test_every_noise_config_keeps_the_contract(name: str):
    from ssd.stages import group_section

    noise = build_noise(group_section("noise", name))
    check_draws_only(noise)
    for level in group_section("noise", name)["eval_levels"]:
        check_draws_only(noise.at_level(level))


def test_the_contract_catches_a_model_that_draws_for_itself():
    """A noise model that calls torch.rand / draws one value per batch / mixes images is refused."""
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class OwnRandomness(GaussianNoise):
        def _apply(self, x, draws):
            return x + self.sigma * torch.randn_like(x)  # the global RNG: evaluation noise would move

    @dataclass(frozen=True)
    class OneDrawPerBatch(GaussianNoise):
        def _apply(self, x, draws):
            n = draws.normal((1, *x.shape[1:]), dtype=x.dtype, device=x.device)  # shape check refuses it
            return x + self.sigma * n

    @dataclass(frozen=True)
    class MixesImages(GaussianNoise):
        def _apply(self, x, draws):
            return x + self.sigma * draws.normal(tuple(x.shape), dtype=x.dtype, device=x.device) + x.mean()

    check_draws_only(GaussianNoise(0.2, clip=False, sigma_max=None))
    with pytest.raises(ConfigError, match="a random number not taken from the draws"):
        check_draws_only(OwnRandomness(0.2, clip=False, sigma_max=None))
    with pytest.raises(ValueError, match="first dimension must be the batch"):
        check_draws_only(OneDrawPerBatch(0.2, clip=False, sigma_max=None))
    with pytest.raises(ConfigError, match="depends on the other images of its batch"):
        check_draws_only(MixesImages(0.2, clip=False, sigma_max=None))


# --- fixed evaluation noise and training streams -----------------------------------------


@pytest.mark.parametrize(
    "noise",
    [
        GaussianNoise(0.2, clip=False, sigma_max=None),
        PoissonGaussianNoise(8.0, 0.03, clip=False),
        GaussianNoise(0.1, sigma_max=0.3, clip=False),
    ],
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
    noise = GaussianNoise(0.2, clip=False, sigma_max=None)
    x = torch.full((2, 3, 8, 8), 0.5)  # same image twice
    a = fixed_noisy(noise, x, torch.tensor([0, 1]), seed=0)
    assert not torch.equal(a[0], a[1])  # different indices -> different noise
    b = fixed_noisy(noise, x, torch.tensor([0, 1]), seed=1)
    assert not torch.equal(a[0], b[0])  # different seeds -> different noise
    c = fixed_noisy(noise, x, torch.tensor([0, 1]), seed=0)
    assert torch.equal(a, c)  # same (seed, idx) -> same noise


def test_fixed_noisy_dtype_and_checks():
    x = torch.rand(3, 3, 4, 4, generator=gen(22)).to(torch.bfloat16)
    y = fixed_noisy(PoissonNoise(10.0, clip=False), x, torch.arange(3), seed=0)
    assert y.dtype == torch.bfloat16 and y.shape == x.shape
    with pytest.raises(ValueError, match="indices"):
        fixed_noisy(GaussianNoise(0.1, clip=False, sigma_max=None), x, torch.arange(2), seed=0)


def test_sample_seed_well_mixed():
    seeds = {sample_seed(s, i) for s in range(4) for i in range(500)}
    assert len(seeds) == 2000
    assert all(0 <= s < 2**63 for s in seeds)
    assert sample_seed(0, 1) == sample_seed(0, 1)
    assert sample_seed(-1, 3) >= 0  # negative seeds are fine


def test_training_noise_stream_per_rank_and_epoch():
    def draw(seed: int, rank: int, epoch: int) -> torch.Tensor:
        return torch.rand(1000, generator=generator(seed, "noise", rank, epoch, "cpu"))

    r0 = draw(0, 0, 0)
    assert torch.equal(r0, draw(0, 0, 0))
    assert not torch.equal(r0, draw(0, 1, 0)) and not torch.equal(r0, draw(0, 0, 1))
    assert not torch.equal(r0, draw(1, 0, 0))


# --- counter-based evaluation noise (issue 12) ----------------------------------------------


def old_fixed_noisy(noise: NoiseModel, x: torch.Tensor, idx: torch.Tensor, seed: int) -> torch.Tensor:
    """The definition before issue 12: one CPU generator per image, seeded with sample_seed."""
    out = torch.empty_like(x)
    g = torch.Generator()
    for i, j in enumerate(idx.tolist()):
        g.manual_seed(sample_seed(seed, j))
        out[i] = noise(x[i : i + 1], generator=g)[0]
    return out


def test_splitmix64_tensor_matches_python_reference():
    # int64 products must wrap mod 2**64 and right shifts must act as logical shifts
    values = [0, 1, -1, 2**63 - 1, -(2**63), 0x0123456789ABCDEF, 0x9E3779B97F4A7C15, 12345]
    values += [int(v) for v in torch.randint(-(2**63), 2**63 - 1, (500,), generator=gen(30))]
    got = splitmix64(torch.tensor([to_int64(v) for v in values], dtype=torch.int64)).tolist()
    assert got == [to_int64(splitmix64_ref(v & MASK64)) for v in values]


def test_sample_keys_are_sample_seeds():
    idx = torch.tensor([0, 1, 7, 49_999, -3, 2**40])
    for seed in (0, 1, -5, 2**70 + 3):
        assert sample_keys(seed, idx).tolist() == [sample_seed(seed, i) for i in idx.tolist()]


@pytest.mark.parametrize(
    "noise",
    [
        GaussianNoise(0.2, clip=False, sigma_max=None),
        PoissonNoise(30.0, clip=False),
        PoissonNoise(3.0, clip=False),
        PoissonGaussianNoise(50.0, 0.03, clip=False),
        NoNoise(),
    ],
)
def test_fixed_noisy_invariant_to_batch_size_and_order(noise: NoiseModel):
    # odd row length (3*5*7) exercises the unpaired Box-Muller value; ppp=30/50 mixes inversion and PTRS
    x = torch.rand(37, 3, 5, 7, generator=gen(31))
    idx = torch.randperm(10_000, generator=gen(32))[:37]
    whole = fixed_noisy(noise, x, idx, seed=3)
    for batch in (1, 4, 16):
        order = torch.randperm(37, generator=gen(batch))
        for piece in order.split(batch):
            assert torch.equal(fixed_noisy(noise, x[piece], idx[piece], seed=3), whole[piece])
    # the same image at the same index gets the same noise whatever its neighbours are
    again = fixed_noisy(noise, x[:5].flip(0), idx[:5].flip(0).cpu(), seed=3)
    assert torch.equal(again.flip(0), whole[:5])


def test_fixed_noisy_chunking_does_not_change_values(monkeypatch: pytest.MonkeyPatch):
    # a CPU splits large batches into blocks; another block size must give the same noise
    import ssd.noise.counter as counter

    x = torch.rand(6, 3, 40, 40, generator=gen(33))
    idx = torch.arange(6) * 11
    for noise in (
        GaussianNoise(0.3, clip=False, sigma_max=None),
        PoissonGaussianNoise(20.0, 0.01, clip=False),
    ):
        ref = fixed_noisy(noise, x, idx, seed=0)
        monkeypatch.setitem(counter._CHUNK, "cpu", 1000)  # blocks of 1000 values: rows split in columns
        assert torch.equal(fixed_noisy(noise, x, idx, seed=0), ref)
        monkeypatch.undo()


def test_fixed_gaussian_statistics_match_old_definition():
    sigma = 0.2
    x = torch.full((64, 3, 32, 32), 0.5)
    idx = torch.arange(64) + 500
    new = (fixed_noisy(GaussianNoise(sigma, clip=False, sigma_max=None), x, idx, seed=1) - x) / sigma
    old = (old_fixed_noisy(GaussianNoise(sigma, clip=False, sigma_max=None), x, idx, seed=1) - x) / sigma
    assert not torch.equal(new, old)  # the realisations changed (see README, Evaluation protocol)
    n = new.numel()
    for z in (new, old):
        assert abs(z.mean().item()) < 4 / n**0.5
        assert z.std().item() == pytest.approx(1.0, abs=4 * (0.5 / n) ** 0.5)
    # quantiles agree with N(0, 1) within 5 standard errors, for both definitions
    probs = torch.tensor([0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999])
    normal = torch.distributions.Normal(0.0, 1.0)
    expected = normal.icdf(probs)
    stderr = (probs * (1 - probs) / n).sqrt() / normal.log_prob(expected).exp()
    for z in (new, old):
        assert ((torch.quantile(z.flatten(), probs) - expected).abs() < 5 * stderr).all()
    assert new.abs().max().item() < 5.9  # Box-Muller on 24-bit uniforms: documented bound
    # fourth moment of a Gaussian is 3 (catches a wrong radius, e.g. a missing sqrt)
    assert (new**4).mean().item() == pytest.approx(3.0, abs=0.1)


def test_fixed_gaussian_independence():
    x = torch.zeros(200, 3, 16, 16)
    z = fixed_noisy(GaussianNoise(1.0, clip=False, sigma_max=None), x, torch.arange(200), seed=0).flatten(
        1
    )  # (200, 768)
    tol = 5 / z.numel() ** 0.5

    def corr(a: torch.Tensor, b: torch.Tensor) -> float:
        return torch.corrcoef(torch.stack((a.flatten(), b.flatten())))[0, 1].item()

    half = z.shape[1] // 2
    assert abs(corr(z[:-1], z[1:])) < tol  # consecutive sample indices
    assert abs(corr(z[:, :-1], z[:, 1:])) < tol  # neighbouring pixels
    assert abs(corr(z[:, :half], z[:, half:])) < tol  # the cosine and sine of one Box-Muller pair
    assert abs(corr(z[:, :half] ** 2, z[:, half:] ** 2)) < tol  # ... also in magnitude (same radius)
    # every image's noise is its own: no two images share a realisation, even shifted
    image_corr = torch.corrcoef(z)
    off_diag = image_corr[~torch.eye(200, dtype=torch.bool)]
    assert off_diag.abs().max().item() < 6 / z.shape[1] ** 0.5


def test_fixed_gaussian_sigma_range_uses_a_uniform_per_image():
    x = torch.zeros(400, 3, 16, 16)
    noise = GaussianNoise(0.1, sigma_max=0.3, clip=False)
    stds = fixed_noisy(noise, x, torch.arange(400), seed=2).flatten(1).std(dim=1)
    assert stds.min().item() > 0.1 * 0.9 and stds.max().item() < 0.3 * 1.1
    # sigma is uniform on [0.1, 0.3]: mean 0.2, std 0.2/sqrt(12)
    assert stds.mean().item() == pytest.approx(0.2, abs=0.01)
    assert stds.std().item() == pytest.approx(0.2 / 12**0.5, rel=0.15)


def test_fixed_draws_of_one_model_are_independent():
    # poisson_gaussian draws counts then read noise: separate streams, so the two are uncorrelated
    x = torch.full((50, 3, 16, 16), 0.5)
    idx = torch.arange(50)
    shot = fixed_noisy(PoissonNoise(40.0, clip=False), x, idx, seed=0) - x
    both = fixed_noisy(PoissonGaussianNoise(40.0, 0.05, clip=False), x, idx, seed=0) - x
    read = both - shot  # same keys and first stream: the shot part is identical
    assert torch.allclose(read.std(), torch.tensor(0.05), rtol=0.05)
    for a, b in ((shot, read), (shot, read**2)):  # read**2: the Box-Muller radius against the count
        assert abs(torch.corrcoef(torch.stack((a.flatten(), b.flatten())))[0, 1].item()) < 0.03
    # gaussian with sigma_max draws a per-image uniform, then normals: the two must be unrelated
    draws, cpu = CounterDraws(sample_keys(0, torch.arange(3000))), torch.device("cpu")
    u = draws.uniform((3000, 1), dtype=torch.float32, device=cpu).flatten()
    n = draws.normal((3000, 2), dtype=torch.float32, device=cpu)
    for value in (n[:, 0] ** 2, n[:, 1] ** 2, n[:, 0]):
        assert abs(torch.corrcoef(torch.stack((u, value)))[0, 1].item()) < 5 / 3000**0.5


def _chi_square_z(counts: torch.Tensor, lam: float) -> float:
    """(chi2 - dof) / sqrt(2 dof) of the counts against the Poisson(lam) pmf (bins with >= 20 expected)."""
    lo, hi = int(counts.min()), int(counts.max())
    ks = torch.arange(lo, hi + 1, dtype=torch.float64)
    pmf = torch.exp(-lam + ks * math.log(lam) - torch.lgamma(ks + 1))
    observed = torch.bincount((counts - lo).long().flatten(), minlength=hi - lo + 1).double()
    expected = pmf * counts.numel()
    keep = expected >= 20
    chi2 = (((observed[keep] - expected[keep]) ** 2) / expected[keep]).sum().item()
    dof = int(keep.sum()) - 1
    return (chi2 - dof) / (2 * dof) ** 0.5


@pytest.mark.parametrize("lam", [0.2, 2.0, 9.5, SMALL_RATE, 13.0, 60.0, 2500.0])
def test_poisson_counts_are_exactly_poisson(lam: float):
    rate = torch.full((40, 5000), lam, dtype=torch.float64)
    counts = poisson_counts(rate, stream_keys(torch.arange(40) + int(lam * 100), 0))
    assert torch.equal(counts, counts.round()) and counts.min() >= 0
    n = counts.numel()
    assert counts.mean().item() == pytest.approx(lam, abs=5 * (lam / n) ** 0.5)
    assert counts.var().item() == pytest.approx(lam, rel=5 * (2 / n) ** 0.5 + 0.01)
    assert abs(_chi_square_z(counts, lam)) < 4


def test_poisson_counts_zero_rate_and_bad_rates():
    assert torch.equal(
        poisson_counts(torch.zeros(2, 10, dtype=torch.float64), torch.arange(2)), torch.zeros(2, 10)
    )
    for bad in (-0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite and >= 0"):
            poisson_counts(torch.full((1, 3), bad, dtype=torch.float64), torch.arange(1))


def test_fixed_poisson_statistics_match_old_definition():
    # mean ppp*x, variance ppp*x at a low and a high photon count, as with the old per-image generators
    x = torch.rand(64, 3, 32, 32, generator=gen(34))
    idx = torch.arange(64)
    for ppp in (4.0, 200.0):
        for y in (
            fixed_noisy(PoissonNoise(ppp, clip=False), x, idx, 0),
            old_fixed_noisy(PoissonNoise(ppp, clip=False), x, idx, 0),
        ):
            resid = (y - x) * ppp / (ppp * x).sqrt()  # standardised: mean 0, variance 1
            assert abs(resid.mean().item()) < 4 / resid.numel() ** 0.5
            assert resid.var().item() == pytest.approx(1.0, abs=0.02)
            assert torch.allclose(y * ppp, (y * ppp).round(), atol=1e-3)


class _ZeroDraws(Draws):
    """Draws that are all zero (normal), one half (uniform) or the rate itself (poisson)."""

    def normal(self, shape, *, dtype, device):
        return torch.zeros(shape, dtype=dtype, device=device)

    def uniform(self, shape, *, dtype, device):
        return torch.full(shape, 0.5, dtype=dtype, device=device)

    def poisson(self, rate):
        return rate.clone()


def test_models_take_any_draws_source():
    x = torch.rand(2, 3, 4, 4, generator=gen(35))
    assert torch.equal(GaussianNoise(0.2, clip=False, sigma_max=None).corrupt(x, _ZeroDraws()), x)
    assert torch.allclose(PoissonNoise(7.0, clip=False).corrupt(x, _ZeroDraws()), x)
    assert torch.allclose(PoissonGaussianNoise(7.0, 0.1, clip=False).corrupt(x, _ZeroDraws()), x)
    assert torch.equal(
        GaussianNoise(0.2, clip=True, sigma_max=None).corrupt(x + 2, _ZeroDraws()), torch.ones_like(x)
    )


def test_generator_draws_keep_training_noise_unchanged():
    # the draw protocol must not change what a seeded training run sees
    x = torch.rand(4, 3, 8, 8, generator=gen(36))
    expected = x + 0.2 * torch.randn(x.shape, generator=gen(37))
    assert torch.equal(GaussianNoise(0.2, clip=False, sigma_max=None)(x, generator=gen(37)), expected)
    g = gen(38)
    shot = torch.poisson(x * 10.0, generator=g) / 10.0
    expected = shot + 0.05 * torch.randn(x.shape, generator=g)
    assert torch.equal(PoissonGaussianNoise(10.0, 0.05, clip=False)(x, generator=gen(38)), expected)
    g = gen(39)
    u = torch.rand((4, 1, 1, 1), generator=g)
    expected = x + (0.1 + 0.2 * u) * torch.randn(x.shape, generator=g)
    assert torch.equal(GaussianNoise(0.1, sigma_max=0.3, clip=False)(x, generator=gen(39)), expected)


def test_counter_draws_checks():
    with pytest.raises(ValueError, match="1-d int64"):
        CounterDraws(torch.zeros(3))
    draws = CounterDraws(torch.arange(3))
    with pytest.raises(ValueError, match="first dimension must be the batch"):
        draws.normal((2, 5), dtype=torch.float32, device=torch.device("cpu"))
    with pytest.raises(ValueError, match="indices must be integers"):
        fixed_noisy(
            GaussianNoise(0.1, clip=False, sigma_max=None),
            torch.zeros(2, 1, 2, 2),
            torch.tensor([0.0, 1.0]),
            seed=0,
        )
    u = draws.uniform((3, 1000), dtype=torch.float32, device=torch.device("cpu"))
    assert u.min() >= 0 and u.max() < 1 and u.mean().item() == pytest.approx(0.5, abs=0.02)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device to compare against the CPU")
@pytest.mark.parametrize(
    "noise",
    [
        GaussianNoise(0.2, clip=False, sigma_max=None),
        GaussianNoise(0.1, sigma_max=0.3, clip=False),
        PoissonNoise(30.0, clip=False),
        PoissonGaussianNoise(50.0, 0.03, clip=False),
    ],
)
def test_fixed_noisy_same_on_cpu_and_cuda(noise: NoiseModel):
    x = torch.rand(48, 3, 33, 31, generator=gen(40))
    idx = torch.arange(48) * 7 + 3
    cpu = fixed_noisy(noise, x, idx, seed=9)
    cuda = fixed_noisy(noise, x.cuda(), idx.cuda(), seed=9)
    assert cuda.device.type == "cuda"
    # integer hashing and Poisson counts agree exactly; log/sin/cos may differ in the last float32 bits
    assert torch.allclose(cuda.cpu(), cpu, rtol=0, atol=1e-5)
    if isinstance(noise, PoissonNoise):
        assert torch.equal(cuda.cpu(), cpu)
