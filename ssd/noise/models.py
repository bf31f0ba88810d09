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
import typing
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ssd.config.annotations import NoiseStd, Photons, Range, check_value
from ssd.noise.draws import Draws, GeneratorDraws

__all__ = ["NoiseModel", "GaussianNoise", "PoissonNoise", "PoissonGaussianNoise", "NoNoise"]

#: a noise level (a standard deviation, photons per pixel) in the range where it means something
NonNegative = NoiseStd
Positive = Photons


class NoiseModel(ABC):
    """A corruption ``x -> x_noisy`` on [0,1] NCHW images with one primary level.

    ``level`` is what a robustness curve sweeps (sigma, or photons per pixel) and
    ``at_level`` makes the same family at another level, so evaluation code never needs
    to know which family it holds.
    """

    #: the family's name in results and folder names (default: the class name, lower case)
    name: ClassVar[str]
    #: the parameter a robustness curve sweeps
    level_name: ClassVar[str] = "sigma"

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in vars(cls):
            cls.name = cls.__name__.lower()

    def __post_init__(self) -> None:
        """Every field checked against its annotation (``noise.<field>`` in messages); floats stay floats."""
        hints = typing.get_type_hints(type(self), include_extras=True)
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            check_value(f"noise.{field.name}", value, hints[field.name])
            if isinstance(value, int) and not isinstance(value, bool) and _is_float(hints[field.name]):
                object.__setattr__(self, field.name, float(value))
        self.check()

    def check(self) -> None:  # noqa: B027 - a hook: most models need no check across fields
        """Checks across fields (raise ValueError naming ``noise.<field>``); the annotations did the rest."""

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
        if getattr(
            self, "clip", False
        ):  # a model with a ``clip`` field clamps its output to [0,1] when it is set
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
        """Short human-readable form, e.g. ``gaussian(sigma=0.2)``; fields that are off (None, False) are omitted."""
        parts = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is not None and value is not False:
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

    sigma: NonNegative
    clip: bool
    sigma_max: NonNegative | None

    name: ClassVar[str] = "gaussian"
    level_name: ClassVar[str] = "sigma"

    def check(self) -> None:  # noqa: B027 - a hook: most models need no check across fields
        if self.sigma_max is not None and self.sigma_max < self.sigma:
            raise ValueError(
                f"noise.sigma_max={self.sigma_max!r} is not allowed: must be a number >= sigma ({self.sigma:g})"
            )

    @property
    def level(self) -> float:
        return self.sigma

    def at_level(self, level: float) -> GaussianNoise:
        return GaussianNoise(level, clip=self.clip, sigma_max=None)

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

    ppp: Positive
    clip: bool

    name: ClassVar[str] = "poisson"
    level_name: ClassVar[str] = "ppp"

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

    ppp: Positive
    read_sigma: NonNegative
    clip: bool

    name: ClassVar[str] = "poisson_gaussian"
    level_name: ClassVar[str] = "ppp"

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
        return NoNoise() if level == 0 else GaussianNoise(level, clip=False, sigma_max=None)

    def _apply(self, x: Tensor, draws: Draws) -> Tensor:
        return x.clone()


def _is_float(annotation: object) -> bool:
    """``float``, possibly ``Annotated`` or ``Optional``: an int given for it is stored as a float."""
    args = typing.get_args(annotation)
    if annotation is float:
        return True
    return bool(args) and any(_is_float(a) for a in args if a is not type(None) and not isinstance(a, Range))
