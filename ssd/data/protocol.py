"""The datamodule interface: what the pipeline and the strategies read from a datamodule, and set on it.

Any ``LightningDataModule`` with these members can be named by ``data._target_``; the ones in
``ssd.data`` all derive from ``ShardedDataModule`` (``ssd/data/base.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

#: a batch after ``on_after_batch_transfer``: (x float in [0, 1] NCHW, not normalised; y int64; idx int64),
#: ``idx`` the position of each image in its split (for per-image bookkeeping such as feature dumps)
Batch = tuple[Tensor, Tensor, Tensor]


@runtime_checkable
class NoisyDataModule(Protocol):
    """A datamodule of clean images; the strategy adds the noise (``NoisyImageModule.add_noise``).

    Networks are built from ``num_classes``, ``mean``/``std`` (the classifier normalises, so
    batches are plain [0, 1]) and ``image_size``. ``num_classes`` and ``image_size`` are known right
    after construction, before any data is read: ssd builds the networks on the meta device from them
    to check a config (taps, checkpoints of the wrong class count) before it reads a byte. Everything
    else may read the data. Stage-cache keys hold ``fingerprint()`` and ``split_sizes()``; results
    name ``source``. The pipeline sets ``seed`` before each stage's fit, so every stage draws its own
    data order and augmentation.
    """

    #: seed of the training streams (data order, augmentation); set per stage by the pipeline
    seed: int
    #: GLOBAL training batch size (split evenly over devices)
    batch_size: int

    @property
    def num_classes(self) -> int: ...

    @property
    def mean(self) -> tuple[float, ...]: ...

    @property
    def std(self) -> tuple[float, ...]: ...

    @property
    def image_size(self) -> int: ...

    @property
    def source(self) -> str:
        """Where the images came from, in words (for logs and results)."""
        ...

    def split_sizes(self) -> dict[str, int]:
        """Images in ``train``, ``val`` (0: no validation) and ``test``."""
        ...

    def declared_train_images(self) -> int | None:
        """At most how many training images (train + val) there are, known before any data is read
        (None: not known until read). A batch larger than that is a config error found early."""
        ...

    def fingerprint(self) -> str:
        """A content hash of what training sees (train split and val labels)."""
        ...

    def prepare_data(self) -> None: ...

    def setup(self, stage: str | None = None) -> None: ...

    def train_dataloader(self) -> Any: ...

    def val_dataloader(self) -> Any: ...

    def test_dataloader(self) -> Any: ...

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Batch:
        """A loader's batch, already on its device -> ``Batch`` (augmented when training)."""
        ...


@dataclass(frozen=True)
class DataFacts:
    """What networks are built from. ``declared``: before any data is read (mean/std are placeholders,
    fine for networks built on the meta device to check a config); ``of``: once the data is set up."""

    num_classes: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def declared(cls, datamodule: NoisyDataModule, channels: int = 3) -> DataFacts:
        return cls(
            int(datamodule.num_classes), int(datamodule.image_size), (0.0,) * channels, (1.0,) * channels
        )

    @classmethod
    def of(cls, datamodule: NoisyDataModule) -> DataFacts:
        return cls(
            int(datamodule.num_classes),
            int(datamodule.image_size),
            tuple(float(v) for v in datamodule.mean),
            tuple(float(v) for v in datamodule.std),
        )
