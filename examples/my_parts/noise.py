"""Salt-and-pepper noise: a fraction ``amount`` of the pixels turns black or white (all channels).

A noise model is a frozen dataclass deriving from ``ssd.noise.NoiseModel``. Its fields are the keys
of its YAML (typed: ``Range`` bounds them), ``level`` is what a robustness curve sweeps, and every
random number comes from ``draws``: that is what keeps evaluation noise fixed per test image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

import torch
from torch import Tensor

from ssd.config import Range
from ssd.noise import Draws, NoiseModel

Fraction = Annotated[float, Range(ge=0, le=1)]


@dataclass(frozen=True)
class SaltPepperNoise(NoiseModel):
    amount: Fraction  # the fraction of pixels replaced
    salt: Fraction  # of those, the fraction that turns white

    name: ClassVar[str] = "salt_pepper"
    level_name: ClassVar[str] = "amount"

    @property
    def level(self) -> float:
        return self.amount

    def at_level(self, level: float) -> SaltPepperNoise:
        return SaltPepperNoise(level, self.salt)

    def _apply(self, x: Tensor, draws: Draws) -> Tensor:
        pixels = (x.shape[0], 1, *x.shape[2:])  # one draw per pixel, shared by its channels
        hit = draws.uniform(pixels, dtype=x.dtype, device=x.device) < self.amount
        white = draws.uniform(pixels, dtype=x.dtype, device=x.device) < self.salt
        return torch.where(hit, white.to(x.dtype), x)
