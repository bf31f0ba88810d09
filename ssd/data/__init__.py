"""Datamodules of clean images, batches ``(x float [0,1] NCHW, y int64, idx int64)`` after transfer.

The data path, top to bottom, for the in-memory families (CIFAR, synthetic, arrays given)::

    arrays found / decoded   cifar.load_cifar_arrays (torchvision files, npz, WebP mosaics; the
                             lookup order is in cifar.py) or synthetic.make_synthetic
                             -> uint8 NHWC numpy arrays, checked by memory.validate_arrays
    uint8 tensors in memory  memory.InMemoryDataModule (setup): limit_train/limit_test, NCHW,
                             splits.carve_validation (val from train, split_seed)
                             -> one uint8 tensor per split (copied once to the GPU when device_resident)
    sampler / shards         base.ShardedDataModule.sampler -> splits.ShardedSampler: this rank's
                             indices, reshuffled each epoch from ``seed``; the global batch_size is
                             split evenly over devices (splits.per_device_batch)
    batch gather             memory.BatchTensorDataset.__getitems__: one fancy index per batch
                             -> (x uint8, y, idx); the collate passes it through
    transfer                 Lightning moves the batch to the training device
    on-device crop/flip      InMemoryDataModule.on_after_batch_transfer -> device_batch:
                             augment.random_crop_flip when training (stream from seed, rank, epoch),
                             else augment.to_unit_float
    (x, y, idx)              float [0,1] NCHW (NOT normalised), int64, int64: protocol.Batch
    strategy                 NoisyImageModule.training_step (ssd/strategies/base.py): the training
                             noise is added there (add_noise); the classifier normalises
                             (Classifier.normalize)

Image folders (folder.py) take the same path with files for tensors: folder.scan_image_folder ->
(path, label) lists -> ShardedSampler -> DataLoader workers decode with RandomResizedCrop + flip
-> float batches -> transfer -> on_after_batch_transfer (dtypes, memory format) -> (x, y, idx).

Modules: ``protocol`` (the interface the pipeline reads: ``NoisyDataModule``), ``base`` (the
settings, declared once, and sharded loaders), ``splits`` (val carve, per-device batch, sampler,
world/rank), ``roots`` (what a data path means), ``memory`` (the in-memory base), ``augment``
(batched crop/flip), and one file per source family: ``cifar``, ``synthetic``, ``folder``.
"""

from ssd.data.augment import random_crop_flip, to_unit_float
from ssd.data.base import ShardedDataModule
from ssd.data.cifar import CIFARDataModule, load_cifar_arrays
from ssd.data.folder import FolderDataModule, scan_image_folder
from ssd.data.memory import InMemoryDataModule
from ssd.data.protocol import Batch, NoisyDataModule
from ssd.data.roots import resolve_data_root
from ssd.data.splits import ShardedSampler
from ssd.data.synthetic import SyntheticDataModule

__all__ = [
    "Batch",
    "CIFARDataModule",
    "FolderDataModule",
    "InMemoryDataModule",
    "NoisyDataModule",
    "ShardedDataModule",
    "ShardedSampler",
    "SyntheticDataModule",
    "load_cifar_arrays",
    "random_crop_flip",
    "resolve_data_root",
    "scan_image_folder",
    "to_unit_float",
]
