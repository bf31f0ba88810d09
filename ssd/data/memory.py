"""The in-memory base (CIFAR, synthetic, arrays given): uint8 tensors, device augmentation.

Each split is ONE uint8 NCHW tensor. A batch is one fancy-index op (``__getitems__``), the
DataLoader does no per-sample work, and crop/flip runs on the training device in
``on_after_batch_transfer``.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ssd.data.augment import random_crop_flip, to_unit_float
from ssd.data.base import ShardedDataModule
from ssd.data.protocol import Batch
from ssd.data.splits import carve_validation
from ssd.seeding import generator

log = logging.getLogger("ssd.data")

ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")

#: ``x_train``/``x_test`` uint8 (N, H, W, 3), ``y_train``/``y_test`` integer labels
Arrays = dict[str, np.ndarray]


def validate_arrays(arrays: Arrays, num_classes: int, where: str, image_size: int | None = 32) -> Arrays:
    """Check dtypes/shapes/labels of decoded arrays; return them with int64 labels.

    Errors name ``where`` (the file or folder) so a broken copy is easy to find.
    """
    missing = [k for k in ARRAY_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"{where}: missing arrays {missing} (expected {list(ARRAY_KEYS)})")
    out: Arrays = {}
    for split in ("train", "test"):
        x, y = np.asarray(arrays[f"x_{split}"]), np.asarray(arrays[f"y_{split}"])
        if x.dtype != np.uint8:
            raise ValueError(f"{where}: x_{split} has dtype {x.dtype}, expected uint8 images in 0..255")
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"{where}: x_{split} has shape {x.shape}, expected (N, H, W, 3) (HWC, RGB)")
        if image_size is not None and x.shape[1:3] != (image_size, image_size):
            raise ValueError(
                f"{where}: x_{split} images are {x.shape[1]}x{x.shape[2]}, expected {image_size}x{image_size}"
            )
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(
                f"{where}: y_{split} has shape {y.shape} dtype {y.dtype}, expected 1-d integer labels"
            )
        if len(y) != len(x):
            raise ValueError(f"{where}: {len(x)} images in x_{split} but {len(y)} labels in y_{split}")
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(
                f"{where}: y_{split} has labels in [{y.min()}, {y.max()}], expected 0..{num_classes - 1}"
            )
        out[f"x_{split}"] = np.ascontiguousarray(x)
        out[f"y_{split}"] = y.astype(np.int64)
    return out


def channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean/std in [0,1] of uint8 NHWC images, via histograms (no float copy)."""
    levels = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for c in range(x.shape[-1]):
        h = np.bincount(np.ascontiguousarray(x[..., c]).ravel(), minlength=256).astype(np.float64)
        m = float((h * levels).sum() / h.sum())
        means.append(m)
        stds.append(float(math.sqrt(max((h * (levels - m) ** 2).sum() / h.sum(), 0.0))))
    return tuple(means), tuple(stds)


class BatchTensorDataset(Dataset):
    """(x uint8 NCHW, y int64) whose ``__getitems__`` returns a whole batch ``(x, y, idx)``."""

    def __init__(self, x: Tensor, y: Tensor) -> None:
        if len(x) != len(y):
            raise ValueError(f"{len(x)} images but {len(y)} labels")
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> Batch:
        return self.x[i], self.y[i], torch.tensor(i, dtype=torch.int64)

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        idx = torch.as_tensor(indices, dtype=torch.int64)
        if self.x.device.type == "cuda":  # a GPU-resident split: only the indices travel, pinned (no sync)
            idx = idx.pin_memory().to(self.x.device, non_blocking=True)
        return self.x[idx], self.y[idx], idx


def passthrough_collate(batch: Batch) -> Batch:
    """The dataset already returns a collated batch."""
    return batch


