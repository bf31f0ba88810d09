"""Reproducible noise streams: fixed per-sample evaluation noise and per-rank training noise.

Evaluation noise is a function of (evaluation seed, sample index) only: every random
number of sample ``i`` is a SplitMix64 hash of its key ``sample_seed(seed, i)``, the draw
and the pixel's flat index (:mod:`ssd.noise.counter`). So a test accuracy does not
change with batch size, batch order, number of workers or number of GPUs, and the noise
is computed in one vectorised pass on the images' device; a CPU and a GPU give the same
noise up to float32 rounding of log/sin/cos (Poisson counts: exactly the same).

This definition replaced a per-image CPU generator (``torch.Generator`` reseeded with
``sample_seed``) in issue 12: same statistics, different realisations, so test
accuracies from before it differ within their noise.

Training noise is fresh every step and drawn on the training device; each DDP rank gets
its own stream so ranks do not add the same noise to different images in lockstep.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ssd.noise.counter import CounterDraws
from ssd.noise.hashing import splitmix64_, to_int64
from ssd.noise.models import NoiseModel

__all__ = ["fixed_noisy", "sample_keys", "sample_seed", "training_generator"]

_MASK64 = (1 << 64) - 1
# Domain tags keep evaluation and training streams apart even for equal integers.
_EVAL_TAG = 0x5EED_E7A1
_TRAIN_TAG = 0x5EED_7EA1


def _splitmix64(z: int) -> int:
    """One step of splitmix64 (Steele et al.): a fast, well-mixed 64-bit bijection."""
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _mix(*parts: int) -> int:
    """Hash integers (any sign, any size mod 2**64) to a 63-bit seed.

    Chaining splitmix64 makes nearby inputs (index 7 vs 8, seed 0 vs 1) give unrelated
    seeds; 63 bits keep ``Generator.manual_seed`` happy on every backend.
    """
    h = 0
    for p in parts:
        h = _splitmix64(h ^ (int(p) & _MASK64))
    return h >> 1


def sample_seed(seed: int, index: int) -> int:
    """The generator seed of evaluation sample ``index`` under evaluation seed ``seed``."""
    return _mix(_EVAL_TAG, seed, index)


def sample_keys(seed: int, idx: Tensor) -> Tensor:
    """``sample_seed(seed, i)`` for every index in ``idx`` (int64, on ``idx``'s device), vectorised."""
    prefix = _splitmix64(_splitmix64(_EVAL_TAG) ^ (int(seed) & _MASK64))  # _mix's first two steps
    h = splitmix64_(idx.to(torch.int64) ^ to_int64(prefix))
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


def training_generator(seed: int, rank: int, device: torch.device | str) -> torch.Generator:
    """A generator on ``device`` for training noise, distinct for every (seed, rank)."""
    g = torch.Generator(device=torch.device(device))
    g.manual_seed(_mix(_TRAIN_TAG, seed, rank))
    return g
