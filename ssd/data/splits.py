"""How a dataset is divided: train/val carved from the training files, then each split over devices.

Validation: a seeded permutation of the training set (``split_seed``, fixed across training seeds)
holds out ``val_size`` images. Devices: the GLOBAL batch size is split evenly over them, and
``ShardedSampler`` gives each rank its share of a split's indices.

``ShardedSampler`` for training: a seeded permutation per epoch, padded by wrap-around so every
rank gets the same number of samples (as ``DistributedSampler``). Evaluation (``pad=False``): rank
r gets r, r+R, r+2R, ... with no padding, so every sample is evaluated exactly once and a test
accuracy is the same for any number of devices. It subclasses ``DistributedSampler`` only so that
Lightning recognises it as already distributed and never wraps it again (whatever
``use_distributed_sampler`` says).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Annotated

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data.distributed import DistributedSampler

from ssd.config import Range
from ssd.config.errors import ConfigError
from ssd.seeding import generator

#: ``data.val_size``: a fraction in [0, 1) of the training images, or a count >= 0
ValSize = Annotated[float, Range(ge=0, lt=1)] | Annotated[int, Range(ge=0)]


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


def check_batch_fits(batch_size: int, n_images: int, val_size: int | float, source: str) -> None:
    """``data.batch_size`` is at most the training images left after the validation split.

    A larger batch would silently become one short step per epoch. ``n_images``: the images
    before the validation split (a datamodule's train + val sizes, or a config bound on them);
    ``source``: where that number comes from, for the message.
    """
    try:
        n_val = val_count(n_images, val_size)
    except (ValueError, TypeError):
        return  # the val_size itself is reported elsewhere
    n_train = n_images - n_val
    if n_train < batch_size:
        raise ConfigError(
            f"data.batch_size={batch_size!r} is not allowed: must be at most the training set: {n_train} images "
            f"({source}={n_images}, minus {n_val} for validation): a larger batch would be one short step per epoch"
        )


def check_limits_met(datamodule: object, splits: dict[str, int]) -> None:
    """``data.limit_train`` / ``data.limit_test`` ask for no more images than the data has (read: ``splits``):
    a request the data cannot meet is an error, never silently a smaller run."""
    for key, have, kind in (
        ("limit_train", splits["train"] + splits["val"], "training"),
        ("limit_test", splits["test"], "test"),
    ):
        limit = getattr(datamodule, key, None)
        if limit is not None and int(limit) > have:
            raise ConfigError(
                f"data.{key}={limit} is not allowed: the data has only {have} {kind} images; must be at most "
                f"{have}, or null for all of them"
            )


def carve_validation(n: int, val_size: int | float, split_seed: int) -> tuple[Tensor, Tensor]:
    """Deterministic (train_indices, val_indices), each sorted, from a seeded permutation."""
    n_val = val_count(n, val_size)
    perm = torch.randperm(n, generator=generator(int(split_seed), "val-split"))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def per_device_batch(batch_size: int, world_size: int, what: str = "data.batch_size") -> int:
    """The global training batch size split evenly over devices."""
    if batch_size < 1 or batch_size % world_size:
        raise ValueError(
            f"{what}={batch_size} is the GLOBAL batch size and must be a positive multiple of the "
            f"number of devices ({world_size}); choose e.g. {max(1, batch_size // world_size) * world_size}"
        )
    return batch_size // world_size


def per_device_eval_batch(batch_size: int, world_size: int) -> int:
    """The global evaluation batch size over devices, rounding up (any size is allowed)."""
    return max(1, math.ceil(batch_size / world_size))


def world_and_rank(num_replicas: int | None = None, rank: int | None = None) -> tuple[int, int]:
    """Explicit values win; else torch.distributed when initialised; else (1, 0)."""
    initialised = dist.is_available() and dist.is_initialized()
    if num_replicas is None:
        num_replicas = dist.get_world_size() if initialised else 1
    if rank is None:
        rank = dist.get_rank() if initialised else 0
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ValueError(f"invalid rank {rank} for num_replicas {num_replicas}")
    return num_replicas, rank


class ShardedSampler(DistributedSampler):
    """Indices ``0..n-1`` of one split, this rank's share of them.

    Args:
        n: split size.
        num_replicas, rank: default from torch.distributed when initialised, else 1 and 0.
        shuffle: new seeded permutation each epoch (call ``set_epoch``; Lightning does).
        seed: permutation seed; must be the same on every rank.
        drop_last: drop the tail so the split divides evenly instead of padding (train only).
        pad: pad by wrap-around to equal shard lengths; default ``shuffle`` (train yes, eval no).
    """

    def __init__(
        self,
        n: int,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        pad: bool | None = None,
    ) -> None:
        # DistributedSampler.__init__ is skipped on purpose: it needs a dataset and an initialised
        # process group; the attributes it would set are all set here.
        self.n = int(n)
        self.num_replicas, self.rank = world_and_rank(num_replicas, rank)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.pad = shuffle if pad is None else pad
        self.epoch = 0
        r = self.num_replicas
        if drop_last:
            self.total_size = (self.n // r) * r
            self.num_samples = self.total_size // r
        elif self.pad:
            self.num_samples = math.ceil(self.n / r)
            self.total_size = self.num_samples * r
        else:
            self.total_size = self.n
            self.num_samples = len(range(self.rank, self.n, r))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _order(self) -> list[int]:
        if self.shuffle:  # one permutation for every rank (rank 0's stream), a new one each epoch
            return torch.randperm(self.n, generator=generator(self.seed, "order", 0, self.epoch)).tolist()
        return list(range(self.n))

    def __iter__(self) -> Iterator[int]:
        order = self._order()
        if self.drop_last:
            order = order[: self.total_size]
        elif self.pad and self.n > 0 and self.total_size > self.n:
            extra = self.total_size - self.n
            order = order + (order * math.ceil(extra / self.n))[:extra]
        return iter(order[self.rank : len(order) : self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples
