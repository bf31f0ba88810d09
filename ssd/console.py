"""What a run prints: each line once, stages announced and named on their progress bars.

Under ``python -m ssd.run`` Hydra's job logging owns the console and ``<run>/run.log``; Lightning
also prints its INFO lines through a handler of its own, so every one appeared twice. ``setup``
routes Lightning through Hydra's handlers only and drops what carries no information for ssd
runs (each filter says why). ``OneLineSummary`` replaces Lightning's 14-line model table.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from hydra.experimental.callback import Callback as HydraCallback
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar, TQDMProgressBar
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.model_summary import get_human_readable_count

from ssd.stage_info import StageInfo

log = logging.getLogger("ssd")

LIGHTNING_LOGGERS = (
    "lightning",
    "lightning.pytorch",
    "lightning.fabric",
    "pytorch_lightning",
    "lightning_fabric",
)

#: (message regex, why it carries no information for an ssd run)
QUIET_WARNINGS = (
    (
        r".*isinstance\(treespec, LeafSpec\)` is deprecated",
        "raised inside Lightning by newer torch; nothing an ssd user can change",
    ),
    (
        r".*does not have many workers",
        "ssd's datasets are tensors in memory (on the training device): workers would only copy them",
    ),
    (
        r".*is smaller than the logging interval",
        "short epochs (tests, tiny runs); train/loss is also logged as an epoch mean",
    ),
    (
        r".*module\(s\) in eval mode at the start of training",
        "the frozen networks of a pipeline (teacher, denoiser) are in eval mode on purpose",
    ),
    (
        r".*Checkpoint directory .* exists and is not empty",
        "a resumed stage keeps its checkpoint folder on purpose: last.ckpt is what it resumes from",
    ),
    (
        r".*when logging on epoch level in distributed setting",
        "test metrics are torchmetrics objects, already reduced over all ranks",
    ),
)

#: Lightning INFO lines never shown: advertisements, a detail of how Lightning sizes schedulers, and
#: the normal end of every stage (other reasons to stop, e.g. max_steps, are still shown)
DROPPED_LINES = re.compile(
    r"💡 Tip:|^Loading `train_dataloader` to estimate number of stepping batches|^`Trainer.fit` stopped: `max_epochs="
)
#: Lightning INFO lines shown once per process (each stage's Trainer repeats them)
ONCE_LINES = re.compile(r"^(GPU|TPU|HPU|IPU) available:")


class _LightningLines(logging.Filter):
    """Drops ``DROPPED_LINES``; lets each of ``ONCE_LINES`` through once."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if DROPPED_LINES.search(message):
            return False
        if ONCE_LINES.search(message):
            if message in self.seen:
                return False
            self.seen.add(message)
        return True


_FILTER = _LightningLines()

#: ``log.error(..., extra=FILE_ONLY)``: a message that ssd prints itself (on stderr), also in ``run.log``
FILE_ONLY = {"ssd_file_only": True}


