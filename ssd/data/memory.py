"""Datamodules whose images fit in memory (CIFAR, synthetic): uint8 tensors, device augmentation.

Each split is ONE uint8 NCHW tensor. A batch is one fancy-index op (``__getitems__``), the
DataLoader does no per-sample work, and crop/flip runs on the training device in
``on_after_batch_transfer``. Samplers are built here (``ShardedSampler``), so the trainer runs
with ``use_distributed_sampler=False`` and evaluation counts each sample exactly once.
"""

from __future__ import annotations

import colorsys
import hashlib
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ssd.data.augment import random_crop_flip, to_unit_float
from ssd.data.sampling import ShardedSampler, world_and_rank
from ssd.data.sources import CIFAR_NUM_CLASSES, Arrays, load_cifar_arrays, resolve_data_root, validate_arrays

log = logging.getLogger("ssd.data")

Batch = tuple[Tensor, Tensor, Tensor]

CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


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
        if (
            self.x.device.type == "cuda"
        ):  # a GPU-resident split: only the indices travel, pinned (no stream sync)
            idx = idx.pin_memory().to(self.x.device, non_blocking=True)
        return self.x[idx], self.y[idx], idx


def passthrough_collate(batch: Batch) -> Batch:
    """The dataset already returns a collated batch."""
    return batch


def val_count(n: int, val_size: int | float) -> int:
    """Validation count from an int count or a float fraction in [0, 1) of ``n``."""
    if isinstance(val_size, bool) or not isinstance(val_size, int | float):
        raise TypeError(f"data.val_size must be an int count or a float fraction, got {val_size!r}")
    if isinstance(val_size, float) and val_size < 1:
        if val_size < 0:
            raise ValueError(f"data.val_size={val_size}: a fraction must be in [0, 1)")
        n_val = round(val_size * n)
    elif isinstance(val_size, float) and not val_size.is_integer():
        raise ValueError(f"data.val_size={val_size}: use a fraction in [0, 1) or an integer count")
    else:
        n_val = int(val_size)
    if not 0 <= n_val < n:
        raise ValueError(
            f"data.val_size={val_size} gives {n_val} validation images out of {n} training images"
        )
    return n_val


def carve_validation(n: int, val_size: int | float, split_seed: int) -> tuple[Tensor, Tensor]:
    """Deterministic (train_indices, val_indices), each sorted, from a seeded permutation."""
    n_val = val_count(n, val_size)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(split_seed)))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def per_device_batch(batch_size: int, world_size: int, what: str = "data.batch_size") -> int:
    """The global batch size split evenly over devices."""
    if batch_size < 1 or batch_size % world_size:
        raise ValueError(
            f"{what}={batch_size} is the GLOBAL batch size and must be a positive multiple of the "
            f"number of devices ({world_size}); choose e.g. {max(1, batch_size // world_size) * world_size}"
        )
    return batch_size // world_size


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


