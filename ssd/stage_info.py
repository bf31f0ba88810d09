"""What ssd tells the loggers and callbacks of a stage about it (they take it as ``stage=``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class StageInfo:
    """What ssd tells a logger or callback about the stage it serves (passed as ``stage=``)."""

    #: the stage folder (checkpoints, metrics.csv, W&B files)
    dir: Path
    #: the role the stage plays: ``main``, ``student``, ``teacher``, ``denoiser``, ``classifier``
    role: str
    #: the run or sweep the stage belongs to (the W&B group)
    group: str
    #: the stage's resolved config (what W&B records)
    config: Mapping[str, Any] = field(default_factory=dict)
    #: a ``last.ckpt`` of this stage will be resumed
    resuming: bool = False
    #: the stage's name on progress bars (``[1/2] teacher vanilla``)
    label: str | None = None
    #: the validation metric the strategy maximises (``val/acc``; a denoiser's ``val/psnr``)
    monitor: str = "val/acc"
    #: the stage has a validation split (``data.val_size > 0``)
    validates: bool = False
    #: the stage has at least one logger
    logs: bool = False
    #: ``trainer.enable_progress_bar``
    progress_bar: bool = True
