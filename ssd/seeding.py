"""Every seed of a run, derived in one place: stage seeds, and each random stream of a stage.

A stage trains from its own seed (``stage_seed``): a hash of (run seed, stage identity), where the
identity says what is trained (``strategy.name``, plus ``strategy.generations`` for born-again
chains), not the role it plays. A teacher, its student and a denoiser of one run therefore never
share streams (a student would otherwise start from its teacher's initial weights and replay its
batches, crops and noise), while the teacher of seed s is one cache entry shared by every student
of seed s. ``stage_seeds: shared`` (config) restores one seed for every stage, as an ablation.

Each stream of a stage is ``generator(seed, tag, rank, epoch, device)``: a generator seeded with a
SplitMix64 hash of (tag, seed, rank, epoch). Streams are derived afresh every epoch rather than
saved in checkpoints (which hold rank 0's state only), so a run resumed at epoch k draws exactly
what an uninterrupted run draws, on every rank. The tags in use:

* ``noise``: training noise (``NoisyImageModule.add_noise``), per rank;
* ``augment``: on-device crop and flip (``InMemoryDataModule``), per rank;
* ``order``: the data order of an epoch (``ShardedSampler``), rank 0's for every rank (one permutation);
* ``val-split``: which training images are held out for validation (from ``data.split_seed``);
* ``loader``: DataLoader workers' decoding randomness (``FolderDataModule``), per rank;
* ``global``: torch/numpy/random global RNGs at each epoch (``ssd.callbacks.EpochSeed``);
* ``eval-noise``: the key of fixed evaluation noise (``ssd.noise.fixed``: then one hash per image).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch

STAGE_SEED_MODES = ("independent", "shared")

_MASK64 = (1 << 64) - 1


def splitmix64(z: int) -> int:
    """One step of SplitMix64 (Steele, Lea & Flood 2014) on a Python int: a well-mixed 64-bit bijection."""
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _tag_bits(tag: str) -> int:
    return int.from_bytes(hashlib.sha256(f"ssd-stream:{tag}".encode()).digest()[:8], "little")


def seed_of(seed: int, tag: str, rank: int = 0, epoch: int = 0) -> int:
    """The 63-bit seed of stream ``tag`` for (seed, rank, epoch): nearby inputs give unrelated seeds."""
    h = 0
    for part in (_tag_bits(tag), seed, rank, epoch):
        h = splitmix64(h ^ (int(part) & _MASK64))
    return h >> 1  # 63 bits: Generator.manual_seed and numpy take it everywhere


def generator(
    seed: int, tag: str, rank: int = 0, epoch: int = 0, device: torch.device | str = "cpu"
) -> torch.Generator:
    """A generator on ``device`` for stream ``tag`` of (seed, rank, epoch)."""
    g = torch.Generator(device=torch.device(device))
    g.manual_seed(seed_of(seed, tag, rank, epoch))
    return g


def stage_identity(strategy_cfg: Mapping[str, Any]) -> str:
    """What a stage trains, independent of the role it plays for a later stage."""
    identity = str(strategy_cfg["name"])
    generations = strategy_cfg.get("generations")
    if generations not in (None, 1):
        identity += f"/gen{int(generations)}"
    return identity


def stage_seed(cfg: Mapping[str, Any]) -> int:
    """The seed every random stream of this stage derives from (weights, order, crops, noise)."""
    seed = int(cfg["seed"])
    if cfg["stage_seeds"] == "shared":
        return seed
    digest = hashlib.sha256(f"ssd-stage:{seed}:{stage_identity(cfg['strategy'])}".encode()).digest()
    return int.from_bytes(digest[:4], "little")  # < 2**32: fits every generator and numpy


@contextlib.contextmanager
def as_built_by(seed: int) -> Iterator[None]:
    """Build networks inside this block with the RNG state stage ``seed`` built its own network from.

    ``ssd.fit`` seeds a stage with ``L.seed_everything(seed)`` and then builds its network first, so
    this rebuilds a stage's initial weights (a student starting from its teacher's: ``student_init``).
    The RNG states before the block come back after it: the caller's streams are untouched.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield
