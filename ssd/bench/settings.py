"""What a benchmark run measures, on which device and with how many threads, and the targets it checks."""

from __future__ import annotations

import logging
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

log = logging.getLogger("ssd.bench")

#: table order of the main strategies; any other config in conf/strategy follows, sorted
PREFERRED_ORDER = (
    "vanilla",
    "clean",
    "student_teacher",
    "self_distill",
    "online_distill",
    "denoiser",
    "denoise",
    "joint",
)
#: the framework's speed targets, each checked as a ratio measured in one run
TARGET_VANILLA_VS_RAW = 0.95  # vanilla images/s >= this x the raw loop's
TARGET_STUDENT_STEP = 1.30  # a distillation student's step time <= this x vanilla's
TARGET_DATA_NOISE_SHARE = 0.05  # data + noise <= this share of vanilla's step time
#: extra rows selectable by name in ``--strategies``: (strategy, overrides), e.g. a switch turned off
ROW_VARIANTS: dict[str, tuple[str, list[str]]] = {
    "self_distill:reference": (
        "self_distill",
        ["strategy.fold_teacher_bn=false", "strategy.fused_feature_loss=false"],
    ),
}
#: ``--denoiser auto``: the CPU preset's denoiser (experiment=cpu_quick) on a CPU, the run default on a GPU
CPU_DENOISER = "dncnn_small"


@dataclass
class BenchSettings:
    """What to measure and for how long (``python -m ssd.bench --help`` documents each)."""

    model: str = "resnet20"
    denoiser: str = "auto"
    batch_size: int = 128
    precision: str = "auto"
    device: str = "auto"
    channels_last: str = "auto"
    compile: bool = False
    threads: str = "auto"
    strategies: list[str] | None = None  # None: every config in conf/strategy
    image_size: int = 32
    num_classes: int = 10
    warmup: int = 1
    min_steps: int = 2
    max_steps: int = 50
    min_window_s: float = 1.5
    repeats: int = 5
    min_repeats: int = 2
    budget_s: float = 140.0
    data_noise_batches: int = 10
    progress_bar: bool = False
    profile: list[str] = field(default_factory=list)
    profile_steps: int = 3
    out: str | None = None
    overrides: list[str] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> the first CUDA device when there is one, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"ssd.bench: --device {name}: CUDA is not available on this machine")
    if device.type not in ("cpu", "cuda"):
        raise SystemExit(f"ssd.bench: --device {name}: only cpu and cuda are supported")
    return device


def resolve_threads(threads: str) -> int:
    """CPU threads for the run. ``auto``: torch's default, or 1 when other jobs already load every core.

    OpenMP parallel regions wait at barriers for all their threads; on an oversubscribed CPU one
    descheduled thread stalls every op (measured here: 2 threads 4x slower than 1 under load 10),
    which would time the scheduler instead of the training step.
    """
    if threads != "auto":
        return int(threads)
    load, cores = load_average(), os.cpu_count() or 1
    if cores > 1 and load is not None and load >= cores:
        log.warning(
            "load average %.1f on %d cores: timing with 1 thread (--threads N to choose)", load, cores
        )
        return 1
    return torch.get_num_threads()


def synchronizer(device: torch.device) -> Callable[[], None]:
    """Waits for queued device work (CUDA is asynchronous; the CPU is not)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    n = torch.get_num_threads()
    return f"CPU {model}, {n} thread{'s' if n != 1 else ''}"


def load_average() -> float | None:
    """The 1-minute load average (a CPU shared with other jobs makes every timing slower and noisier)."""
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):
        return None
