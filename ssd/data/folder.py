"""Image folders (``root/train/<class>/*``, ``root/val/<class>/*``): the scan and the datamodule.

Images too large to keep in memory are decoded and augmented in DataLoader workers. Output is
float in [0,1], NOT normalised (the classifier normalises). Test = the ``val/`` folder (the
ImageNet convention); validation is carved from ``train/``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ssd import seeding
from ssd.config import Range
from ssd.config.annotations import ImageSide
from ssd.data.base import ShardedDataModule
from ssd.data.protocol import Batch
from ssd.data.roots import absolute_path
from ssd.data.splits import carve_validation

log = logging.getLogger("ssd.data")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------- scan


def unreadable_images(paths: list[str], threads: int = 16) -> list[tuple[str, str]]:
    """(path, reason) of the files PIL cannot identify as an image (header read only: fast).

    A text file named ``.jpg``, an empty or cut-off-at-the-start file fail here; an image cut
    off later still fails at decode time, where ``FolderDataModule`` names the file.
    """
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    def check(path: str) -> tuple[str, str] | None:
        try:
            with Image.open(path) as im:
                if im.width < 1 or im.height < 1:
                    return path, f"empty image {im.width}x{im.height}"
        except Exception as err:  # noqa: BLE001 - PIL raises many types for broken files
            return path, f"{type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}"
        return None

    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(paths)))) as pool:  # I/O bound
        return [bad for bad in pool.map(check, paths, chunksize=256) if bad is not None]


def scan_image_folder(
    root: str | Path, splits: tuple[str, ...] = ("train", "val"), check_images: bool = True
) -> tuple[list[str], dict[str, list[tuple[str, int]]]]:
    """Scan ``root/<split>/<class>/*`` with ImageFolder semantics; fail early and clearly.

    Returns (classes, {split: [(path, class_index), ...]}). Every split must hold the same
    classes and every class folder at least one image, so labels mean the same in train and val.
    ``check_images``: read every file's header and skip the ones that are not images (the log
    says how many and which), instead of crashing mid-epoch.
    """
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    root = absolute_path(root)
    classes: list[str] | None = None
    samples: dict[str, list[tuple[str, int]]] = {}
    for split in splits:
        folder = root / split
        if not folder.is_dir():
            raise ValueError(
                f"image folder split missing: {folder} (expected {root}/{split}/<class>/<images>)"
            )
        try:
            split_classes, class_to_idx = find_classes(str(folder))
        except FileNotFoundError as e:
            raise ValueError(f"{folder}: no class folders ({e})") from None
        if classes is None:
            classes = split_classes
        elif split_classes != classes:
            only_first = sorted(set(classes) - set(split_classes))
            only_here = sorted(set(split_classes) - set(classes))
            raise ValueError(
                f"{folder}: class folders differ from {root / splits[0]}: "
                f"missing here {only_first[:10]}, extra here {only_here[:10]}"
            )
        found = make_dataset(str(folder), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
        if check_images and found:
            bad = unreadable_images([path for path, _ in found])
            if bad:
                skipped = {path for path, _ in bad}
                found = [(path, c) for path, c in found if path not in skipped]
                shown = "; ".join(f"{path} ({why})" for path, why in bad[:5])
                log.warning(
                    "%s: skipping %d file(s) that are not readable images%s: %s",
                    folder,
                    len(bad),
                    " (first 5)" if len(bad) > 5 else "",
                    shown,
                )
        counts = np.bincount([c for _, c in found], minlength=len(split_classes))
        empty = [split_classes[i] for i in np.flatnonzero(counts == 0)]
        if empty:
            raise ValueError(
                f"{folder}: class folder(s) with no images: {[str(folder / c) for c in empty[:10]]}"
            )
        samples[split] = found
    assert classes is not None
    return classes, samples


# --------------------------------------------------------------------------- datamodule


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


class FolderDataModule(ShardedDataModule):
    """ImageFolder tree -> batches ``(x float [0,1], y, idx)`` through DataLoader workers.

    Args (the shared settings are ``ShardedDataModule``'s):
        root: the folder holding ``train/`` and ``val/`` (relative: to the launch directory).
        image_size: crop size fed to the network.
        num_workers: DataLoader workers per device; pin_memory: default when CUDA is available.
        check_images: read every file's header when scanning and skip non-images (with a count in
            the log) instead of crashing mid-epoch; false skips the check for huge trusted folders.
        augment: RandomResizedCrop + flip for training (else the eval transform).
        limit_train / limit_test: keep N evenly spaced images (folders are sorted by class).
    """

    def __init__(
        self,
        root: str | Path,
        image_size: ImageSide,
        num_workers: Annotated[int, Range(ge=0)],
        check_images: bool,
        pin_memory: bool | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(**settings)
        self.root = root
        self.image_size = int(image_size)
        self.num_workers = int(num_workers)
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.check_images = bool(check_images)
        self.mean: tuple[float, ...] = IMAGENET_MEAN
        self.std: tuple[float, ...] = IMAGENET_STD
        self.classes: list[str] | None = None
        self._root: Path | None = None
        self._splits: dict[str, list[tuple[str, int]]] | None = None
        self._source: str | None = None
        self._fingerprint: str | None = None

    def _ensure_scanned(self) -> None:
        if self._splits is not None:
            return
        root = self._root = absolute_path(self.root)
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
        """The class folders of ``train/``: counted from the folder names alone, before any image is read."""
        if self.classes is not None:
            return len(self.classes)
        train = absolute_path(self.root) / "train"
        try:
            return sum(1 for p in train.iterdir() if p.is_dir())
        except OSError as err:
            raise FileNotFoundError(
                f"data.root={str(self.root)!r}: {train} is not a readable folder ({err})"
            ) from None

    @property
    def source(self) -> str:
        self._ensure_scanned()
        assert self._source is not None
        return self._source

    def samples(self, split: str) -> list[tuple[str, int]]:
        """(path, label) of ``train``, ``val`` or ``test``, in loader index order."""
        self._ensure_scanned()
        assert self._splits is not None
        return self._splits[split]

    def split_sizes(self) -> dict[str, int]:
        return {k: len(self.samples(k)) for k in ("train", "val", "test")}

    def fingerprint(self) -> str:
        """A hash of the sorted (path relative to ``root``, label) pairs of the train split and the val labels.

        File names, not file contents: hashing every image of a large folder would cost a full read.
        Moving the folder keeps the hash; adding, removing or relabelling a training image changes it.
        """
        if self._fingerprint is None:
            train = self.samples("train")
            assert self._root is not None
            pairs = sorted((Path(path).relative_to(self._root).as_posix(), label) for path, label in train)
            digest = hashlib.sha256()
            digest.update(f"train:{len(pairs)}".encode())
            for rel, label in pairs:
                digest.update(f"{rel}\0{label}\n".encode())
            val = self.samples("val")
            digest.update(f"val:{len(val)}".encode())
            digest.update(np.array([label for _, label in val], dtype=np.int64).tobytes())
            self._fingerprint = digest.hexdigest()[:20]
        return self._fingerprint

    def make_loader(self, split: str, train: bool) -> DataLoader:
        samples = self.samples(split)
        rank = self.world()[1]
        dataset = IndexedImageDataset(
            samples, folder_transforms(self.image_size, train=train and self.augment)
        )
        # workers' decoding and augmentation streams: ssd.seeding's ``loader`` stream of this rank
        generator = seeding.generator(self.seed, "loader" if train else "loader-eval", rank)
        return DataLoader(
            dataset,
            batch_size=self.local_batch_size(train),
            sampler=self.sampler(len(samples), train),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            generator=generator,
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Batch:
        x, y, idx = batch
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.long(), idx.long()