class _NotOnConsole(logging.Filter):
    """On the console handlers: drops the records logged with ``extra=FILE_ONLY``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "ssd_file_only", False)


_NOT_ON_CONSOLE = _NotOnConsole()


def setup() -> None:
    """Print every line once and leave out what carries no information (idempotent).

    Where the root logger has handlers (Hydra's job logging: console and ``run.log``),
    Lightning's loggers lose their own console handlers and propagate to those instead.
    """
    for pattern, _why in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    has_root_handlers = bool(logging.getLogger().handlers)
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler and _NOT_ON_CONSOLE not in handler.filters:
            handler.addFilter(_NOT_ON_CONSOLE)
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
        if has_root_handlers:
            for handler in list(logger.handlers):
                if type(handler) is logging.StreamHandler:
                    logger.removeHandler(handler)
            logger.propagate = True
    # rank_zero_info logs through one of these; a parent's filters do not apply to a child's records
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        if _FILTER not in logging.getLogger(name).filters:
            logging.getLogger(name).addFilter(_FILTER)


def route_rank_logs(run_dir: Path, rank: int) -> None:
    """Rank ``rank`` (> 0) of a job: its log file is ``<run_dir>/rank<rank>.log``, its console
    shows warnings and errors only (rank 0 prints the job's progress)."""
    root = logging.getLogger()
    target = Path(run_dir) / f"rank{rank}.log"
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            if Path(handler.baseFilename) == target:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            moved = logging.FileHandler(target)
            moved.setLevel(handler.level)
            moved.setFormatter(handler.formatter)
            for item in handler.filters:
                moved.addFilter(item)
            root.removeHandler(handler)
            handler.close()
            root.addHandler(moved)
        elif isinstance(handler, logging.StreamHandler):
            handler.setLevel(max(handler.level, logging.WARNING))


def announce_stage(
    index: int, total: int, role: str, strategy: str, source: str, key: str, teacher: str | None = None
) -> str:
    """Log, and return, the one line that starts stage ``index`` of ``total`` of a job, e.g.

    ``[2/2] student self_distill ← teacher vanilla (cache 56c8a1b2…)``

    ``source``: where the stage comes from (train, cache, run, ckpt); ``key``: its cache key;
    ``teacher``: what the stage learns from, as it should read after the arrow.
    """
    line = stage_label(index, total, role, strategy)
    if teacher:
        line += f" ← {teacher}"
    line += f" ({source} {key[:8]}…)" if key else f" ({source})"
    log.info(line)
    return line


def stage_label(index: int, total: int, role: str, strategy: str) -> str:
    """``[i/n] role strategy``: how a stage is named on its progress bars."""
    return f"[{index}/{total}] {role} {strategy}"


# --------------------------------------------------------------------------- progress bars and summary


def _epoch(trainer: L.Trainer, label: str) -> str:
    return f"{label}: epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"


class StageTQDMBar(TQDMProgressBar):
    """Lightning's plain bar, each line named by its stage."""

    def __init__(self, label: str, refresh_rate: int = 10) -> None:
        super().__init__(refresh_rate=refresh_rate)
        self.label = label

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(_epoch(trainer, self.label))

    @property
    def validation_description(self) -> str:
        return f"{self.label}: validation"

    @property
    def test_description(self) -> str:
        return f"{self.label}: test"


class StageRichBar(RichProgressBar):
    """Lightning's rich bar, each line named by its stage."""

    def __init__(self, label: str, refresh_rate: int = 10) -> None:
        super().__init__(refresh_rate=refresh_rate)
        self.label = label

    def _get_train_description(self, current_epoch: int) -> str:
        return f"{self.label}: epoch {current_epoch + 1}/{self.trainer.max_epochs}"

    @property
    def validation_description(self) -> str:
        return f"{self.label}: validation"

    @property
    def test_description(self) -> str:
        return f"{self.label}: test"


class EpochLines(ProgressBar):
    """Where stdout is not a terminal (a file, SLURM, CI, ``nohup``): no bar, one log line per epoch,
    ``[1/2] teacher vanilla: epoch 3/15 | train/loss 1.234 | train/acc 0.456 | val/acc 0.432 | 12.3 s``."""

    def __init__(self, label: str | None = None) -> None:
        super().__init__()
        self.label = label or "train"
        self._enabled = True
        self._started = time.monotonic()

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self._started = time.monotonic()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._enabled and trainer.is_global_zero:
            seconds = time.monotonic() - self._started
            log.info(
                "%s | %.1f s", epoch_line(_epoch(trainer, self.label), trainer.callback_metrics), seconds
            )


#: the epoch-level training metrics an epoch line shows (each strategy's own terms are per step)
EPOCH_TRAIN_METRICS = ("train/loss_epoch", "train/acc")


def epoch_line(head: str, metrics: Mapping[str, Any]) -> str:
    """``head | name value | ...``: the training loss's epoch mean (as ``train/loss``), the training
    accuracy and every validation metric of the epoch."""
    names = [n for n in EPOCH_TRAIN_METRICS if n in metrics] + sorted(
        n for n in metrics if n.startswith("val/")
    )
    shown = [f"{name.removesuffix('_epoch')} {float(metrics[name]):.4g}" for name in names]
    return " | ".join([head, *shown])


def _rich_available() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def progress_bar(stage: StageInfo) -> L.Callback | None:
    """A rich bar on an interactive terminal (Lightning's TQDM bar where rich is not installed), one
    line per epoch elsewhere (``EpochLines``), named by the stage (``[1/2] teacher vanilla``); None
    where ``trainer.enable_progress_bar`` is false."""
    if not stage.progress_bar:
        return None
    if not sys.stdout.isatty():
        return EpochLines(stage.label)
    if _rich_available():
        return RichProgressBar(refresh_rate=10) if stage.label is None else StageRichBar(stage.label)
    return TQDMProgressBar(refresh_rate=10) if stage.label is None else StageTQDMBar(stage.label)


def report_stage(label: str, source: str, record: Mapping[str, Any]) -> None:
    """The line that ends a stage: ``[1/2] teacher vanilla: test acc 0.8123, clean 0.9012 (trained)``
    (a denoiser stage, which has no accuracy, is left out)."""
    acc, clean = record.get("test_acc"), record.get("clean_acc")
    if acc is None:
        return
    how = {
        "train": "trained",
        "cache": "from the cache",
        "run": "from this run's folder",
        "ckpt": "from ckpt",
    }
    line = f"{label}: test acc {acc:.4f}"
    line += "" if clean is None else f", clean {clean:.4f}"
    log.info("%s (%s)", line, how.get(source, source))


class OneLineSummary(L.Callback):
    """The model summary as one line: trainable and frozen parameters of the stage's module."""

    @rank_zero_only
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainable = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)
        frozen = sum(p.numel() for p in pl_module.parameters() if not p.requires_grad)
        log.info(
            "model %s: %s trainable, %s frozen parameters",
            type(pl_module).__name__,
            get_human_readable_count(trainable).strip(),
            get_human_readable_count(frozen).strip(),
        )


class DebugNotice(HydraCallback):
    """Hydra callback of the ``debug`` presets (conf/debug/default.yaml): says, as the job starts,
    that this is a debug run and that the stage cache is off for it."""

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        preset = config.hydra.runtime.choices.get("debug")
        log.info(
            "debug=%s: a debug run; stage cache %s (nothing from this run is stored there or read from it)",
            preset,
            config.cache,
        )
