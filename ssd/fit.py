"""Train and test one stage: config -> Trainer -> fit -> test -> metrics.

``fit_stage`` is what every stage of every pipeline goes through, so checkpointing,
resuming, precision, throughput and the test protocol are the same for all strategies.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar, TQDMProgressBar
from torch import nn

from ssd.callbacks import (
    EpochSamples,
    EpochSeed,
    EvaluationMedia,
    FailAtEpoch,
    FiniteLossGuard,
    TrainThroughput,
)
from ssd.console import OneLineSummary, StageRichBar, StageTQDMBar
from ssd.console import setup as setup_console
from ssd.loggers import build_logger, finish_logger
from ssd.stages import load_net_weights, stage_seed, strategy_class
from ssd.strategies.base import NoisyImageModule

log = logging.getLogger(__name__)

# keys of the `trainer` config that ssd handles itself instead of passing to lightning.Trainer
SSD_TRAINER_KEYS = ("precision", "channels_last", "compile")


def build_module(
    cfg: Mapping[str, Any], data_info: Mapping[str, Any], frozen: Mapping[str, nn.Module]
) -> NoisyImageModule:
    """The strategy's LightningModule, with its networks in the configured memory format."""
    module = strategy_class(cfg)(cfg, data_info, frozen)
    if cfg["trainer"].get("channels_last"):
        module = module.to(memory_format=torch.channels_last)
    if cfg["trainer"].get("compile"):
        # Feature taps are forward hooks added after compiling. Without hook guards dynamo reuses a graph
        # traced without them (e.g. the teacher stage's, same class) and the taps record nothing.
        torch._dynamo.config.skip_nnmodule_hook_guards = False
        module.net = torch.compile(module.net)
    return module


def _progress_bar(label: str | None = None) -> L.Callback:
    """A rich bar on interactive terminals, a plain slow-refreshing one in logs and CI; named by
    ``label`` (the stage, e.g. "[1/2] teacher vanilla") where given."""
    if sys.stdout.isatty():
        return RichProgressBar(refresh_rate=10) if label is None else StageRichBar(label, refresh_rate=10)
    return TQDMProgressBar(refresh_rate=50) if label is None else StageTQDMBar(label, refresh_rate=50)


def build_trainer(
    cfg: Mapping[str, Any],
    stage_dir: Path,
    logger: Any,
    extra_callbacks: list[L.Callback],
    stage_label: str | None = None,
) -> L.Trainer:
    """lightning.Trainer from ``cfg.trainer`` plus ssd's checkpointing and throughput callbacks.

    ``stage_label`` names the stage on its progress bars. The model summary is one line
    (``ssd.console.OneLineSummary``) unless ``trainer.enable_model_summary`` asks for Lightning's table.
    """
    setup_console()
    trainer_kwargs = {k: v for k, v in cfg["trainer"].items() if k not in SSD_TRAINER_KEYS}
    trainer_kwargs.setdefault("enable_model_summary", False)
    has_val = bool(cfg["data"].get("val_size", 0))
    # last.ckpt after EVERY epoch (what a re-run resumes from): Lightning's save_last only
    # refreshes it in epochs that also save a top-k checkpoint, i.e. never without validation
    last = ModelCheckpoint(
        dirpath=str(stage_dir / "checkpoints"),
        filename="last",
        monitor=None,
        save_top_k=1,
        save_on_train_epoch_end=True,
        enable_version_counter=False,
    )
    callbacks: list[L.Callback] = [last, *extra_callbacks]
    if has_val:
        best = ModelCheckpoint(
            dirpath=str(stage_dir / "checkpoints"),
            filename="best",
            monitor=strategy_class(cfg).monitor,
            mode="max",
            save_top_k=1,
            enable_version_counter=False,
        )
        callbacks.insert(0, best)
    if cfg["trainer"].get("enable_progress_bar", True):
        callbacks.append(_progress_bar(stage_label))
    if not trainer_kwargs["enable_model_summary"]:
        callbacks.append(OneLineSummary())
    if logger is not None:
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    if not has_val:
        trainer_kwargs["limit_val_batches"] = 0
    return L.Trainer(
        **trainer_kwargs,
        precision=cfg["trainer"]["precision"],
        logger=logger if logger is not None else False,
        callbacks=callbacks,
        default_root_dir=str(stage_dir),
        use_distributed_sampler=False,  # ssd's datamodules shard themselves (exact, unpadded eval)
        deterministic=bool(cfg.get("deterministic", False)) or None,
    )


def fit_stage(
    cfg: Mapping[str, Any],
    stage: str,
    stage_dir: Path,
    datamodule: L.LightningDataModule,
    data_info: Mapping[str, Any],
    frozen: Mapping[str, nn.Module],
    group: str,
    weights: str | Path | None = None,
    label: str | None = None,
) -> tuple[NoisyImageModule, dict[str, Any]]:
    """Fit (resuming from ``last.ckpt`` when present) and test one stage; return (module, metrics).

    Every random stream of the stage (initial weights, data order, augmentation, training noise,
    global RNGs) derives from ``stage_seed(cfg)``, so a teacher and its student never share them.
    ``weights``: a trained network of this stage (e.g. from the stage cache) to test instead of training.
    ``label``: the stage's name on its progress bars (``[1/2] teacher vanilla``).
    """
    stage_dir.mkdir(parents=True, exist_ok=True)
    seed = stage_seed(cfg)
    L.seed_everything(seed, workers=True, verbose=False)
    datamodule.seed = seed  # the datamodule protocol: its training streams' seed, set per stage
    module = build_module(cfg, data_info, frozen)
    is_main = stage_dir.name == "main"  # the run's own stage (its W&B job type may say "student")
    init = weights or (cfg.get("init_from") if is_main else None)
    if init:
        load_net_weights(module.net, init)
        log.info("stage %s: network loaded from %s", stage, init)
    evaluate_only = weights is not None or (is_main and cfg.get("eval_only"))
    logger = build_logger(cfg, stage, stage_dir, group)
    throughput, samples = TrainThroughput(), EpochSamples()
    extra = [
        throughput,
        samples,
        EpochSeed(seed),
        FiniteLossGuard(),  # a NaN/inf loss or weight fails the stage, never publishes it
        EvaluationMedia(),
        *FailAtEpoch.from_env(),
    ]
    trainer = build_trainer(cfg, stage_dir, logger, extra, stage_label=label)
    last = stage_dir / "checkpoints" / "last.ckpt"
    resume_from = str(last) if cfg.get("resume", True) and last.exists() and not evaluate_only else None
    if resume_from:
        log.info("stage %s: resuming from %s", stage, resume_from)
    exit_code = 1
    try:
        start = time.perf_counter()
        if evaluate_only:
            log.info("stage %s: evaluating %s without training", stage, init)
        elif strategy_class(cfg).trains(cfg):
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
        else:
            log.info("stage %s: %s trains nothing here; evaluation only", stage, cfg["strategy"]["name"])
        fit_seconds = time.perf_counter() - start
        # the last validation epoch's accuracy (tuning without the test set); trainer.test resets it
        val_acc = None if evaluate_only else trainer.callback_metrics.get("val/acc")
        val_acc = None if val_acc is None else float(val_acc)
        tested = trainer.test(module, datamodule=datamodule, verbose=False)
        test_seconds = time.perf_counter() - start - fit_seconds
        exit_code = 0
    finally:
        finish_logger(logger, exit_code)
    metrics = {k: float(v) for k, v in (tested[0] if tested else {}).items()}
    if val_acc is not None:
        metrics["val/acc"] = val_acc
    result = {
        "stage": stage,
        "strategy": cfg["strategy"]["name"],
        "stage_seed": seed,
        "metrics": metrics,
        "test_acc": metrics.get("test/acc"),
        "clean_acc": metrics.get("test/acc_clean"),
        "val_acc": metrics.get("val/acc"),
        "robustness": {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith("curve/")},
        "epochs": int(trainer.current_epoch),
        "fit_seconds": fit_seconds,
        "test_seconds": test_seconds,
        "train_images_per_s": throughput.images_per_second,
        "world_size": int(trainer.world_size),
        "train_samples_per_epoch": samples.last_epoch_total,  # all ranks together, last epoch trained here
        "checkpoints": {"last": str(last), "best": str(stage_dir / "checkpoints" / "best.ckpt")},
        "resumed_from": resume_from,
    }
    return module, result
