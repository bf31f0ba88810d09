"""Batched augmentation of uint8 NCHW batches, on whatever device the batch is on.

In-memory datasets hand whole uint8 batches to the device; augmenting there (one gather for
the whole batch, no Python loop over samples) keeps small-image training from being
bottlenecked by per-sample CPU transforms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def to_unit_float(x: Tensor) -> Tensor:
    """uint8 images in 0..255 -> float32 in [0, 1] (same shape and device)."""
    if x.dtype != torch.uint8:
        raise TypeError(f"to_unit_float expects uint8 images, got {x.dtype}")
    return x.to(torch.float32).div_(255.0)


#: how ``random_crop_flip`` fills the border it crops from
PAD_MODES = ("zeros", "reflect")


def _reflect(index: Tensor, size: int) -> Tensor:
    """Indices outside ``[0, size)`` mirrored at the edge (``-1 -> 1``, ``size -> size - 2``)."""
    index = index.abs()
    return torch.where(index >= size, 2 * (size - 1) - index, index)


def random_crop_flip(
    x: Tensor,
    padding: int = 4,
    flip: bool = True,
    generator: torch.Generator | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
    pad_mode: str = "zeros",
) -> Tensor:
    """Random crop of the padded image + random horizontal flip, each sample its own, -> float [0,1].

    ``x``: uint8 (N, C, H, W). Equivalent to torchvision's ``RandomCrop(H, padding,
    padding_mode=...)`` + ``RandomHorizontalFlip()`` per sample; ``pad_mode``: ``zeros`` (black
    borders, torchvision's ``constant``) or ``reflect`` (the image mirrored at its edge, without
    repeating the edge pixel). ``generator`` (on ``x.device``) makes it reproducible.
    ``memory_format`` of the result: ``torch.channels_last`` costs no extra copy (the gather
    produces pixels in that order).
    """
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise TypeError(f"random_crop_flip expects uint8 NCHW, got {x.dtype} {tuple(x.shape)}")
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode={pad_mode!r} is not allowed; valid: {', '.join(PAD_MODES)}")
    n, c, h, w = x.shape
    if n == 0 or (padding == 0 and not flip):
        return to_unit_float(x).contiguous(memory_format=memory_format)
    dev = x.device
    rows = torch.arange(h, device=dev).expand(n, h)
    cols = torch.arange(w, device=dev).expand(n, w)
    if padding > 0:
        rows = rows + torch.randint(0, 2 * padding + 1, (n, 1), device=dev, generator=generator)
        cols = cols + torch.randint(0, 2 * padding + 1, (n, 1), device=dev, generator=generator)
        if pad_mode == "zeros":
            x = F.pad(x, (padding, padding, padding, padding))
        else:  # reflect: read the mirrored pixel of the unpadded image instead of padding it
            rows, cols = _reflect(rows - padding, h), _reflect(cols - padding, w)
    if flip:
        flipped = torch.rand(n, 1, device=dev, generator=generator) < 0.5
        cols = torch.where(flipped, cols.flip(1), cols)
    # One index_select of whole pixels (C values each) from the padded batch laid out (N, Hp, Wp, C):
    # about a third faster than advanced indexing over (N, H, W) with the channel slice in between.
    hp, wp = x.shape[2], x.shape[3]
    pixels = x.permute(0, 2, 3, 1).reshape(-1, c)
    flat = torch.arange(n, device=dev)[:, None, None] * (hp * wp) + rows[:, :, None] * wp + cols[:, None, :]
    out = pixels.index_select(0, flat.view(-1)).view(n, h, w, c)
    return to_unit_float(out.permute(0, 3, 1, 2)).contiguous(memory_format=memory_format)
