"""Synthetic data: tiny generated, learnable images for tests and smoke runs (no files needed)."""

from __future__ import annotations

import colorsys
from typing import Annotated, Any

import numpy as np

from ssd.config import Range
from ssd.config.annotations import GeneratedImages, ImageSide
from ssd.data.base import PositiveInt
from ssd.data.memory import Arrays, InMemoryDataModule


def make_synthetic(
    num_classes: int, image_size: int, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Learnable images: class = hue + stripe frequency/orientation; jitter in phase, tint, noise.

    Colour survives crops, flips and moderate noise, so a small CNN gets well above chance in
    a few epochs; stripes give the features something spatial to do.
    """
    y = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
    hues = np.array([colorsys.hsv_to_rgb(c / num_classes, 0.75, 0.9) for c in range(num_classes)])
    angle = np.pi * np.arange(num_classes) / num_classes
    freq = 1.0 + (np.arange(num_classes) % 3)
    v, u = np.meshgrid(np.arange(image_size), np.arange(image_size), indexing="ij")
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
    coord = u[None] * np.cos(angle[y])[:, None, None] + v[None] * np.sin(angle[y])[:, None, None]
    stripes = np.sin(2 * np.pi * freq[y][:, None, None] * coord / image_size + phase)
    colour = hues[y] + rng.normal(0, 0.05, size=(n, 3))
    img = 0.5 + 0.35 * (colour[:, None, None, :] - 0.5) + 0.18 * stripes[..., None]
    img = img + rng.normal(0, 0.04, size=img.shape)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8), y


class SyntheticDataModule(InMemoryDataModule):
    """``make_synthetic`` images held in memory like CIFAR.

    Args (the shared settings are those of ``InMemoryDataModule`` and ``ShardedDataModule``):
        num_classes, image_size: of the generated images.
        train, test: image counts generated (``limit_train``/``limit_test`` then keep the first N).
        data_seed: the images; ``seed`` drives only order and augmentation.
        padding: default ``image_size // 8``.
    """

    def __init__(
        self,
        num_classes: PositiveInt,
        image_size: ImageSide,
        train: GeneratedImages,
        test: GeneratedImages,
        data_seed: Annotated[int, Range(ge=0)] = 0,
        *,
        padding: int | None = None,
        **settings: Any,
    ) -> None:
        padding = max(1, image_size // 8) if padding is None else padding
        super().__init__(num_classes=num_classes, image_size=image_size, padding=padding, **settings)
        self.n_train, self.n_test, self.data_seed = int(train), int(test), int(data_seed)

    def declared_train_images(self) -> int:
        return min(self.n_train, self.limit_train or self.n_train)

    def load_arrays(self) -> tuple[Arrays, str]:
        rng = np.random.default_rng(self.data_seed)
        x_train, y_train = make_synthetic(self.num_classes, self.image_size, self.n_train, rng)
        x_test, y_test = make_synthetic(self.num_classes, self.image_size, self.n_test, rng)
        desc = (
            f"synthetic {self.num_classes} classes {self.image_size}x{self.image_size} "
            f"({self.n_train} train / {self.n_test} test, data_seed {self.data_seed})"
        )
        return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}, desc
