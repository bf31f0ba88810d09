"""``ssd.viz``: image grids name their rows and are large enough to see."""

from __future__ import annotations

import pytest
import torch

from ssd.viz import GRID_NAMES, denoising_grid, label_rows


def test_label_rows_enlarges_the_grid_and_writes_each_row_name_beside_its_row() -> None:
    x = torch.rand(10, 3, 8, 8)
    grid = denoising_grid(x, x * 0.5, x * 0.25, max_images=4)  # 32 x 42: three rows of 8px images
    out = label_rows(grid, GRID_NAMES, min_row_pixels=60)
    scale = 6  # ceil(60 * 3 rows / 32 px)
    height, width = grid.shape[1] * scale, grid.shape[2] * scale
    assert out.shape[0] == 3 and out.shape[1] == height and out.shape[2] > width
    margin = out.shape[2] - width
    # the images, enlarged pixel by pixel (nearest neighbour), on the right
    enlarged = grid.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    assert torch.allclose(out[:, :, margin:], enlarged, atol=1 / 255)
    # a name in the left margin of every row band, nothing dark between the bands' text lines
    ink = (out[:, :, :margin] < 0.5).any(0)  # H x margin: dark pixels
    bands = ink.reshape(3, height // 3, margin).any(2).any(1)
    assert bands.tolist() == [True, True, True]
    assert not ink[:, :2].any()  # the text keeps off the edge


def test_label_rows_rejects_a_grid_without_names() -> None:
    with pytest.raises(ValueError, match="row names"):
        label_rows(torch.rand(3, 10, 10), [])
