"""Noise models: the corruptions a classifier has to survive.

Every model works on float images in [0,1], NCHW, *before* normalisation (normalising is
the classifier's job), so a sigma or a photon count means the same thing for every
dataset and backbone. Each model writes its formula once against a :class:`Draws` source
(normal, uniform and Poisson draws), so callers decide what is reproducible: a
``torch.Generator`` gives fresh noise per step in training (``noise(x, generator)``), a
counter-based source gives noise fixed per sample in evaluation (``noise.corrupt(x,
draws)``, see :mod:`ssd.noise.fixed`).

Models are frozen dataclasses: equal configs give equal (and hashable) models, which is
what caching and config comparison need.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from ssd.noise.draws import Draws, GeneratorDraws

__all__ = [
    "NoiseModel",
    "GaussianNoise",
    "PoissonNoise",
    "PoissonGaussianNoise",
    "NoNoise",
    "NOISE_MODELS",
    "build_noise",
]


def _number(key: str, value: Any, *, low: float, strict: bool = False, low_name: str | None = None) -> float:
    """Validate a finite real number ``>= low`` (``> low`` if ``strict``) and return it as float.

    bools are rejected although Python counts them as ints: ``sigma: true`` in a config
    is a mistake, not a noise level.
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = value > low if strict else value >= low
    if not ok:
        bound = low_name if low_name is not None else f"{low:g}"
        raise ValueError(
            f"noise.{key}={value!r} is not allowed: must be a number {'>' if strict else '>='} {bound}"
        )
    return float(value)


def _flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"noise.{key}={value!r} is not allowed: must be true or false")
    return value


def _set(obj: object, name: str, value: Any) -> None:
    """Normalise a field of a frozen dataclass in ``__post_init__``."""
    object.__setattr__(obj, name, value)


