"""What every datamodule here shares: its settings, declared once, and loaders it shards itself.

A source family's class declares only where its data comes from (``root``, ``variant``,
``train``, ...) and family defaults it changes; every other setting travels on with
``**settings`` to ``ShardedDataModule.__init__``, the one place they are declared and documented.
The config check follows those ``**settings`` up the class chain
(``ssd.config.signatures.schema_of``), so ``conf/data/*.yaml`` is checked against every key.

Samplers are built here (``ShardedSampler``), so the trainer runs with
``use_distributed_sampler=False`` and evaluation counts each sample exactly once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Annotated

import lightning as L
from torch.utils.data import DataLoader

from ssd.config import Range
from ssd.data.splits import ShardedSampler, ValSize, per_device_batch, per_device_eval_batch, world_and_rank

PositiveInt = Annotated[int, Range(gt=0)]


class ShardedDataModule(L.LightningDataModule, ABC):
    """Train/val/test splits served as ``(x, y, idx)`` batches, each split sharded over devices.

    Settings (keyword-only; the keys every ``conf/data/*.yaml`` sets: their defaults live there):
        name: the dataset's name (logs, results).
        batch_size: GLOBAL training batch (split evenly over devices; must divide).
        eval_batch_size: GLOBAL eval batch (default ``batch_size``; split rounding up).
        val_size: int count or float fraction of the training images held out for validation; 0 = none.
        split_seed: seed of the train/val split (keep fixed across training seeds).
        seed: data order and augmentation seed; the pipeline sets it per stage (``NoisyDataModule``).
        augment: augment training batches (each family says how).
        channels_last: return ``x`` in channels_last memory format.
        limit_train / limit_test: keep only N images (tiny runs; each family says which N).
    """

    def __init__(
        self,
        *,
        name: str,
        batch_size: PositiveInt,
        eval_batch_size: PositiveInt | None,
        val_size: ValSize,
        split_seed: Annotated[int, Range(ge=0)],
        seed: Annotated[int, Range(ge=0)],
        augment: bool,
        channels_last: bool,
        limit_train: PositiveInt | None,
        limit_test: PositiveInt | None,
    ) -> None:
        super().__init__()
        self.name = name
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.val_size = val_size
        self.split_seed = int(split_seed)
        self.seed = int(seed)
        self.augment = augment
        self.channels_last = channels_last
        self.limit_train = limit_train
        self.limit_test = limit_test

    # ------------------------------------------------------------------ each family provides

    @abstractmethod
    def split_sizes(self) -> dict[str, int]:
        """Images in ``train``, ``val`` and ``test``."""

    @abstractmethod
    def fingerprint(self) -> str:
        """A content hash of what training sees (see ``NoisyDataModule``)."""

    @abstractmethod
    def make_loader(self, split: str, train: bool) -> DataLoader:
        """The loader of one split for this rank (use ``local_batch_size`` and ``sampler``)."""

    # ------------------------------------------------------------------ shared

    def declared_train_images(self) -> int | None:
        """``limit_train`` where set: a bound known before the data is read (a family may know more)."""
        return self.limit_train

    def world(self) -> tuple[int, int]:
        """(world size, global rank): the trainer's when attached, else torch.distributed's."""
        if self.trainer is not None:
            return int(self.trainer.world_size), int(self.trainer.global_rank)
        return world_and_rank()

    def local_batch_size(self, train: bool) -> int:
        """This device's share of the global training or evaluation batch."""
        world = self.world()[0]
        if train:
            return per_device_batch(self.batch_size, world)
        return per_device_eval_batch(self.eval_batch_size, world)

    def sampler(self, n: int, train: bool) -> ShardedSampler:
        """This rank's indices of a split of ``n``: shuffled per epoch (from ``seed``) and padded for training."""
        world, rank = self.world()
        return ShardedSampler(n, world, rank, shuffle=train, seed=self.seed, pad=train)

    def train_dataloader(self) -> DataLoader:
        return self.make_loader("train", train=True)

    def val_dataloader(self) -> DataLoader | list:
        if not self.split_sizes()["val"]:
            return []  # val_size=0: no validation
        return self.make_loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self.make_loader("test", train=False)
