"""Lightning callbacks: the ones ssd adds to every trainer, and the configurable ones of ``conf/callbacks``.

Every stage gets ``last_checkpoint`` (what a re-run resumes from), ``TrainThroughput``,
``EpochSamples``, ``EpochHistory``, ``EpochSeed``, ``FiniteLossGuard`` and ``EvaluationMedia``: the
pipeline relies on them. The ``callbacks`` config section adds the rest by ``_target_``; a target that takes ``stage=``
gets the stage's ``ssd.loggers.StageInfo`` and may return None when it has nothing to do for that
stage (``best_checkpoint`` without validation, ``lr_monitor`` without a logger).

``TrainThroughput`` stays hand-written rather than Lightning's ``ThroughputMonitor``: that one
synchronises the GPU after every training batch (``torch.cuda.synchronize()`` in its ``_update``)
and logs windowed rates, where ssd needs one number per fit measured at epoch boundaries only.
"""

from __future__ import annotations

import math
import os
import random
import time
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint

from ssd.loggers import log_curve, log_images, log_per_class, supports_media
from ssd.noise import fixed_noisy
from ssd.seeding import seed_of
from ssd.stage_info import StageInfo


def last_checkpoint(stage: StageInfo) -> ModelCheckpoint:
    """``last.ckpt`` after EVERY training epoch: what a re-run of the stage resumes from.

    Lightning's ``save_last`` refreshes it only in epochs that also save a top-k checkpoint, i.e.
    never without validation.
    """
    return ModelCheckpoint(
        dirpath=str(stage.dir / "checkpoints"),
        filename="last",
        monitor=None,
        save_top_k=1,
        save_on_train_epoch_end=True,
        enable_version_counter=False,
    )


def best_checkpoint(stage: StageInfo) -> ModelCheckpoint | None:
    """``best.ckpt`` by the strategy's validation metric; None for a stage without validation."""
    if not stage.validates:
        return None
    return ModelCheckpoint(
        dirpath=str(stage.dir / "checkpoints"),
        filename="best",
        monitor=stage.monitor,
        mode="max",
        save_top_k=1,
        enable_version_counter=False,
    )


def lr_monitor(
    stage: StageInfo, logging_interval: Literal["step", "epoch"] | None
) -> LearningRateMonitor | None:
    """Lightning's learning-rate monitor, for stages that have a logger to send it to."""
    return LearningRateMonitor(logging_interval=logging_interval) if stage.logs else None


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


