"""Counter-based draws: every number is a hash of (sample key, draw, element index).

This is the :class:`~ssd.noise.draws.Draws` source of fixed evaluation noise. A row's
values depend only on its key and on the element's flat index (``C*H*W`` order for an
image), never on the other rows, the batch size, the batch order or the device, and all
of it is vectorised on the device that holds the images.

* Normals: Box-Muller on two 24-bit float32 uniforms taken from one 64-bit hash, which
  gives a pair of normals (one hash per two values): of ``n`` values per row, pair ``j``
  gives value ``j`` (cosine) and value ``j + ceil(n/2)`` (sine). The largest possible
  magnitude is ``sqrt(2 * 25 * ln 2) = 5.9``; a true Gaussian exceeds it with
  probability 4e-9.
* Uniforms: the top 24 (float32) or 53 (float64) bits of one hash, in [0, 1).
* Poisson counts: exact, see :mod:`ssd.noise.poisson`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from ssd.noise.draws import Draws
from ssd.noise.hashing import GAMMA, bit_field, element_bits, splitmix64_, stream_keys, to_int64
from ssd.noise.poisson import poisson_counts

__all__ = ["CounterDraws"]

#: Values per chunk: keeps one chunk's int64 temporaries in a CPU's cache; a GPU takes
#: large chunks so kernel launches do not dominate.
_CHUNK = {"cpu": 1 << 16, "other": 1 << 24}


def _box_muller(bits: Tensor, cos_out: Tensor, sin_out: Tensor) -> None:
    """Two float32 standard normals per 64-bit word, written into ``cos_out`` and ``sin_out``."""
    scale = 2.0**-24
    r = bit_field(bits, 40, 24).to(torch.float32).add_(0.5).mul_(scale)  # u1 in (0, 1): log is finite
    r.log_().mul_(-2.0).sqrt_()
    theta = bit_field(bits, 8, 24).to(torch.float32).mul_(scale * 2.0 * math.pi)
    torch.mul(theta.cos(), r, out=cos_out)
    torch.mul(theta.sin_(), r, out=sin_out)


class CounterDraws(Draws):
    """Draws that depend only on per-row 64-bit ``keys`` (one per batch row), on the rows' device.

    The n-th call (normal, uniform or poisson) uses stream n of every key, so the draws
    of one noise model are independent of each other.
    """

    def __init__(self, keys: Tensor):
        if not isinstance(keys, Tensor) or keys.dtype != torch.int64 or keys.dim() != 1:
            got = f"{keys.dtype} {tuple(keys.shape)}" if isinstance(keys, Tensor) else type(keys).__name__
            raise ValueError(f"CounterDraws needs a 1-d int64 tensor of keys; got {got}")
        self.keys = keys
        self._calls = 0

    def _next_keys(self, shape: tuple[int, ...], device: torch.device) -> Tensor:
        if not shape or shape[0] != self.keys.numel():
            raise ValueError(
                f"counter draws of shape {tuple(shape)}: the first dimension must be the batch "
                f"({self.keys.numel()} keys)"
            )
        keys = stream_keys(self.keys.to(device), self._calls)
        self._calls += 1
        return keys

    @staticmethod
    def _rows_per_chunk(per_row: int, device: torch.device) -> int:
        return max(1, _CHUNK["cpu" if device.type == "cpu" else "other"] // max(per_row, 1))

    @staticmethod
    def _chunks(rows: int, cols: int, device: torch.device) -> Iterator[tuple[slice, slice]]:
        """(row slice, column slice) blocks of about ``_CHUNK`` values covering a rows x cols array."""
        budget = _CHUNK["cpu" if device.type == "cpu" else "other"]
        col_step = max(1, min(cols, budget))
        row_step = max(1, budget // col_step)
        for r in range(0, rows, row_step):
            for c in range(0, cols, col_step):
                yield slice(r, r + row_step), slice(c, c + col_step)

    def normal(self, shape: tuple[int, ...], *, dtype: torch.dtype, device: torch.device) -> Tensor:
        device = torch.device(device)
        keys = self._next_keys(shape, device)
        rows, per_row = shape[0], math.prod(shape[1:])
        pairs = (per_row + 1) // 2
        counters = torch.arange(pairs, device=device, dtype=torch.int64).mul_(to_int64(GAMMA))
        out = torch.empty(rows, 2 * pairs, device=device, dtype=torch.float32)
        for r, c in self._chunks(rows, pairs, device):
            bits = splitmix64_(keys[r, None] + counters[c])  # = element_bits(keys[r], arange(pairs)[c])
            _box_muller(bits, out[r, :pairs][:, c], out[r, pairs:][:, c])
        return out[:, :per_row].reshape(shape).to(dtype)

    def uniform(self, shape: tuple[int, ...], *, dtype: torch.dtype, device: torch.device) -> Tensor:
        device = torch.device(device)
        keys = self._next_keys(shape, device)
        counters = torch.arange(math.prod(shape[1:]), device=device, dtype=torch.int64)
        bits = element_bits(keys, counters)
        # only as many bits as the working dtype holds exactly, so the value stays < 1
        width, wide = (53, torch.float64) if dtype == torch.float64 else (24, torch.float32)
        return bit_field(bits, 64 - width, width).to(wide).mul_(2.0**-width).reshape(shape).to(dtype)

    def poisson(self, rate: Tensor) -> Tensor:
        keys = self._next_keys(tuple(rate.shape), rate.device)
        flat = rate.reshape(rate.shape[0], -1)
        out = torch.empty(flat.shape, device=rate.device, dtype=torch.float64)
        step = self._rows_per_chunk(flat.shape[1], rate.device)
        for start in range(0, flat.shape[0], step):
            out[start : start + step] = poisson_counts(flat[start : start + step], keys[start : start + step])
        return out.reshape(rate.shape).to(rate.dtype)
