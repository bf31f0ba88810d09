"""Reproducible noise streams: fixed per-sample evaluation noise and per-rank training noise.

Evaluation noise is a function of (evaluation seed, sample index) only. Each sample gets
its own CPU generator seeded from a hash of the pair, so a test accuracy is bit-identical
for any batch size, batch order, number of workers, number of GPUs or device type (CPU
and CUDA generators produce different streams, hence always CPU).

Training noise is fresh every step and drawn on the training device; each DDP rank gets
its own stream so ranks do not add the same noise to different images in lockstep.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ssd.noise.models import NoiseModel

__all__ = ["fixed_noisy", "sample_seed", "training_generator"]

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


def fixed_noisy(noise: NoiseModel, x: Tensor, idx: Tensor, seed: int) -> Tensor:
    """Noisy copy of ``x`` whose noise for sample ``i`` depends only on ``(seed, idx[i])``.

    Samples are corrupted one at a time in float32 on the CPU with their own generator,
    then moved back to ``x``'s device and dtype. That costs a loop over the batch, but it
    is what makes evaluation independent of batching and hardware.
    """
    idx_list = torch.as_tensor(idx).reshape(-1).tolist()
    if len(idx_list) != x.shape[0]:
        raise ValueError(f"fixed_noisy: got {x.shape[0]} images but {len(idx_list)} indices")
    x_cpu = x.detach().to(device="cpu", dtype=torch.float32)
    out = torch.empty_like(x_cpu)
    g = torch.Generator(device="cpu")
    for i, j in enumerate(idx_list):
        g.manual_seed(sample_seed(seed, j))
        out[i] = noise(x_cpu[i : i + 1], generator=g)[0]
    return out.to(device=x.device, dtype=x.dtype)


def training_generator(seed: int, rank: int, device: torch.device | str) -> torch.Generator:
    """A generator on ``device`` for training noise, distinct for every (seed, rank)."""
    g = torch.Generator(device=torch.device(device))
    g.manual_seed(_mix(_TRAIN_TAG, seed, rank))
    return g