class EpochHistory(L.Callback):
    """Each training epoch's scalar metrics (``epoch``, ``step`` and every logged value at the epoch's end:
    training means, validation, learning rate), kept with the stage (``stage.json``, the cache entry) so a
    stage served from the cache shows its training curves on the loggers of the job that reuses it
    (``ssd.loggers.replay_history``). Saved in checkpoints: a resumed fit keeps its earlier epochs."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        row = {"epoch": int(trainer.current_epoch), "step": int(trainer.global_step)}
        for name, value in trainer.callback_metrics.items():
            if isinstance(value, torch.Tensor) and value.numel() == 1 and not name.startswith("test/"):
                row[name] = float(value)
        self.rows.append(row)

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict.get("rows", []))


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
        seed = seed_of(self.seed, "global", trainer.global_rank, trainer.current_epoch)
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)


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
        if batch_idx != 0 or not trainer.is_global_zero or not supports_media(trainer.loggers):
            return
        from torchvision.utils import make_grid

        x, _, idx = batch
        x, idx = x[: self.max_images], idx[: self.max_images]
        by_level: dict[float, Any] = {}
        for noise in pl_module.test_noises.values():  # clean, the training level and the curve's levels
            by_level.setdefault(float(noise.level), noise)
        levels = sorted(by_level)
        rows = [
            fixed_noisy(by_level[v], x, idx, pl_module.evaluation.seed).float().cpu().clamp(0, 1)
            for v in levels
        ]
        grid = make_grid(torch.cat(rows), nrow=len(idx), padding=2, pad_value=1.0)
        caption = "rows: " + " / ".join(f"{pl_module.noise.level_name}={v:g}" for v in levels)
        log_images(trainer.loggers, "images/test_noise_levels", grid, caption=caption)

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
            log_curve(trainer.loggers, "robustness", pl_module.noise.level_name, points)
        per_class = getattr(pl_module, "per_class", None)
        if per_class:
            log_per_class(trainer.loggers, per_class)


class TrainingDiverged(RuntimeError):
    """Training produced a non-finite or huge loss, or non-finite weights: the run fails instead of reporting chance."""


#: a training loss more than this many times the stage's first one (or than this, where the first is below 1)
#: is a diverged run, though finite: a healthy run's loss falls from its first value (a feature loss on raw
#: features may start near 1e6, and falls); ``optim.optimizer.lr=1e6`` takes a loss of ~2 to 1e11-1e12
#: within a step or two
DIVERGED_GROWTH = 1e6


#: where the current trainer is (stage folder, phase, epoch, step), kept by FiniteLossGuard for status reports
POSITION: dict[str, Any] = {}


def training_position() -> dict[str, Any]:
    """A copy of the last position FiniteLossGuard saw (empty before any trainer ran)."""
    return dict(POSITION)


class FiniteLossGuard(L.Callback):
    """Fail the run at the first non-finite training loss, or one above ``max_growth`` (``DIVERGED_GROWTH``)
    times the stage's first loss (at least 1): huge but finite, a diverged run; with its epoch and step, and at the end of
    every epoch when a weight went non-finite, before that epoch's checkpoint is written.

    On CPU the loss is checked every step (free). On an accelerator the check stays on the device
    (a running flag and the first bad step, no host sync) and is read every ``sync_every`` steps
    and at the end of each epoch, so the hot path never waits for the device.

    It also records where training is (``POSITION``: stage folder, phase, epoch, step), so a
    failure or an interruption can say where it happened.
    """

    def __init__(
        self, sync_every: int = 100, deferred: bool | None = None, max_growth: float = DIVERGED_GROWTH
    ) -> None:
        self.sync_every = int(sync_every)
        self.max_growth = float(max_growth)
        self._limit: torch.Tensor | None = None  # device: max_growth * max(first loss, 1)
        self.deferred = deferred  # None: deferred (no per-step sync) exactly when the loss is not on the CPU
        self._first_bad: torch.Tensor | None = None  # device: global step of the first bad loss, or -1
        self._bad_value: torch.Tensor | None = None

    @staticmethod
    def _where(trainer: L.Trainer, phase: str) -> None:
        POSITION.clear()
        POSITION.update(
            stage_dir=str(trainer.default_root_dir),
            phase=phase,
            epoch=int(trainer.current_epoch),
            step=int(trainer.global_step),
        )

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._where(trainer, "fit")
        self._limit = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._where(trainer, "fit")
        self._first_bad = self._bad_value = None

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        POSITION["phase"] = "validation"

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._where(trainer, "test")

    @staticmethod
    def _loss(outputs: Any) -> torch.Tensor | None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        return loss if isinstance(loss, torch.Tensor) else None

    def _bad(self, loss: torch.Tensor) -> torch.Tensor:
        """Whether ``loss`` is non-finite or above the divergence limit (a bool tensor on its device)."""
        size = loss.detach().abs().float()
        if self._limit is None:  # the stage's first loss sets the limit (no host sync)
            self._limit = torch.nan_to_num(size.max(), nan=1.0, posinf=1.0).clamp(min=1.0) * self.max_growth
        return ~(torch.isfinite(loss).all() & (size.max() <= self._limit))

    def _fail(self, trainer: L.Trainer, value: float, step: int) -> None:
        limit = float(self._limit) if self._limit is not None else self.max_growth
        what = (
            "non-finite"
            if not math.isfinite(value)
            else f"diverged (above {limit:g}: {self.max_growth:g} x the stage's first loss)"
        )
        raise TrainingDiverged(
            f"{what} training loss ({value}) at epoch {trainer.current_epoch}, step {step} "
            f"(stage {trainer.default_root_dir}): the run is not trustworthy; lower optim.optimizer.lr, "
            "set trainer.gradient_clip_val, or check the data"
        )

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        POSITION["step"] = int(trainer.global_step)
        loss = self._loss(outputs)
        if loss is None:
            return
        loss = loss.detach()
        step = int(trainer.global_step) - 1  # the optimizer step that just used this loss
        if not (loss.device.type != "cpu" if self.deferred is None else self.deferred):
            if bool(self._bad(loss)):
                self._fail(trainer, float(loss.float().mean()), step)
            return
        bad = self._bad(loss)
        if self._first_bad is None:
            self._first_bad = torch.full((), -1, dtype=torch.long, device=loss.device)
            self._bad_value = torch.zeros((), dtype=torch.float32, device=loss.device)
        first = self._first_bad < 0
        self._bad_value = torch.where(bad & first, loss.float().mean(), self._bad_value)
        self._first_bad = torch.where(bad & first, torch.full_like(self._first_bad, step), self._first_bad)
        if self.sync_every > 0 and (batch_idx + 1) % self.sync_every == 0:
            self._check_device_flag(trainer)

    def _check_device_flag(self, trainer: L.Trainer) -> None:
        if self._first_bad is not None and int(self._first_bad) >= 0:
            assert self._bad_value is not None
            self._fail(trainer, float(self._bad_value), int(self._first_bad))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check_device_flag(trainer)
        flags = [torch.isfinite(p.detach()).all() for p in pl_module.parameters() if p.is_floating_point()]
        if flags and not bool(torch.stack(flags).all()):
            bad = [n for n, p in pl_module.named_parameters() if not bool(torch.isfinite(p.detach()).all())]
            raise TrainingDiverged(
                f"non-finite weights after epoch {trainer.current_epoch} (stage {trainer.default_root_dir}): "
                f"{', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}; lower optim.optimizer.lr or set "
                "trainer.gradient_clip_val"
            )
