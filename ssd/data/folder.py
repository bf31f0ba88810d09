"""Datamodule for ImageNet-style folders (``root/train/<class>/*``, ``root/val/<class>/*``).

Images too large to keep in memory are decoded and augmented in DataLoader workers. Output is
float in [0,1], NOT normalised (the classifier normalises). Test = the ``val/`` folder (the
ImageNet convention); validation is carved from ``train/``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ssd.data.memory import carve_validation, per_device_batch
from ssd.data.sampling import ShardedSampler, world_and_rank
from ssd.data.sources import _absolute, scan_image_folder

log = logging.getLogger("ssd.data")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class IndexedImageDataset(Dataset):
    """ImageFolder samples -> ``(image, label, index within this split)``."""

    def __init__(self, samples: list[tuple[str, int]], transform: Callable[[Any], Tensor]) -> None:
        from torchvision.datasets.folder import default_loader

        self.samples = samples
        self.transform = transform
        self.loader = default_loader  # PIL, converted to RGB (some ImageNet JPEGs are greyscale)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Tensor, int, int]:
        path, target = self.samples[i]
        try:
            image = self.loader(path)
        except OSError as err:  # e.g. a file cut off after a valid header (the scan reads headers only)
            raise OSError(f"{path}: not a readable image ({err}); fix or remove the file") from err
        return self.transform(image), target, i


def folder_transforms(image_size: int, train: bool) -> Callable[[Any], Tensor]:
    """Train: RandomResizedCrop + flip; eval: Resize(size*256/224) + CenterCrop. -> float [0,1]."""
    from torchvision.transforms import v2

    if train:
        geometry = [v2.RandomResizedCrop(image_size, antialias=True), v2.RandomHorizontalFlip()]
    else:
        geometry = [v2.Resize(int(image_size * 256 / 224), antialias=True), v2.CenterCrop(image_size)]
    return v2.Compose([*geometry, v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])


def _evenly(samples: list[tuple[str, int]], limit: int | None) -> list[tuple[str, int]]:
    """Keep ``limit`` evenly spaced samples (folders are sorted by class: the first N is one class)."""
    if limit is None or limit >= len(samples):
        return samples
    keep = np.linspace(0, len(samples) - 1, num=max(int(limit), 1)).round().astype(int)
    return [samples[i] for i in np.unique(keep)]


class FolderDataModule(L.LightningDataModule):
    """ImageFolder tree -> batches ``(x float [0,1], y, idx)`` through DataLoader workers.

    Args:
        root: the folder holding ``train/`` and ``val/`` (used as given; relative to launch dir).
        image_size: crop size fed to the network.
        batch_size: GLOBAL training batch (split evenly over devices; must divide).
        eval_batch_size: GLOBAL eval batch (default ``batch_size``; split rounding up).
        val_size: int count or float fraction of ``train/`` held out for validation; 0 = none.
        split_seed: seed of that split; seed: data order / worker seeds.
        augment: RandomResizedCrop + flip for training (else the eval transform).
        num_workers: DataLoader workers per device; pin_memory: default when CUDA is available.
        channels_last: return ``x`` in channels_last memory format.
        limit_train / limit_test: keep N evenly spaced images (tiny runs).
        check_images: read every file's header when scanning and skip non-images (with a count in
            the log) instead of crashing mid-epoch; false skips the check for huge trusted folders.
    """

    def __init__(
        self,
        root: str | Path,
        name: str = "imagefolder",
        image_size: int = 224,
        batch_size: int = 256,
        eval_batch_size: int | None = None,
        val_size: int | float = 0.1,
        split_seed: int = 0,
        seed: int = 0,
        augment: bool = True,
        num_workers: int = 4,
        pin_memory: bool | None = None,
        channels_last: bool = False,
        limit_train: int | None = None,
        limit_test: int | None = None,
        check_images: bool = True,
    ) -> None:
        super().__init__()
        self.root = root
        self.name = name
        self.image_size = int(image_size)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.val_size = val_size
        self.split_seed = int(split_seed)
        self.seed = int(seed)
        self.augment = augment
        self.num_workers = int(num_workers)
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.channels_last = channels_last
        self.limit_train = limit_train
        self.limit_test = limit_test
        self.check_images = bool(check_images)
        self.mean: tuple[float, ...] = IMAGENET_MEAN
        self.std: tuple[float, ...] = IMAGENET_STD
        self.classes: list[str] | None = None
        self._splits: dict[str, list[tuple[str, int]]] | None = None
        self._source: str | None = None

    def _ensure_scanned(self) -> None:
        if self._splits is not None:
            return
        root = _absolute(self.root)
        self.classes, samples = scan_image_folder(root, check_images=self.check_images)
        train = _evenly(samples["train"], self.limit_train)
        test = _evenly(samples["val"], self.limit_test)
        train_idx, val_idx = carve_validation(len(train), self.val_size, self.split_seed)
        self._splits = {
            "train": [train[i] for i in train_idx.tolist()],
            "val": [train[i] for i in val_idx.tolist()],
            "test": test,
        }
        if len(train_idx) < self.batch_size:  # else one short step per epoch, silently
            raise ValueError(
                f"data.batch_size={self.batch_size} is not allowed: must be at most the training set: "
                f"{len(train_idx)} images in {root / 'train'} (after limit_train and val_size)"
            )
        self._source = (
            f"image folder {root} ({len(self.classes)} classes; train {len(train_idx)} / "
            f"val {len(val_idx)} carved from train/ / test {len(test)} = val/)"
        )
        log.info("using %s", self._source)

    def setup(self, stage: str | None = None) -> None:
        self._ensure_scanned()

    @property
    def num_classes(self) -> int:
        self._ensure_scanned()
        assert self.classes is not None
        return len(self.classes)

    @property
    def source(self) -> str:
        self._ensure_scanned()
        assert self._source is not None
        return self._source

    @property
    def split_sizes(self) -> dict[str, int]:
        self._ensure_scanned()
        assert self._splits is not None
        return {k: len(v) for k, v in self._splits.items()}

    def _world(self) -> tuple[int, int]:
        if self.trainer is not None:
            return int(self.trainer.world_size), int(self.trainer.global_rank)
        return world_and_rank()

    def _loader(self, split: str, train: bool) -> DataLoader:
        self._ensure_scanned()
        assert self._splits is not None
        samples = self._splits[split]
        world, rank = self._world()
        batch = (
            per_device_batch(self.batch_size, world)
            if train
            else max(1, math.ceil(self.eval_batch_size / world))
        )
        dataset = IndexedImageDataset(
            samples, folder_transforms(self.image_size, train=train and self.augment)
        )
        sampler = ShardedSampler(len(samples), world, rank, shuffle=train, seed=self.seed, pad=train)
        # Per-rank generator: worker augmentation streams differ across ranks and epochs.
        generator = torch.Generator().manual_seed(
            self.seed * 1_000_003 + 7919 * (rank + 1) + (0 if train else 1)
        )
        return DataLoader(
            dataset,
            batch_size=batch,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            generator=generator,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader | list:
        if not self.split_sizes["val"]:
            return []  # val_size=0: no validation
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> tuple[Tensor, Tensor, Tensor]:
        x, y, idx = batch
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.long(), idx.long()
