"""SplitMix64 on int64 tensors: 64 random bits for any (key, counter) pair, on any device.

Why a hash and not a generator: evaluation noise must be a function of (seed, sample
index, element index) only. A hash of those coordinates is one vectorised pass on the
device that holds the images and gives the same bits on a CPU and a GPU.

SplitMix64 (Steele, Lea & Flood 2014; it passes BigCrush) maps a 64-bit state to 64
well-mixed bits. Counter ``j`` under key ``K`` hashes the state ``K + j * GAMMA``, i.e.
it is the ``(j+1)``-th output of a SplitMix64 generator seeded with ``K``. Two details of
torch's int64 arithmetic matter:

* products wrap modulo 2**64 (two's complement), which is exactly the unsigned
  arithmetic SplitMix64 needs; ``tests/test_noise.py`` checks the tensors against the
  pure-Python :func:`splitmix64_ref`, so a backend that did not wrap would fail there;
* ``>>`` is arithmetic (it copies the sign bit), so every right shift is masked to the
  bits a logical shift keeps.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "GAMMA",
    "MASK64",
    "bit_field",
    "element_bits",
    "hash_bits",
    "splitmix64",
    "splitmix64_",
    "splitmix64_ref",
    "stream_keys",
    "to_int64",
]

MASK64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
# Separates the keys of the successive draws (streams) of one sample from its own key.
_STREAM_TAG = 0x57AE_A115_0000_0000


def to_int64(value: int) -> int:
    """The signed int64 with the same 64 bits as ``value`` (any Python int)."""
    value &= MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


def splitmix64_ref(z: int) -> int:
    """SplitMix64's step on a Python int (exact unsigned 64-bit arithmetic): the reference."""
    z = (z + GAMMA) & MASK64
    z = ((z ^ (z >> 30)) * _M1) & MASK64
    z = ((z ^ (z >> 27)) * _M2) & MASK64
    return z ^ (z >> 31)


def _xorshift_(z: Tensor, shift: int) -> Tensor:
    """``z ^= z >>> shift`` in place; the logical shift is torch's arithmetic one, masked."""
    return z.bitwise_xor_(torch.bitwise_right_shift(z, shift).bitwise_and_((1 << (64 - shift)) - 1))


def splitmix64_(z: Tensor) -> Tensor:
    """SplitMix64's step on an int64 tensor, in place (products wrap modulo 2**64)."""
    z.add_(to_int64(GAMMA))
    _xorshift_(z, 30).mul_(to_int64(_M1))
    _xorshift_(z, 27).mul_(to_int64(_M2))
    return _xorshift_(z, 31)


def splitmix64(z: Tensor) -> Tensor:
    """SplitMix64's step on an int64 tensor (a new tensor); equals :func:`splitmix64_ref` bitwise."""
    return splitmix64_(z.clone())


def stream_keys(keys: Tensor, stream: int) -> Tensor:
    """Keys of a sample's ``stream``-th draw (a noise model's draws are independent of each other).

    Two hashes, so that stream ``s`` of one key is not stream ``t`` of another key that
    differs from it only in the low bits.
    """
    return splitmix64_(splitmix64_(keys ^ to_int64(_STREAM_TAG)).add_(stream))


def hash_bits(keys: Tensor, counters: Tensor) -> Tensor:
    """64 random bits for each (key, counter) pair, broadcast: SplitMix64 of ``key + counter * GAMMA``."""
    return splitmix64_(keys + counters.mul(to_int64(GAMMA)))


def element_bits(keys: Tensor, counters: Tensor) -> Tensor:
    """64 random bits for every (key, counter) combination: shape ``keys.shape + counters.shape``."""
    return hash_bits(keys.reshape(keys.shape + (1,) * counters.dim()), counters)


def bit_field(z: Tensor, low: int, width: int) -> Tensor:
    """Bits ``low .. low+width-1`` of ``z`` as a non-negative int64."""
    return torch.bitwise_right_shift(z, low).bitwise_and_((1 << width) - 1)
