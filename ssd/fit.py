"""Train and test one stage: config -> Trainer -> fit -> test -> metrics.

``fit_stage`` is what every stage of every pipeline goes through, so checkpointing,
resuming, precision, throughput and the test protocol are the same for all strategies.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.loggers import Logger
from torch import nn

from ssd.callbacks import (
    EpochHistory,
    EpochSamples,
    EpochSeed,
    EvaluationMedia,
    FailAtEpoch,
    FiniteLossGuard,
    TrainThroughput,
    last_checkpoint,
)
from ssd.config import Range
from ssd.console import OneLineSummary
from ssd.console import setup as setup_console
from ssd.data.protocol import DataFacts, NoisyDataModule
from ssd.loggers import finish_loggers, replay_history, wandb_run_ref
from ssd.parts import build_callbacks, build_loggers, build_strategy, strategy_class
from ssd.results import write_atomic
from ssd.seeding import stage_seed
from ssd.stage_info import StageInfo
from ssd.stages import load_net_weights, load_stage_weights
from ssd.strategies.base import NoisyImageModule

log = logging.getLogger(__name__)

PositiveInt = Annotated[int, Range(gt=0)]
Batches = Annotated[int, Range(gt=0)] | Annotated[float, Range(gt=0, le=1)] | None


class TrainerSettings(TypedDict, total=False):
    """The ``trainer`` keys ssd handles itself, or constrains beyond ``lightning.Trainer``'s own
    annotations (every other ``lightning.Trainer`` argument passes through as Lightning types it)."""

    #: ``auto``: bf16-mixed where the device supports it, else 32-true (``ssd.hardware``)
    precision: Literal[
        "auto", "32-true", "32", "bf16-mixed", "16-mixed", "16", "bf16-true", "64-true", "64", 32, 16, 64
    ]
    #: ``auto``: on for CUDA and CPU convnets
    channels_last: Literal["auto"] | bool
    #: ``torch.compile`` the trained networks
    compile: bool
    max_epochs: PositiveInt
    num_nodes: PositiveInt
    devices: PositiveInt | Literal["auto", -1] | list[Annotated[int, Range(ge=0)]]
    strategy: Literal["auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true", "fsdp", "deepspeed"]
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"]
    gradient_clip_val: Annotated[float, Range(ge=0)] | None
    gradient_clip_algorithm: Literal["norm", "value"] | None
    accumulate_grad_batches: PositiveInt
    log_every_n_steps: PositiveInt | None
    check_val_every_n_epoch: PositiveInt | None
    limit_train_batches: Batches
    limit_test_batches: Batches
    limit_val_batches: Annotated[int, Range(ge=0)] | Annotated[float, Range(ge=0, le=1)] | None


#: keys of the ``trainer`` config that ssd handles itself instead of passing to lightning.Trainer
SSD_TRAINER_KEYS = ("precision", "channels_last", "compile")
#: lightning.Trainer arguments ssd sets itself (a config value would clash)
TRAINER_SET_BY_SSD = ("logger", "callbacks", "default_root_dir", "use_distributed_sampler")


def build_module(
    cfg: Mapping[str, Any],
    facts: DataFacts,
    frozen: Mapping[str, nn.Module],
    frozen_seeds: Mapping[str, int | None] | None = None,
) -> NoisyImageModule:
    """The stage's strategy module (``ssd.parts``), with its networks in the configured memory format;
    ``frozen_seeds``: the seed each frozen stage trained from (``ssd.parts.build_strategy``)."""
    module = build_strategy(cfg, facts, frozen, stage_seed(cfg), frozen_seeds)
    if cfg["trainer"]["channels_last"]:
        module = module.to(memory_format=torch.channels_last)
    if cfg["trainer"]["compile"]:
        # Feature taps are forward hooks added after compiling. Without hook guards dynamo reuses a graph
        # traced without them (e.g. the teacher stage's, same class) and the taps record nothing.
        torch._dynamo.config.skip_nnmodule_hook_guards = False
        module.net = torch.compile(module.net)
    return module


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, writing each checkpoint (``last.ckpt``, ``best.ckpt``) as
    ``ssd.results.write_atomic`` does: in the checkpoint's own folder, renamed into place once whole.
    (Lightning's own writes a temporary file elsewhere and copies it across file systems: a full disk
    leaves a truncated checkpoint at the final path.)"""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        write_atomic(path, functools.partial(torch.save, checkpoint))


