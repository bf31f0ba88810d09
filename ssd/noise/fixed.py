"""Fixed per-sample evaluation noise: the noise of test image ``i`` depends on (evaluation seed, ``i``) only.

Every random number of sample ``i`` is a SplitMix64 hash of its key ``sample_seed(seed, i)``, the
draw and the pixel's flat index (:mod:`ssd.noise.counter`). So a test accuracy does not change
with batch size, batch order, number of workers or number of GPUs, and the noise is computed in
one vectorised pass on the images' device; a CPU and a GPU give the same noise up to float32
rounding of log/sin/cos (Poisson counts: exactly the same). The evaluation seed enters once, as
the ``eval-noise`` stream of :mod:`ssd.seeding`; training noise is a ``noise`` stream there too.

History: issue 12 replaced a per-image CPU generator with these counter draws, and issue 17 derived
the key from ``ssd.seeding``: same statistics, different realisations, so test accuracies from
before each change differ within their noise.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ssd.noise.counter import CounterDraws
from ssd.noise.hashing import splitmix64_, to_int64
from ssd.noise.models import NoiseModel
from ssd.seeding import seed_of, splitmix64

__all__ = ["fixed_noisy", "sample_keys", "sample_seed"]


def sample_seed(seed: int, index: int) -> int:
    """The key of evaluation sample ``index`` under evaluation seed ``seed`` (63 bits)."""
    return splitmix64((int(index) ^ seed_of(seed, "eval-noise")) & ((1 << 64) - 1)) >> 1


def sample_keys(seed: int, idx: Tensor) -> Tensor:
    """``sample_seed(seed, i)`` for every index in ``idx`` (int64, on ``idx``'s device), vectorised."""
    h = splitmix64_(idx.to(torch.int64) ^ to_int64(seed_of(seed, "eval-noise")))
    return torch.bitwise_right_shift(h, 1).bitwise_and_((1 << 63) - 1)


def fixed_noisy(noise: NoiseModel, x: Tensor, idx: Tensor, seed: int) -> Tensor:
    """Noisy copy of ``x`` whose noise for sample ``i`` depends only on ``(seed, idx[i])``.

    Computed on ``x``'s device in at least float32, returned in ``x``'s dtype.
    """
    idx = torch.as_tensor(idx).reshape(-1)
    if idx.numel() != x.shape[0]:
        raise ValueError(f"fixed_noisy: got {x.shape[0]} images but {idx.numel()} indices")
    if idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool:
        raise ValueError(f"fixed_noisy: sample indices must be integers; got {idx.dtype}")
    keys = sample_keys(seed, idx.to(x.device))
    return noise.corrupt(x.detach(), CounterDraws(keys))
