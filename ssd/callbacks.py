"""Small Lightning callbacks ssd adds to every trainer."""

from __future__ import annotations

import os
import random
import time
from typing import Any

import lightning as L
import numpy as np
import torch

from ssd.loggers import log_curve, log_images, supports_media


class TrainThroughput(L.Callback):
    """Training images per second over the whole fit, validation excluded.

    Time is taken once per epoch boundary (with a device sync on CUDA), never per step,
    so measuring costs nothing on the hot path.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.images = 0
        self._start: float | None = None

    def _sync(self, trainer: L.Trainer) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize(trainer.strategy.root_device)

    def _stop(self, trainer: L.Trainer) -> None:
        if self._start is not None:
            self._sync(trainer)
            self.seconds += time.perf_counter() - self._start
            self._start = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._sync(trainer)
        self._start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.images += int(batch[0].shape[0]) * trainer.world_size

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop(trainer)

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "images": self.images}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.seconds = float(state_dict.get("seconds", 0.0))
        self.images = int(state_dict.get("images", 0))


class EpochSamples(L.Callback):
    """Training samples seen in the last epoch by the whole process group (summed over ranks).

    Written to results.json with the world size, so a job that silently trained on part of
    the data (a wrong world size, a sampler sharding twice) shows it in its numbers.
    """

    def __init__(self) -> None:
        self._count = 0
        self.last_epoch_total: int | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._count = 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._count += int(batch[0].shape[0])

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        local = torch.tensor(self._count, dtype=torch.int64, device=pl_module.device)
        self.last_epoch_total = int(trainer.strategy.reduce(local, reduce_op="sum"))


class EpochSeed(L.Callback):
    """Re-seed the global RNGs at every training epoch from (seed, global rank, epoch).

    A run resumed from the checkpoint of epoch k-1 then draws exactly what an uninterrupted
    run draws in epoch k, also for code that uses the global RNG (dropout, ``torch.rand``);
    ssd's own streams (augmentation, training noise) are re-derived per epoch the same way.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state = np.random.SeedSequence(
            [self.seed, trainer.global_rank, trainer.current_epoch]
        ).generate_state(2)
        torch.manual_seed(int(state[0]) << 32 | int(state[1]))
        np.random.seed(int(state[0]))
        random.seed(int(state[1]))


class FailAtEpoch(L.Callback):
    """Raise at the start of training epoch ``epoch`` (0-based): a crash, for tests of resuming.

    Enabled by the environment variable ``SSD_DEBUG_FAIL_AT_EPOCH``, never by config: the
    crash must not change what a run is. Checkpoints of the epochs before it are on disk.
    """

    ENV = "SSD_DEBUG_FAIL_AT_EPOCH"

    def __init__(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @classmethod
    def from_env(cls) -> list[L.Callback]:
        value = os.environ.get(cls.ENV)
        return [cls(int(value))] if value not in (None, "") else []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError(f"{self.ENV}={self.epoch}: simulated crash at the start of epoch {self.epoch}")


class EvaluationMedia(L.Callback):
    """Send what evaluation saw to W&B/TensorBoard: sample test images at every evaluated noise
    level (a grid, one row per level) and the robustness curve as a table and line plot.

    Rank 0 only; loggers that take no media (CSV, none) skip both.
    """

    def __init__(self, max_images: int = 8) -> None:
        self.max_images = max_images

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: Any,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx != 0 or not trainer.is_global_zero or not supports_media(trainer.logger):
            return
        from torchvision.utils import make_grid

        from ssd.noise import fixed_noisy

        x, _, idx = batch
        x, idx = x[: self.max_images], idx[: self.max_images]
        by_level: dict[float, Any] = {}
        for noise in pl_module.test_noises.values():  # clean, the training level and the curve's levels
            by_level.setdefault(float(noise.level), noise)
        levels = sorted(by_level)
        rows = [
            fixed_noisy(by_level[v], x, idx, int(pl_module.cfg["eval_seed"])).float().cpu().clamp(0, 1)
            for v in levels
        ]
        grid = make_grid(torch.cat(rows), nrow=len(idx), padding=2, pad_value=1.0)
        caption = "rows: " + " / ".join(f"{pl_module.noise.level_name}={v:g}" for v in levels)
        log_images(trainer.logger, "images/test_noise_levels", grid, caption=caption)

    def on_test_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if not trainer.is_global_zero:
            return
        points = sorted(
            (float(name.split("=", 1)[1]), float(value))
            for name, value in (
                (k.split("/", 1)[1], v) for k, v in trainer.callback_metrics.items() if k.startswith("curve/")
            )
        )
        if points:
            log_curve(trainer.logger, "robustness", pl_module.noise.level_name, points)
