"""Datamodules yielding ``(x float [0,1] NCHW, y int64, idx int64)`` after batch transfer.

See docs/ARCHITECTURE.md ("Batches") for the contract and ``sources.py`` for where data is found.
"""

from ssd.data.augment import random_crop_flip, to_unit_float
from ssd.data.folder import FolderDataModule
from ssd.data.memory import CIFARDataModule, InMemoryDataModule, SyntheticDataModule
from ssd.data.sampling import ShardedSampler
from ssd.data.sources import load_cifar_arrays, resolve_data_root, scan_image_folder

__all__ = [
    "CIFARDataModule",
    "FolderDataModule",
    "InMemoryDataModule",
    "ShardedSampler",
    "SyntheticDataModule",
    "load_cifar_arrays",
    "random_crop_flip",
    "resolve_data_root",
    "scan_image_folder",
    "to_unit_float",
]
