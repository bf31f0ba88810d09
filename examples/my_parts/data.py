"""An SVHN-like dataset: images stored channels-first (N, 3, H, W) as SVHN's files hold them, with
its own number of classes.

A datamodule of arrays held in memory derives from ``ssd.data.InMemoryDataModule``: it declares
``num_classes`` and ``image_size`` (known before any data is read, so a checkpoint of the wrong
class count is refused at once) and returns NHWC uint8 arrays from ``load_arrays``. Every other
setting (batch size, validation split, limits, seed) is the base class's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np

from ssd.config import Range
from ssd.data import InMemoryDataModule
from ssd.data.memory import Arrays
from ssd.data.roots import absolute_path

Positive = Annotated[int, Range(gt=0)]


class SVHNLikeDataModule(InMemoryDataModule):
    """``<root>/train.npz`` and ``<root>/test.npz``, each with ``X`` uint8 (N, 3, H, W) and labels ``y``."""

    def __init__(self, root: str, num_classes: Positive, image_size: Positive, **settings: Any) -> None:
        super().__init__(num_classes=num_classes, image_size=image_size, **settings)
        self.root = root

    def load_arrays(self) -> tuple[Arrays, str]:
        folder = absolute_path(self.root)
        arrays: Arrays = {}
        for split in ("train", "test"):
            with np.load(Path(folder) / f"{split}.npz") as f:
                arrays[f"x_{split}"] = np.ascontiguousarray(f["X"].transpose(0, 2, 3, 1))  # NCHW -> NHWC
                arrays[f"y_{split}"] = f["y"].astype(np.int64)
        return arrays, f"SVHN-like arrays in {folder}"
