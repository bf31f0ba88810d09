"""Shared pytest fixtures. Each section belongs to one part of the code; add yours below."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

# --------------------------------------------------------------------------- data (ssd/data)


def write_cifar_like_npz(
    path: Path, n_train: int = 60, n_test: int = 20, num_classes: int = 10, seed: int = 0
) -> Path:
    """A CIFAR-shaped array file: uint8 (N, 32, 32, 3) images, int64 labels in 0..num_classes-1."""
    rng = np.random.default_rng(seed)
    np.savez(
        path,
        x_train=rng.integers(0, 256, size=(n_train, 32, 32, 3), dtype=np.uint8),
        y_train=(np.arange(n_train) % num_classes).astype(np.int64),
        x_test=rng.integers(0, 256, size=(n_test, 32, 32, 3), dtype=np.uint8),
        y_test=(np.arange(n_test) % num_classes).astype(np.int64),
    )
    return path


@pytest.fixture
def tiny_npz(tmp_path: Path) -> Path:
    """``<tmp>/data/cifar10.npz``: 60 train + 20 test random CIFAR-shaped images, 10 classes.

    Its parent folder works as ``data.root`` for ``CIFARDataModule(name="cifar10")``.
    """
    root = tmp_path / "data"
    root.mkdir()
    return write_cifar_like_npz(root / "cifar10.npz")


# --------------------------------------------------------------------------- sweeps, DDP, resuming (ssd/launch.py, ssd/report.py)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Torch on one thread for the test (tiny models; see tests.helpers.ONE_THREAD), restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