#: trainer strategies whose checkpoints go through a CheckpointIO plugin (FSDP, DeepSpeed write their own)
CHECKPOINT_IO_STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true")


def readable_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a whole checkpoint file (every member of its zip archive intact)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError, ValueError):
        return False


def resume_checkpoint(checkpoints: Path, role: str) -> Path | None:
    """The checkpoint a re-run of the stage resumes from: ``last.ckpt``, or where that file is damaged
    (e.g. truncated by a full disk before checkpoints were written atomically) ``best.ckpt``, or none:
    a damaged file is moved aside (``<name>.corrupt-<time>``) with a warning, and the stage restarts."""
    for name in ("last.ckpt", "best.ckpt"):
        path = checkpoints / name
        if not path.exists():
            continue
        if readable_checkpoint(path):
            return path
        aside = path.with_name(f"{name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(path, aside)
        log.warning("stage %s: %s is damaged (not a whole checkpoint); moved to %s", role, path, aside.name)
    if any(checkpoints.glob("*.corrupt-*")):
        log.warning(
            "stage %s: no readable checkpoint left to resume from; training restarts from epoch 0", role
        )
    return None


def build_trainer(
    cfg: Mapping[str, Any], stage: StageInfo, loggers: Sequence[Logger], callbacks: Sequence[L.Callback]
) -> L.Trainer:
    """lightning.Trainer from ``cfg.trainer`` with the stage's loggers and callbacks.

    The model summary is one line (``ssd.console.OneLineSummary``) unless
    ``trainer.enable_model_summary`` asks for Lightning's table.
    """
    setup_console()
    trainer_kwargs = {k: v for k, v in cfg["trainer"].items() if k not in SSD_TRAINER_KEYS}
    extra: list[L.Callback] = [] if trainer_kwargs["enable_model_summary"] else [OneLineSummary()]
    if not stage.validates:
        trainer_kwargs["limit_val_batches"] = 0
    if trainer_kwargs.get("strategy", "auto") in CHECKPOINT_IO_STRATEGIES and "plugins" not in trainer_kwargs:
        trainer_kwargs["plugins"] = [AtomicCheckpointIO()]
    return L.Trainer(
        **trainer_kwargs,
        precision=cfg["trainer"]["precision"],
        logger=list(loggers) or False,
        callbacks=[*callbacks, *extra],
        default_root_dir=str(stage.dir),
        use_distributed_sampler=False,  # ssd's datamodules shard themselves (exact, unpadded eval)
        deterministic=bool(cfg["deterministic"]) or None,
    )


def fit_stage(
    cfg: Mapping[str, Any],
    role: str,
    stage_dir: Path,
    datamodule: NoisyDataModule,
    facts: DataFacts,
    frozen: Mapping[str, nn.Module],
    group: str,
    weights: str | Path | None = None,
    label: str | None = None,
    frozen_seeds: Mapping[str, int | None] | None = None,
    history: Sequence[Mapping[str, float]] = (),
    provenance: Mapping[str, Any] | None = None,
) -> tuple[NoisyImageModule, dict[str, Any]]:
    """Fit (resuming from ``last.ckpt`` when present) and test one stage; return (module, metrics).

    Every random stream of the stage (initial weights, data order, augmentation, training noise,
    global RNGs) derives from ``stage_seed(cfg)``, so a teacher and its student never share them.
    ``weights``: a trained stage (e.g. from the stage cache) to test instead of training.
    ``label``: the stage's name on its progress bars (``[1/2] teacher vanilla``).
    ``history``: a stage evaluated from the cache: its original training curves, shown on its loggers.
    ``provenance``: where this stage (when from the cache) and the stages it requires came from, logged
    as hyperparameters (``ssd.loggers.replay_history``).
    """
    stage_dir.mkdir(parents=True, exist_ok=True)
    seed = stage_seed(cfg)
    L.seed_everything(seed, workers=True, verbose=False)
    datamodule.seed = seed  # the datamodule protocol: its training streams' seed, set per stage
    module = build_module(cfg, facts, frozen, frozen_seeds)
    is_main = stage_dir.name == "main"  # the run's own stage (its W&B job type may say "student")
    evaluate_only = weights is not None or (is_main and cfg["eval_only"])
    init = weights or (cfg["init_from"] if is_main else None)
    if init and evaluate_only:  # evaluated as it was saved (an EMA teacher too)
        load_stage_weights(module, init)
    elif init:  # a training start takes the network only
        load_net_weights(module.net, init)
    if init:
        log.info("stage %s: network loaded from %s", role, init)
    last = stage_dir / "checkpoints" / "last.ckpt"
    resumable = resume_checkpoint(last.parent, role) if cfg["resume"] and not evaluate_only else None
    resume_from = str(resumable) if resumable else None
    stage = StageInfo(
        dir=stage_dir,
        role=role,
        group=group,
        config=cfg,
        resuming=resume_from is not None,
        label=label,
        monitor=module.monitor,
        validates=datamodule.split_sizes()["val"] > 0,
        progress_bar=bool(cfg["trainer"]["enable_progress_bar"]),
    )
    loggers = build_loggers(cfg, stage)
    stage = dataclasses.replace(stage, logs=bool(loggers))
    throughput, samples, epochs = TrainThroughput(), EpochSamples(), EpochHistory()
    callbacks = [
        last_checkpoint(stage),
        throughput,
        samples,
        epochs,
        EpochSeed(seed),
        FiniteLossGuard(),  # a NaN/inf loss or weight fails the stage, never publishes it
        EvaluationMedia(),
        *FailAtEpoch.from_env(),
        *build_callbacks(cfg, stage),
    ]
    trainer = build_trainer(cfg, stage, loggers, callbacks)
    if resume_from:
        log.info("stage %s: resuming from %s", role, resume_from)
    if loggers and (history or provenance):
        replay_history(loggers, history if evaluate_only else (), provenance or {})
    exit_code = 1
    try:
        start = time.perf_counter()
        if evaluate_only:
            log.info("stage %s: evaluating %s without training", role, init)
        elif strategy_class(cfg["strategy"]).trains:
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
        else:
            log.info("stage %s: %s trains nothing here; evaluation only", role, cfg["strategy"]["name"])
        fit_seconds = time.perf_counter() - start
        # the last validation epoch's accuracy (what tuning and a hyperparameter search read, never the
        # test set); kept in the stage's metrics, so a stage from the cache still has it; test resets it
        val_acc = None if evaluate_only else trainer.callback_metrics.get("val/acc")
        val_acc = None if val_acc is None else float(val_acc)
        tested = trainer.test(module, datamodule=datamodule, verbose=False)
        test_seconds = time.perf_counter() - start - fit_seconds
        wandb_run = wandb_run_ref(loggers)
        exit_code = 0
    finally:
        finish_loggers(loggers, exit_code)
    metrics = {k: float(v) for k, v in (tested[0] if tested else {}).items()}
    if val_acc is not None:
        metrics["val/acc"] = val_acc
    result = {
        "stage": role,
        "strategy": cfg["strategy"]["name"],
        "stage_seed": seed,
        "metrics": metrics,
        "test_acc": metrics.get("test/acc"),
        "clean_acc": metrics.get("test/acc_clean"),
        "val_acc": metrics.get("val/acc"),
        "robustness": {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith("curve/")},
        "per_class": module.per_class,  # per-class accuracy and confusion matrices of the test
        "epochs": int(trainer.current_epoch),
        "history": epochs.rows,  # per-epoch training metrics (empty when evaluated only)
        "wandb": wandb_run,  # this stage's W&B run (id, project, entity, url), if it logged to W&B
        "fit_seconds": fit_seconds,
        "test_seconds": test_seconds,
        "train_images_per_s": throughput.images_per_second,
        "world_size": int(trainer.world_size),
        "train_samples_per_epoch": samples.last_epoch_total,  # all ranks together, last epoch trained here
        "checkpoints": {"last": str(last), "best": str(stage_dir / "checkpoints" / "best.ckpt")},
        "resumed_from": resume_from,
    }
    return module, result
