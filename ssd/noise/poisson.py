"""Exact Poisson counts from counter-based uniforms (the evaluation side of shot noise).

Two exact methods fed with hashed uniforms instead of a generator, so the distribution
is exactly Poisson at every rate (up to the uniforms' 32/53-bit resolution):

* rate < 10: inversion. One uniform ``u`` (53 bits) per element; the count is the
  smallest ``k`` with ``u < P(X <= k)``, found by summing the probabilities upwards.
  (``torch.poisson`` and NumPy multiply uniforms here instead, which needs a variable
  number of them per element.)
* rate >= 10: PTRS, the transformed rejection of Hörmann (1993), "The transformed
  rejection method for generating Poisson random variables", as in ``torch.poisson``
  and NumPy. Attempt ``t`` of an element uses the 64-bit hash of counter
  ``element + t * 2**32`` (two 32-bit uniforms); an element stops at its first accepted
  attempt (about 1.1 attempts on average).

Everything is computed in float64, so a CPU and a GPU agree: an acceptance test or a
CDF comparison could only flip where the two sides differ by less than ~1e-15.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ssd.noise.hashing import bit_field, element_bits, hash_bits

__all__ = ["SMALL_RATE", "poisson_counts"]

#: Below this rate counts come from inversion, at or above it from PTRS (as in torch/NumPy).
SMALL_RATE = 10.0
# Inversion needs about rate + 6*sqrt(rate) steps at most in practice (P(X >= 128) < 1e-60
# below rate 10); PTRS accepts an attempt with probability > 0.8, so 64 attempts fail with
# probability < 1e-44. Both bounds only guarantee termination.
_MAX_STEPS = 128
_MAX_ATTEMPTS = 64
# inversion steps done on every element before only the unfinished ones are kept (P(X > 12) ~ 0.2 at rate 10)
_DENSE_STEPS = 12


def _inversion(lam: Tensor, u: Tensor) -> Tensor:
    """Counts for rates < SMALL_RATE: the smallest k with u < CDF(k).

    The first steps update every element (no gathers: cheaper while most are still
    searching); then only the unfinished ones are carried on.
    """
    k = torch.zeros_like(lam)
    p = torch.exp(-lam)
    cdf = p.clone()
    for step in range(1, _DENSE_STEPS + 1):
        k += u >= cdf
        p.mul_(lam).div_(step)
        cdf.add_(p)
    todo = (u >= cdf).nonzero().squeeze(1)
    lam, u, p, cdf = lam[todo], u[todo], p[todo], cdf[todo]
    for step in range(_DENSE_STEPS + 1, _MAX_STEPS + 1):
        if todo.numel() == 0:
            break
        k[todo] = float(step)
        p = p * lam / step
        cdf = cdf + p
        # stop where u is below the CDF, or where float64 cannot raise the CDF any more (u within ~1e-16 of 1)
        keep = ((u >= cdf) & (p > 0)).nonzero().squeeze(1)
        todo, lam, u, p, cdf = todo[keep], lam[keep], u[keep], p[keep], cdf[keep]
    return k


def _ptrs_attempt(lam: Tensor, bits: Tensor) -> tuple[Tensor, Tensor]:
    """One PTRS attempt for rates >= SMALL_RATE: (candidate count, accepted)."""
    scale = 2.0**-32
    big_u = (bit_field(bits, 32, 32).to(lam.dtype) + 0.5) * scale - 0.5
    v = (bit_field(bits, 0, 32).to(lam.dtype) + 0.5) * scale  # in (0, 1): log is finite
    slam, loglam = lam.sqrt(), lam.log()
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    v_r = 0.9277 - 3.6224 / (b - 2.0)
    us = 0.5 - big_u.abs()
    k = torch.floor((2.0 * a / us + b) * big_u + lam + 0.43)
    quick = (us >= 0.07) & (v <= v_r)
    hopeless = (k < 0) | ((us < 0.013) & (v > us))
    k_safe = k.clamp(min=0.0)
    lhs = v.log() + inv_alpha.log() - (a / (us * us) + b).log()
    rhs = -lam + k_safe * loglam - torch.lgamma(k_safe + 1.0)
    return k, quick | (~hopeless & (lhs <= rhs))


def _ptrs(lam: Tensor, keys: Tensor, counters: Tensor, first_bits: Tensor) -> Tensor:
    """Counts for rates >= SMALL_RATE; attempt 0 uses ``first_bits``, later ones hash their own counter."""
    out = torch.empty_like(lam)
    todo = torch.arange(lam.numel(), device=lam.device)
    bits = first_bits
    for attempt in range(_MAX_ATTEMPTS):
        k, accepted = _ptrs_attempt(lam[todo], bits)
        done = accepted.nonzero().squeeze(1)
        out[todo[done]] = k[done]
        todo = todo[(~accepted).nonzero().squeeze(1)]
        if todo.numel() == 0:
            return out
        bits = hash_bits(keys[todo], counters[todo] + ((attempt + 1) << 32))
    raise RuntimeError(f"Poisson sampling did not finish after {_MAX_ATTEMPTS} attempts; this is a bug")


def poisson_counts(rate: Tensor, keys: Tensor) -> Tensor:
    """Poisson counts (float64) for ``rate`` of shape (rows, elements); row ``r`` is keyed by ``keys[r]``.

    Element ``j`` of row ``r`` depends only on ``(keys[r], j, rate[r, j])``.
    """
    rate = rate.to(torch.float64)
    if not bool(torch.isfinite(rate).all()) or bool((rate < 0).any()):
        raise ValueError("Poisson rates must be finite and >= 0 (ppp * image)")
    rows, per_row = rate.shape
    counters = torch.arange(per_row, device=rate.device, dtype=torch.int64)
    bits = element_bits(keys, counters)
    out = torch.empty_like(rate)
    small = rate < SMALL_RATE
    if bool(small.all()):
        u = bit_field(bits, 11, 53).to(torch.float64) * 2.0**-53
        return _inversion(rate.reshape(-1), u.reshape(-1)).reshape(rows, per_row)
    flat_rate, flat_bits, flat_out = rate.reshape(-1), bits.reshape(-1), out.reshape(-1)
    small_at = small.reshape(-1).nonzero().squeeze(1)
    u = bit_field(flat_bits[small_at], 11, 53).to(torch.float64) * 2.0**-53
    flat_out[small_at] = _inversion(flat_rate[small_at], u)
    large_at = (~small).reshape(-1).nonzero().squeeze(1)
    row_of, col_of = large_at // per_row, large_at % per_row
    flat_out[large_at] = _ptrs(flat_rate[large_at], keys[row_of], col_of, flat_bits[large_at])
    return out