class InMemoryDataModule(ShardedDataModule):
    """Train/val/test held as uint8 NCHW tensors; batches ``(x, y, idx)`` augmented on the device.

    Args (the shared settings are ``ShardedDataModule``'s):
        arrays: ``x_train``/``y_train``/``x_test``/``y_test`` (uint8 NHWC, int labels); subclasses
            find their own by overriding ``load_arrays``.
        num_classes, image_size: what the data holds, known before it is read (the datamodule
            contract); read from ``arrays`` when they are given, else declared by the subclass.
        padding, flip, pad_mode: training augmentation: a random crop of the image padded by ``padding``
            pixels (``pad_mode``: ``zeros`` or ``reflect``, see ``ssd.data.augment``), horizontal flip.
        device_resident: keep each split on the training device once (batches are gathered there, nothing
            is copied per step); ``auto``: on CUDA devices.
        limit_train / limit_test: keep the first N images.
    """

    def __init__(
        self,
        arrays: Arrays | None = None,
        num_classes: int | None = None,
        image_size: int | None = None,
        *,
        name: str,
        pad_mode: Literal["zeros", "reflect"],
        padding: int = 4,
        flip: bool = True,
        device_resident: bool | str = "auto",
        **settings: Any,
    ) -> None:
        super().__init__(name=name, **settings)
        if device_resident not in ("auto", True, False):
            raise ValueError(f"data.device_resident={device_resident!r}; expected auto, true or false")
        self.device_resident = device_resident
        self.padding = int(padding)
        self.flip = flip
        self.pad_mode = pad_mode
        if arrays is not None:
            num_classes = num_classes or int(max(arrays["y_train"].max(), arrays["y_test"].max())) + 1
            image_size = image_size or int(np.asarray(arrays["x_train"]).shape[1])
        if num_classes is None or image_size is None:
            raise TypeError(
                f"{type(self).__name__} must declare num_classes and image_size (known before any data is "
                "read: checkpoint checks and networks are built from them)"
            )
        self._arrays = arrays
        self._num_classes = int(num_classes)
        self._image_size = int(image_size)
        self._resident: dict[tuple[str, str], tuple[Tensor, Tensor]] = {}
        self._splits: dict[str, tuple[Tensor, Tensor]] | None = None
        self._source: str | None = None
        self._stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None
        self._generators: dict[tuple[str, int], torch.Generator] = {}
        self._fingerprint: str | None = None

    # ------------------------------------------------------------------ loading

    def load_arrays(self) -> tuple[Arrays, str]:
        """Return (arrays, source description); subclasses find their data here."""
        if self._arrays is None:
            raise ValueError(f"{type(self).__name__}: no arrays given and no load_arrays override")
        return self._arrays, "arrays given in memory"

    def _ensure_loaded(self) -> None:
        if self._splits is not None:
            return
        arrays, source = self.load_arrays()
        arrays = validate_arrays(arrays, self._num_classes, source, image_size=self._image_size)
        x_train, y_train = arrays["x_train"][: self.limit_train], arrays["y_train"][: self.limit_train]
        x_test, y_test = arrays["x_test"][: self.limit_test], arrays["y_test"][: self.limit_test]
        if len(y_train) == 0 or len(y_test) == 0:
            raise ValueError(f"{source}: empty split after limits (train {len(y_train)}, test {len(y_test)})")
        if self._stats is None:
            self._stats = channel_stats(x_train)

        def nchw(x: np.ndarray) -> Tensor:
            return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).contiguous()

        xt, yt = nchw(x_train), torch.from_numpy(y_train)
        train_idx, val_idx = carve_validation(len(yt), self.val_size, self.split_seed)
        self._splits = {
            "train": (xt[train_idx], yt[train_idx]),
            "val": (xt[val_idx], yt[val_idx]),
            "test": (nchw(x_test), torch.from_numpy(y_test)),
        }
        limited = self.limit_train is not None or self.limit_test is not None
        self._source = source + (f", limits {self.limit_train}/{self.limit_test}" if limited else "")
        log.info(
            "%s split into train %d / val %d / test %d (split_seed %d)",
            self.name,
            len(train_idx),
            len(val_idx),
            len(y_test),
            self.split_seed,
        )

    def prepare_data(self) -> None:
        self._ensure_loaded()

    def setup(self, stage: str | None = None) -> None:
        self._ensure_loaded()

    # ------------------------------------------------------------------ info

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def image_size(self) -> int:
        return self._image_size

    @property
    def mean(self) -> tuple[float, ...]:
        if self._stats is None:
            self._ensure_loaded()
        assert self._stats is not None
        return self._stats[0]

    @property
    def std(self) -> tuple[float, ...]:
        if self._stats is None:
            self._ensure_loaded()
        assert self._stats is not None
        return self._stats[1]

    @property
    def source(self) -> str:
        self._ensure_loaded()
        assert self._source is not None
        return self._source

    def split(self, name: str) -> tuple[Tensor, Tensor]:
        """(x uint8 NCHW, y int64) of ``train``, ``val`` or ``test``."""
        self._ensure_loaded()
        assert self._splits is not None
        return self._splits[name]

    def split_sizes(self) -> dict[str, int]:
        return {k: len(self.split(k)[1]) for k in ("train", "val", "test")}

    def fingerprint(self) -> str:
        """A content hash of the images and labels training sees (train split) and of the val labels.

        Part of every stage-cache key: a network trained on one set of images is never served to
        a run on another, whatever config found them (``variant=auto``, another ``root``).
        """
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for split in ("train", "val"):
                x, y = self.split(split)
                digest.update(f"{split}:{tuple(x.shape)}".encode())
                digest.update(x.cpu().numpy().tobytes() if split == "train" else b"")
                digest.update(y.cpu().numpy().astype("int64").tobytes())
            self._fingerprint = digest.hexdigest()[:20]
        return self._fingerprint

    # ------------------------------------------------------------------ loaders

    def _resident_split(self, split: str) -> tuple[Tensor, Tensor]:
        """The split where batches are gathered: on the training device if resident there (copied once)."""
        x, y = self.split(split)
        device = (
            getattr(getattr(self.trainer, "strategy", None), "root_device", None)
            if self.device_resident
            else None
        )
        if device is None or (self.device_resident == "auto" and device.type != "cuda"):
            return x, y
        key = (split, str(device))
        if key not in self._resident:
            self._resident[key] = (x.to(device), y.to(device))
        return self._resident[key]

    def make_loader(self, split: str, train: bool) -> DataLoader:
        x, y = self._resident_split(split)
        return DataLoader(
            BatchTensorDataset(x, y),
            batch_size=self.local_batch_size(train),
            sampler=self.sampler(len(y), train),
            collate_fn=passthrough_collate,
            num_workers=0,
        )

    def train_dataloader(self) -> DataLoader:
        self._generators.clear()  # a new fit (stage) starts its augmentation streams afresh
        return super().train_dataloader()

    # ------------------------------------------------------------------ on device

    def _generator(self, device: torch.device) -> torch.Generator:
        """One augmentation stream per device and training epoch: ``ssd.seeding``'s ``augment`` stream
        of (seed, global rank, epoch), derived afresh every epoch (so a resumed run draws the same)."""
        epoch = int(getattr(self.trainer, "current_epoch", 0) or 0)
        key = (str(device), epoch)
        if key not in self._generators:
            self._generators.clear()
            self._generators[key] = generator(self.seed, "augment", self.world()[1], epoch, device)
        return self._generators[key]

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        training = self.trainer is not None and self.trainer.training
        return self.device_batch(batch, augment=training and self.augment)

    def device_batch(self, batch: Batch, augment: bool) -> Batch:
        """A uint8 batch already on its device -> ``(x float [0,1], y, idx)``, crop/flipped if ``augment``."""
        x, y, idx = batch
        if augment:
            fmt = torch.channels_last if self.channels_last else torch.contiguous_format
            x = random_crop_flip(
                x,
                self.padding,
                self.flip,
                pad_mode=self.pad_mode,
                generator=self._generator(x.device),
                memory_format=fmt,
            )
        else:
            x = to_unit_float(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.long(), idx.long()
