"""Pictures of what a denoiser does: clean, noisy and denoised test images side by side.

A number like PSNR hides *how* a denoiser fails (over-smoothing, colour shifts, leftover
noise); a grid of the same images shows it at a glance. Every stage that denoises saves
one in its folder and sends it to the logger (W&B or TensorBoard).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchvision.utils import make_grid, save_image

from ssd.loggers import log_images

#: caption of the grid: what each row is
GRID_ROWS = "rows: clean / noisy / denoised"


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


def save_denoising_grid(
    trainer: Any, clean: Tensor, noisy: Tensor, denoised: Tensor, name: str = "denoising"
) -> Path | None:
    """Save the grid as ``<stage folder>/<name>_grid.png`` and log it as ``images/<name>``.

    Rank 0 only (other ranks return None); the stage folder is the trainer's ``default_root_dir``.
    """
    if not trainer.is_global_zero:
        return None
    grid = denoising_grid(clean, noisy, denoised)
    path = Path(trainer.default_root_dir) / f"{name}_grid.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, path)
    log_images(trainer.loggers, f"images/{name}", grid, caption=GRID_ROWS)
    return path