class NoiseModel(ABC):
    """A corruption ``x -> x_noisy`` on [0,1] NCHW images with one primary level.

    ``level`` is what a robustness curve sweeps (sigma, or photons per pixel) and
    ``at_level`` makes the same family at another level, so evaluation code never needs
    to know which family it holds.
    """

    name: ClassVar[str]
    level_name: ClassVar[str] = "sigma"
    clip: bool = False

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Return a noisy copy of ``x`` (same shape, device and dtype) drawn from ``generator``."""
        if isinstance(x, Tensor) and generator is not None and generator.device.type != x.device.type:
            raise ValueError(
                f"noise generator is on {generator.device} but the images are on {x.device}; "
                "use a generator on the images' device"
            )
        return self.corrupt(x, GeneratorDraws(generator))

    def corrupt(self, x: Tensor, draws: Draws) -> Tensor:
        """Return a noisy copy of ``x`` (same shape, device and dtype) whose randomness comes from ``draws``.

        Computation happens in at least float32: bf16/fp16 cannot represent small
        noise around 1.0 and ``torch.poisson`` does not support them everywhere.
        """
        if not isinstance(x, Tensor) or not x.is_floating_point():
            got = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise TypeError(f"noise expects float images in [0,1]; got {got}")
        xf = x.to(torch.promote_types(x.dtype, torch.float32))
        out = self._apply(xf, draws)
        if self.clip:
            out = out.clamp(0.0, 1.0)
        return out.to(x.dtype)

    @abstractmethod
    def _apply(self, x: Tensor, draws: Draws) -> Tensor:
        """Corrupt ``x`` (float32 or float64); clipping and dtype are handled by ``corrupt``."""

    @property
    @abstractmethod
    def level(self) -> float:
        """The primary parameter (sigma for gaussian, photons per pixel for poisson)."""

    @abstractmethod
    def at_level(self, level: float) -> NoiseModel:
        """The same family (and secondary parameters) at another primary level."""

    def describe(self) -> str:
        """Short human-readable form, e.g. ``gaussian(sigma=0.2)``; defaults are omitted."""
        parts = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.default is dataclasses.MISSING or value != f.default:
                parts.append(f"{f.name}={value:g}" if isinstance(value, float) else f"{f.name}={value}")
        return f"{self.name}({', '.join(parts)})"

    def __str__(self) -> str:
        return self.describe()


@dataclass(frozen=True)
class GaussianNoise(NoiseModel):
    """Additive white Gaussian noise ``x + sigma * n``, the standard model in the literature.

    With ``sigma_max`` each sample draws its own sigma uniformly in [sigma, sigma_max]
    ("blind" training, one model for a range of levels). ``level`` stays ``sigma`` and
    ``at_level`` returns a single-level model, because evaluation happens at one level.
    ``clip`` is off by default, as in the denoising literature.
    """

    sigma: float
    clip: bool = False
    sigma_max: float | None = None

    name: ClassVar[str] = "gaussian"
    level_name: ClassVar[str] = "sigma"

    def __post_init__(self) -> None:
        _set(self, "sigma", _number("sigma", self.sigma, low=0.0))
        _set(self, "clip", _flag("clip", self.clip))
        if self.sigma_max is not None:
            _set(
                self,
                "sigma_max",
                _number("sigma_max", self.sigma_max, low=self.sigma, low_name=f"sigma ({self.sigma:g})"),
            )

    @property
    def level(self) -> float:
        return self.sigma

    def at_level(self, level: float) -> GaussianNoise:
        return GaussianNoise(level, clip=self.clip)

    def _apply(self, x: Tensor, draws: Draws) -> Tensor:
        if self.sigma_max is None:
            sigma: Tensor | float = self.sigma
        else:
            shape = (x.shape[0],) + (1,) * (x.dim() - 1)
            u = draws.uniform(shape, device=x.device, dtype=x.dtype)
            sigma = self.sigma + (self.sigma_max - self.sigma) * u
        n = draws.normal(tuple(x.shape), device=x.device, dtype=x.dtype)
        return n.mul_(sigma).add_(x)  # x + sigma * n, without two more image-sized buffers


@dataclass(frozen=True)
class PoissonNoise(NoiseModel):
    """Photon shot noise ``Poisson(ppp * x) / ppp`` at ``ppp`` photons per pixel.

    The model of low-light sensors: the noise depends on the signal. Larger ``ppp``
    means *less* noise. The rate is clamped at 0 so slightly negative inputs (e.g. from
    a denoiser) do not make ``torch.poisson`` fail.
    """

    ppp: float
    clip: bool = False

    name: ClassVar[str] = "poisson"
    level_name: ClassVar[str] = "ppp"

    def __post_init__(self) -> None:
        _set(self, "ppp", _number("ppp", self.ppp, low=0.0, strict=True))
        _set(self, "clip", _flag("clip", self.clip))

    @property
    def level(self) -> float:
        return self.ppp

    def at_level(self, level: float) -> PoissonNoise:
        return PoissonNoise(level, clip=self.clip)

    def _apply(self, x: Tensor, draws: Draws) -> Tensor:
        return draws.poisson(x.clamp(min=0.0) * self.ppp) / self.ppp


@dataclass(frozen=True)
class PoissonGaussianNoise(NoiseModel):
    """Shot noise plus Gaussian read noise: the usual model of a real camera sensor.

    ``read_sigma`` is in [0,1] image units; ``level`` is ``ppp`` (the read noise stays
    fixed when a robustness curve sweeps the photon level).
    """

    ppp: float
    read_sigma: float
    clip: bool = False

    name: ClassVar[str] = "poisson_gaussian"
    level_name: ClassVar[str] = "ppp"

    def __post_init__(self) -> None:
        _set(self, "ppp", _number("ppp", self.ppp, low=0.0, strict=True))
        _set(self, "read_sigma", _number("read_sigma", self.read_sigma, low=0.0))
        _set(self, "clip", _flag("clip", self.clip))

    @property
    def level(self) -> float:
        return self.ppp

    def at_level(self, level: float) -> PoissonGaussianNoise:
        return PoissonGaussianNoise(level, self.read_sigma, clip=self.clip)

    def _apply(self, x: Tensor, draws: Draws) -> Tensor:
        shot = draws.poisson(x.clamp(min=0.0) * self.ppp) / self.ppp
        n = draws.normal(tuple(x.shape), device=x.device, dtype=x.dtype)
        return n.mul_(self.read_sigma).add_(shot)  # shot + read_sigma * n


@dataclass(frozen=True)
class NoNoise(NoiseModel):
    """Identity, for the clean reference runs.

    ``level`` is 0 (a sigma). ``at_level(l)`` returns ``GaussianNoise(l)`` for ``l > 0``
    so a model trained clean can still be evaluated on a robustness curve over sigmas.
    """

    name: ClassVar[str] = "none"
    level_name: ClassVar[str] = "sigma"

    @property
    def level(self) -> float:
        return 0.0

    def at_level(self, level: float) -> NoiseModel:
        if _number("sigma", level, low=0.0) == 0.0:
            return NoNoise()
        return GaussianNoise(level)

    def _apply(self, x: Tensor, draws: Draws) -> Tensor:
        return x.clone()


NOISE_MODELS: dict[str, type[NoiseModel]] = {
    cls.name: cls for cls in (GaussianNoise, PoissonNoise, PoissonGaussianNoise, NoNoise)
}


def build_noise(cfg: Mapping[str, Any]) -> NoiseModel:
    """Build a noise model from a config mapping (dict or OmegaConf ``DictConfig``).

    ``cfg.name`` picks the family from :data:`NOISE_MODELS`; the family's parameters are
    read from the keys of the same name. Other keys, and parameters set to ``null``, are
    ignored, so one config group can carry the parameters of every family.
    """
    if "name" not in cfg:
        raise ValueError(f"noise.name is missing: must be one of {sorted(NOISE_MODELS)}")
    name = cfg["name"]
    cls = NOISE_MODELS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"noise.name={name!r} is not allowed: must be one of {sorted(NOISE_MODELS)}")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        value = cfg.get(f.name)
        if value is not None:
            kwargs[f.name] = value
        elif f.default is dataclasses.MISSING:
            raise ValueError(f"noise.{f.name} is missing: it is required for noise.name={name!r}")
    return cls(**kwargs)
