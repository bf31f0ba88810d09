"""Pictures of what a denoiser does: clean, noisy and denoised test images side by side.

A number like PSNR hides *how* a denoiser fails (over-smoothing, colour shifts, leftover
noise); a grid of the same images shows it at a glance. Every stage that denoises saves
one in its folder and sends it to the logger (W&B or TensorBoard), each row named on its
left and enlarged so that 32-pixel images can be seen without zooming.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchvision.transforms.functional import pil_to_tensor, to_pil_image
from torchvision.utils import make_grid, save_image

from ssd.loggers import log_images

#: the rows of a denoising grid, top to bottom
GRID_NAMES = ("clean", "noisy", "denoised")
#: caption of the grid: what each row is
GRID_ROWS = "rows: " + " / ".join(GRID_NAMES)
MIN_ROW_PIXELS = 96  # rows are enlarged (nearest neighbour) to at least this height


def denoising_grid(clean: Tensor, noisy: Tensor, denoised: Tensor, max_images: int = 8) -> Tensor:
    """A [3, H', W'] image in [0,1]: one row each of clean, noisy and denoised images.

    Only the first ``max_images`` of each batch are shown; values are clamped to [0,1] for
    display (unclipped noise and raw denoiser outputs leave that range).
    """
    if not clean.shape == noisy.shape == denoised.shape:
        raise ValueError(
            f"denoising_grid: shapes differ: clean {tuple(clean.shape)}, noisy {tuple(noisy.shape)}, denoised {tuple(denoised.shape)}"
        )
    n = min(max_images, clean.shape[0])
    rows = [t[:n].detach().float().cpu().clamp(0.0, 1.0) for t in (clean, noisy, denoised)]
    return make_grid(torch.cat(rows), nrow=n, padding=2, pad_value=1.0)


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # a scalable font (Pillow >= 10.1 with FreeType)
    except (TypeError, OSError):
        return ImageFont.load_default()


def label_rows(grid: Tensor, names: Sequence[str], min_row_pixels: int = MIN_ROW_PIXELS) -> Tensor:
    """``grid`` (a [3, H, W] image of ``len(names)`` equal rows, as ``make_grid`` lays them out) enlarged
    to rows of at least ``min_row_pixels`` (nearest neighbour: pixels stay pixels), with a white margin
    on the left holding each row's name. Returns a [3, H', W'] image in [0,1]."""
    from PIL import Image, ImageDraw

    if grid.dim() != 3 or not names:
        raise ValueError(
            f"label_rows: needs a [C, H, W] grid and row names (got {tuple(grid.shape)}, {names!r})"
        )
    scale = max(1, math.ceil(min_row_pixels * len(names) / grid.shape[1]))
    image = to_pil_image(grid.detach().float().cpu().clamp(0.0, 1.0))
    image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    row = image.height / len(names)
    font = _font(max(10, round(row * 0.2)))
    widths = [ImageDraw.Draw(image).textbbox((0, 0), name, font=font)[2] for name in names]
    pad = max(4, round(row * 0.1))
    canvas = Image.new("RGB", (max(widths) + 2 * pad + image.width, image.height), "white")
    canvas.paste(image.convert("RGB"), (max(widths) + 2 * pad, 0))
    draw = ImageDraw.Draw(canvas)
    for i, name in enumerate(names):
        draw.text((max(widths) + pad, (i + 0.5) * row), name, fill="black", font=font, anchor="rm")
    return pil_to_tensor(canvas).float() / 255.0


def save_denoising_grid(
    trainer: Any, clean: Tensor, noisy: Tensor, denoised: Tensor, name: str = "denoising"
) -> Path | None:
    """Save the labelled grid as ``<stage folder>/<name>_grid.png`` and log it as ``images/<name>``.

    Rank 0 only (other ranks return None); the stage folder is the trainer's ``default_root_dir``.
    """
    if not trainer.is_global_zero:
        return None
    grid = label_rows(denoising_grid(clean, noisy, denoised), GRID_NAMES)
    path = Path(trainer.default_root_dir) / f"{name}_grid.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, path)
    log_images(trainer.loggers, f"images/{name}", grid, caption=GRID_ROWS)
    return path