class InMemoryDataModule(L.LightningDataModule):
    """Train/val/test held as uint8 NCHW tensors; batches ``(x, y, idx)`` augmented on the device.

    Args:
        arrays: ``x_train``/``y_train``/``x_test``/``y_test`` (uint8 NHWC, int labels); subclasses
            load their own by overriding ``_load``.
        num_classes: default ``max(label) + 1``.
        batch_size: GLOBAL training batch (split evenly over devices; must divide).
        eval_batch_size: GLOBAL eval batch (default ``batch_size``; split rounding up).
        val_size: int count or float fraction of train held out for validation; 0 = none.
        split_seed: seed of the train/val split (keep fixed across training seeds).
        seed: data order and augmentation seed.
        augment: random crop (``padding``, zeros) + horizontal flip (``flip``) when training.
        channels_last: return ``x`` in channels_last memory format.
        limit_train / limit_test: keep only the first N images (tiny runs).
        device_resident: keep each split on the training device once (batches are gathered there, nothing
            is copied per step); ``auto``: on CUDA devices.
    """

    def __init__(
        self,
        arrays: Arrays | None = None,
        num_classes: int | None = None,
        name: str = "arrays",
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        val_size: int | float = 0.1,
        split_seed: int = 0,
        seed: int = 0,
        augment: bool = True,
        padding: int = 4,
        flip: bool = True,
        channels_last: bool = False,
        limit_train: int | None = None,
        limit_test: int | None = None,
        device_resident: bool | str = "auto",
    ) -> None:
        super().__init__()
        if device_resident not in ("auto", True, False):
            raise ValueError(f"data.device_resident={device_resident!r}; expected auto, true or false")
        self.device_resident = device_resident
        self._resident: dict[tuple[str, str], tuple[Tensor, Tensor]] = {}
        self.name = name
        self._arrays = arrays
        self._num_classes = num_classes
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.val_size = val_size
        self.split_seed = int(split_seed)
        self.seed = int(seed)
        self.augment = augment
        self.padding = int(padding)
        self.flip = flip
        self.channels_last = channels_last
        self.limit_train = limit_train
        self.limit_test = limit_test
        self._splits: dict[str, tuple[Tensor, Tensor]] | None = None
        self._source: str | None = None
        self._stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None
        self._image_size: int | None = None
        self._generators: dict[tuple[str, int], torch.Generator] = {}
        self._fingerprint: str | None = None

    # ------------------------------------------------------------------ loading

    def _load(self) -> tuple[Arrays, str]:
        """Return (arrays, source description); subclasses find their data here."""
        if self._arrays is None:
            raise ValueError(f"{type(self).__name__}: no arrays given and no _load override")
        return self._arrays, "arrays given in memory"

    def _ensure_loaded(self) -> None:
        if self._splits is not None:
            return
        arrays, source = self._load()
        if self._num_classes is None:
            self._num_classes = int(max(arrays["y_train"].max(), arrays["y_test"].max())) + 1
        arrays = validate_arrays(arrays, self._num_classes, source, image_size=None)
        x_train, y_train = arrays["x_train"][: self.limit_train], arrays["y_train"][: self.limit_train]
        x_test, y_test = arrays["x_test"][: self.limit_test], arrays["y_test"][: self.limit_test]
        if len(y_train) == 0 or len(y_test) == 0:
            raise ValueError(f"{source}: empty split after limits (train {len(y_train)}, test {len(y_test)})")
        if self._stats is None:
            self._stats = channel_stats(x_train)
        self._image_size = int(x_train.shape[1])

        def nchw(x: np.ndarray) -> Tensor:
            return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).contiguous()

        xt, yt = nchw(x_train), torch.from_numpy(y_train)
        train_idx, val_idx = carve_validation(len(yt), self.val_size, self.split_seed)
        self._splits = {
            "train": (xt[train_idx], yt[train_idx]),
            "val": (xt[val_idx], yt[val_idx]),
            "test": (nchw(x_test), torch.from_numpy(y_test)),
        }
        limits = (
            ""
            if self.limit_train is None and self.limit_test is None
            else f", limits {self.limit_train}/{self.limit_test}"
        )
        self._source = source + limits
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
        if self._num_classes is None:
            self._ensure_loaded()
        assert self._num_classes is not None
        return self._num_classes

    @property
    def image_size(self) -> int:
        if self._image_size is None:
            self._ensure_loaded()
        assert self._image_size is not None
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

    @property
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

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is not None:
            return int(trainer.world_size), int(trainer.global_rank)
        return world_and_rank()

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

    def _loader(self, split: str, train: bool) -> DataLoader:
        x, y = self._resident_split(split)
        world, rank = self._world()
        if train:
            batch = per_device_batch(self.batch_size, world)
        else:
            batch = max(1, math.ceil(self.eval_batch_size / world))
        sampler = ShardedSampler(len(y), world, rank, shuffle=train, seed=self.seed, pad=train)
        return DataLoader(
            BatchTensorDataset(x, y),
            batch_size=batch,
            sampler=sampler,
            collate_fn=passthrough_collate,
            num_workers=0,
        )

    def train_dataloader(self) -> DataLoader:
        self._generators.clear()  # a new fit (stage) starts its augmentation streams afresh
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader | list:
        if len(self.split("val")[1]) == 0:
            return []  # val_size=0: no validation
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    # ------------------------------------------------------------------ on device

    def _generator(self, device: torch.device) -> torch.Generator:
        """One augmentation stream per device and training epoch, derived from (seed, global rank, epoch).

        Derived afresh every epoch instead of saved in checkpoints: a run resumed at epoch k draws
        exactly what an uninterrupted run draws, on every rank (a checkpoint holds rank 0's state only).
        """
        epoch = int(getattr(self.trainer, "current_epoch", 0) or 0)
        key = (str(device), epoch)
        if key not in self._generators:
            self._generators.clear()
            rank = self._world()[1]
            g = torch.Generator(device=device)
            g.manual_seed(
                int(np.random.SeedSequence([self.seed, rank, epoch]).generate_state(1, np.uint64)[0] >> 1)
            )
            self._generators[key] = g
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
                x, self.padding, self.flip, generator=self._generator(x.device), memory_format=fmt
            )
        else:
            x = to_unit_float(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.long(), idx.long()


class CIFARDataModule(InMemoryDataModule):
    """CIFAR-10/100 from wherever ``ssd.data.sources.load_cifar_arrays`` finds it.

    Args (besides those of ``InMemoryDataModule``):
        name: ``cifar10`` or ``cifar100``.
        root: data root (``$SSD_DATA_DIR`` overrides it).
        variant: ``auto`` | ``full`` | ``subset`` (see ``ssd/data/sources.py``).
        download: torchvision download into ``root`` when nothing local is found.
        cache_dir: where decoded WebP mosaics are cached as npz (None: no cache).
    """

    def __init__(
        self,
        name: str = "cifar10",
        root: str | Path | None = None,
        variant: str = "auto",
        download: bool = False,
        cache_dir: str | Path | None = None,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        val_size: int | float = 0.1,
        split_seed: int = 0,
        seed: int = 0,
        augment: bool = True,
        padding: int = 4,
        channels_last: bool = False,
        limit_train: int | None = None,
        limit_test: int | None = None,
        device_resident: bool | str = "auto",
    ) -> None:
        if name not in CIFAR_NUM_CLASSES:
            raise ValueError(f"data.name={name!r}; expected one of {sorted(CIFAR_NUM_CLASSES)}")
        super().__init__(
            num_classes=CIFAR_NUM_CLASSES[name],
            name=name,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            val_size=val_size,
            split_seed=split_seed,
            seed=seed,
            augment=augment,
            padding=padding,
            channels_last=channels_last,
            limit_train=limit_train,
            limit_test=limit_test,
            device_resident=device_resident,
        )
        self.root, self.variant, self.download, self.cache_dir = root, variant, download, cache_dir
        self._stats = CIFAR_STATS[name]  # the usual constants: known before any data is read
        self._image_size = 32

    def _load(self) -> tuple[Arrays, str]:
        return load_cifar_arrays(
            self.name,
            resolve_data_root(self.root),
            download=self.download,
            variant=self.variant,
            cache_dir=self.cache_dir,
        )


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
    """Tiny generated, learnable data for tests and smoke runs (no files needed).

    Args (besides those of ``InMemoryDataModule``): ``num_classes``, ``image_size``, ``train`` and
    ``test`` image counts, ``data_seed`` (the images; ``seed`` only drives order/augmentation),
    ``padding`` (default ``image_size // 8``).
    """

    def __init__(
        self,
        num_classes: int = 4,
        image_size: int = 16,
        train: int = 256,
        test: int = 128,
        seed: int = 0,
        data_seed: int = 0,
        name: str = "synthetic",
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        val_size: int | float = 0.1,
        split_seed: int = 0,
        augment: bool = True,
        padding: int | None = None,
        channels_last: bool = False,
        limit_train: int | None = None,
        limit_test: int | None = None,
        device_resident: bool | str = "auto",
    ) -> None:
        super().__init__(
            num_classes=num_classes,
            name=name,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            val_size=val_size,
            split_seed=split_seed,
            seed=seed,
            augment=augment,
            padding=max(1, image_size // 8) if padding is None else padding,
            channels_last=channels_last,
            limit_train=limit_train,
            limit_test=limit_test,
            device_resident=device_resident,
        )
        self.n_train, self.n_test, self.data_seed = int(train), int(test), int(data_seed)
        self._image_size = int(image_size)

    def _load(self) -> tuple[Arrays, str]:
        rng = np.random.default_rng(self.data_seed)
        x_train, y_train = make_synthetic(self.num_classes, self.image_size, self.n_train, rng)
        x_test, y_test = make_synthetic(self.num_classes, self.image_size, self.n_test, rng)
        desc = (
            f"synthetic {self.num_classes} classes {self.image_size}x{self.image_size} "
            f"({self.n_train} train / {self.n_test} test, data_seed {self.data_seed})"
        )
        return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}, desc
