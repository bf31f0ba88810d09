"""Where a noise model's random numbers come from.

A noise model writes its formula once, against the three primitive draws below; the
source decides what is reproducible. :class:`GeneratorDraws` wraps a ``torch.Generator``
(fresh training noise, exactly the stream ``torch.randn``/``torch.poisson`` give);
:class:`ssd.noise.counter.CounterDraws` derives every number from (seed, sample index,
element index) so evaluation noise is fixed per sample and computed on the device.

Every draw has the batch as its first dimension; a source may use it (counter draws key
each row by its sample index) or ignore it (a generator).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

__all__ = ["Draws", "GeneratorDraws"]


class Draws(ABC):
    """The random numbers a noise model may ask for, in the order its formula needs them."""

    @abstractmethod
    def normal(self, shape: tuple[int, ...], *, dtype: torch.dtype, device: torch.device) -> Tensor:
        """Standard normal samples of ``shape`` (first dimension: the batch)."""

    @abstractmethod
    def uniform(self, shape: tuple[int, ...], *, dtype: torch.dtype, device: torch.device) -> Tensor:
        """Uniform samples in [0, 1) of ``shape`` (first dimension: the batch)."""

    @abstractmethod
    def poisson(self, rate: Tensor) -> Tensor:
        """Poisson counts with the elementwise ``rate`` (>= 0), same shape, device and dtype."""


class GeneratorDraws(Draws):
    """Draws from a ``torch.Generator`` on the images' device (``None``: torch's global one).

    The calls are the ones the models made before draws existed, so a training run with a
    given seed sees the same noise as before.
    """

    def __init__(self, generator: torch.Generator | None = None):
        self.generator = generator

    def normal(self, shape: tuple[int, ...], *, dtype: torch.dtype, device: torch.device) -> Tensor:
        return torch.randn(shape, generator=self.generator, device=device, dtype=dtype)

    def uniform(self, shape: tuple[int, ...], *, dtype: torch.dtype, device: torch.device) -> Tensor:
        return torch.rand(shape, generator=self.generator, device=device, dtype=dtype)

    def poisson(self, rate: Tensor) -> Tensor:
        return torch.poisson(rate, generator=self.generator)
