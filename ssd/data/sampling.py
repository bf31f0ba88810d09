"""A sampler that shards indices over DDP ranks, built by the datamodule itself.

Training: a seeded permutation per epoch, padded by wrap-around so every rank gets the same
number of samples (as ``DistributedSampler``). Evaluation (``pad=False``): rank r gets
r, r+R, r+2R, ... with no padding, so every sample is evaluated exactly once and a test
accuracy is the same for any number of devices.

It subclasses ``DistributedSampler`` only so that Lightning recognises it as already
distributed and never wraps it again (whatever ``use_distributed_sampler`` says).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch.utils.data.distributed import DistributedSampler


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
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            return torch.randperm(self.n, generator=g).tolist()
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
