"""``python -m ssd.bench``: training-step throughput of every strategy against a hand-written loop.

Researchers adopt a framework only if it costs them nothing in speed, so this measures, for one
model, batch size, precision and device, train images/s of

* ``raw``: a minimal PyTorch loop written here, with the same model, in-memory data, batched
  crop/flip, noise, optimizer, schedule, memory format and precision as the strategies: the
  floor for framework overhead;
* every strategy of ``conf/strategy/`` through the real Lightning path (``build_module``,
  ``build_trainer``, the datamodule's loader and ``on_after_batch_transfer``). Stages a strategy
  requires (a teacher, a denoiser) are built with random weights: a step costs the same
  whatever the weights, and nothing has to be trained first.

Rows are measured in interleaved rounds, one fit (or raw run) per row per round, so load drift
on a shared machine hits every row alike; ratios are medians of per-round ratios. Each run has
untimed warm-up steps, then a timed window of whole steps (data, noise, forward, backward,
optimizer, hooks) between two device synchronisations and none inside. Data + noise (loader,
transfer, crop/flip, noise draw) is timed on its own through the same objects and reported as a
share of each row's step time. ``--profile ROW`` shows with ``torch.profiler`` where a row's
step time goes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch import Tensor, nn

log = logging.getLogger("ssd.bench")

#: table order of the strategies the issue names; any other config in conf/strategy follows, sorted
PREFERRED_ORDER = ("vanilla", "clean", "student_teacher", "self_distill", "denoiser", "denoise", "joint")
#: the targets of issue #6, as measured in one run
TARGET_VANILLA_VS_RAW = 0.95  # vanilla images/s >= this x the raw loop's
TARGET_STUDENT_STEP = 1.30  # a distillation student's step time <= this x vanilla's
TARGET_DATA_NOISE_SHARE = 0.05  # data + noise <= this share of vanilla's step time
#: overrides that give a strategy whose default config only evaluates (``trains(cfg)`` False) a training step
TRAINING_VARIANTS = {"denoise": ["strategy.classifier_mode=train"]}
#: ``--denoiser auto``: the CPU preset's denoiser (experiment=cpu_quick) on a CPU, the run default on a GPU
CPU_DENOISER = "dncnn_small"


# --------------------------------------------------------------------------- settings


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
    load, cores = _load_average(), os.cpu_count() or 1
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


# --------------------------------------------------------------------------- configs


def discover_strategies() -> list[str]:
    """Every strategy config in ``conf/strategy``, in table order."""
    from ssd.paths import conf_dir

    names = sorted(p.stem for p in (conf_dir() / "strategy").glob("*.yaml"))
    return [n for n in PREFERRED_ORDER if n in names] + [n for n in names if n not in PREFERRED_ORDER]


def run_overrides(
    strategy: str, settings: BenchSettings, device: torch.device, variant: Sequence[str] = ()
) -> list[str]:
    """Hydra overrides of one row's run config: the bench's choices, the row's variant, then the user's."""
    from ssd.paths import conf_dir

    steps = settings.warmup + 1 + settings.max_steps  # one fit never wraps an epoch (no epoch-end work)
    chosen: dict[str, Any] = {
        "strategy": strategy,
        "model": settings.model,
        "logger": "none",
        "data": "synthetic",
        "data.image_size": settings.image_size,
        "data.num_classes": settings.num_classes,
        "data.train": settings.batch_size * steps,
        "data.test": settings.batch_size,
        "data.batch_size": settings.batch_size,
        "data.val_size": 0,
        "trainer.accelerator": "gpu" if device.type == "cuda" else "cpu",
        "trainer.devices": f"[{device.index}]" if device.index is not None else 1,
        "trainer.precision": settings.precision,
        "trainer.channels_last": settings.channels_last,
        "trainer.compile": settings.compile,
        "trainer.enable_progress_bar": settings.progress_bar,
    }
    if (conf_dir() / "denoiser").is_dir():
        auto = (
            CPU_DENOISER
            if device.type == "cpu" and (conf_dir() / "denoiser" / f"{CPU_DENOISER}.yaml").exists()
            else None
        )
        chosen["denoiser"] = auto if settings.denoiser == "auto" else settings.denoiser
        if chosen["denoiser"] is None:
            del chosen["denoiser"]
    chosen.update(o.split("=", 1) for o in variant)
    user = dict(o.split("=", 1) for o in settings.overrides)
    if "data" in user:  # another dataset: keep only the keys every datamodule has
        chosen = {
            k: v
            for k, v in chosen.items()
            if not k.startswith("data.") or k in ("data.batch_size", "data.val_size")
        }
    chosen.update(user)
    return [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in chosen.items()]


def compose_run_cfg(
    strategy: str, settings: BenchSettings, device: torch.device, variant: Sequence[str] = ()
) -> dict[str, Any]:
    """The resolved, validated run config ``python -m ssd.run`` would use for this row."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from ssd.config import validate
    from ssd.paths import conf_dir
    from ssd.run import resolve_auto

    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        cfg = compose(config_name="config", overrides=run_overrides(strategy, settings, device, variant))
    validate(cfg)
    resolve_auto(cfg)
    return OmegaConf.to_container(cfg, resolve=True)


def trains(cfg: Mapping[str, Any]) -> bool:
    """Whether this config's main stage has a training step (some only evaluate frozen stages)."""
    from ssd.train import strategy_class

    check = getattr(strategy_class(cfg), "trains", None)
    return True if check is None else bool(check(cfg))


def row_config(name: str, settings: BenchSettings, device: torch.device) -> tuple[dict[str, Any], list[str]]:
    """(run config, variant overrides) of a row: the strategy's default, or its training variant."""
    cfg = compose_run_cfg(name, settings, device)
    if trains(cfg):
        return cfg, []
    variant = TRAINING_VARIANTS.get(name, [])
    if variant:
        cfg = compose_run_cfg(name, settings, device, variant)
    if not variant or not trains(cfg):
        raise ValueError(f"{name}'s config trains nothing (evaluation only); no training variant known")
    return cfg, variant


def build_frozen(cfg: Mapping[str, Any], data_info: Mapping[str, Any]) -> dict[str, nn.Module]:
    """The networks of the stages ``cfg``'s strategy requires, with random weights.

    Built exactly as ``ssd.pipeline.Pipeline.obtain`` builds them (``stage_config`` +
    ``build_module``, recursively), only not trained.
    """
    from ssd.pipeline import stage_config
    from ssd.train import build_module, strategy_class

    frozen: dict[str, nn.Module] = {}
    for role in strategy_class(cfg).required_roles(cfg):
        stage_cfg = stage_config(cfg, cfg["strategy"][role])
        frozen[role] = build_module(stage_cfg, data_info, build_frozen(stage_cfg, data_info)).net
    return frozen


def frozen_stages(cfg: Mapping[str, Any]) -> dict[str, str]:
    """``{role: strategy}`` of the stages this row's strategy requires (for the table)."""
    from ssd.train import strategy_class

    return {role: str(cfg["strategy"][role]["strategy"]) for role in strategy_class(cfg).required_roles(cfg)}


# --------------------------------------------------------------------------- timing


@dataclass
class Window:
    """One timed stretch of whole training steps."""

    steps: int
    images: int
    seconds: float
    cpu_seconds: float  # this process's CPU time: on a shared CPU, unlike wall time, it ignores other jobs

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    @property
    def images_per_cpu_s(self) -> float:
        return self.images / self.cpu_seconds if self.cpu_seconds > 0 else 0.0


class StepWindow:
    """Times whole steps after ``warmup`` untimed ones, between two device synchronisations.

    The window closes once it holds ``min_steps`` steps and ``min_seconds`` have passed, or at
    ``max_steps``. The clock is read without synchronising inside the window, so the device
    never waits for the host there. ``on_open``/``on_close`` run at the two ends (a profiler).
    """

    def __init__(
        self,
        warmup: int,
        min_steps: int,
        max_steps: int,
        min_seconds: float,
        sync: Callable[[], None],
        on_open: Callable[[], None] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        if warmup < 1 or min_steps < 1 or max_steps < min_steps:
            raise ValueError(
                f"need warmup >= 1 and 1 <= min_steps <= max_steps; got {warmup}, {min_steps}, {max_steps}"
            )
        self.warmup, self.min_steps, self.max_steps, self.min_seconds = (
            warmup,
            min_steps,
            max_steps,
            min_seconds,
        )
        self.sync, self.on_open, self.on_close = sync, on_open, on_close
        self.seen = 0
        self.steps = 0
        self.images = 0
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self.closed = False
        self._t0: float | None = None
        self._cpu0 = 0.0

    @property
    def total_steps(self) -> int:
        """The most steps a run needs to close the window."""
        return self.warmup + self.max_steps

    def step_end(self, images: int) -> bool:
        """Call after every training step; returns True once the window is closed."""
        if self.closed:
            return True
        self.seen += 1
        if self.seen == self.warmup:
            self.sync()
            if self.on_open:
                self.on_open()
            self._cpu0 = time.process_time()
            self._t0 = time.perf_counter()
            return False
        if self._t0 is None:
            return False
        self.steps += 1
        self.images += images
        elapsed = time.perf_counter() - self._t0
        if self.steps >= self.max_steps or (self.steps >= self.min_steps and elapsed >= self.min_seconds):
            self.sync()
            self.seconds = time.perf_counter() - self._t0
            self.cpu_seconds = time.process_time() - self._cpu0
            self.closed = True
            if self.on_close:
                self.on_close()
        return self.closed

    def result(self) -> Window:
        if not self.closed:
            raise RuntimeError(
                f"the timing window never closed ({self.seen} steps seen, warm-up {self.warmup})"
            )
        return Window(self.steps, self.images, self.seconds, self.cpu_seconds)


class WindowCallback(L.Callback):
    """Feeds a ``StepWindow`` from Lightning and stops the fit when it closes."""

    def __init__(self, window: StepWindow) -> None:
        self.window = window

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.window.step_end(int(batch[0].shape[0]) * trainer.world_size):
            trainer.should_stop = True


def seconds_per_batch(batches: Iterator[Any], n: int, sync: Callable[[], None]) -> float:
    """Mean seconds to produce one item of ``batches`` (after one untimed item)."""
    next(batches)
    sync()
    start = time.perf_counter()
    for _ in range(n):
        next(batches)
    sync()
    return (time.perf_counter() - start) / n


# --------------------------------------------------------------------------- the rows


def precision_mode(
    precision: str, device: torch.device
) -> tuple[Callable[[], AbstractContextManager[Any]], torch.dtype | None, bool]:
    """(autocast context factory, dtype to cast model and inputs to, use a GradScaler) for a Lightning precision."""
    mixed = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
    true = {
        "bf16-true": torch.bfloat16,
        "16-true": torch.float16,
        "64-true": torch.float64,
        "32-true": None,
        "32": None,
    }
    if precision in mixed:
        dtype = mixed[precision]
        return (
            (lambda: torch.autocast(device.type, dtype=dtype)),
            None,
            dtype == torch.float16 and device.type == "cuda",
        )
    if precision in true:
        return nullcontext, true[precision], False
    raise ValueError(f"precision {precision!r}: the raw loop supports {', '.join([*mixed, *true])}")


class RawLoop:
    """The floor: a hand-written loop with the same model, data, augmentation, noise, optimizer and precision.

    The data stay on the training device as uint8; each step is a gather of a shuffled batch,
    the same batched crop/flip as the in-memory datamodule, a noise draw, and the vanilla step
    ``CE(g(x~), y)`` with SGD and the per-step LR schedule.
    """

    name = "raw"

    def __init__(
        self, cfg: Mapping[str, Any], datamodule: Any, data_info: Mapping[str, Any], device: torch.device
    ) -> None:
        from ssd.data.augment import random_crop_flip, to_unit_float
        from ssd.noise import build_noise, training_generator
        from ssd.strategies.base import build_classifier_from_cfg
        from ssd.strategies.optim import build_optimizer, build_scheduler

        seed = int(cfg["seed"])
        torch.manual_seed(seed)
        self.autocast, self.dtype, use_scaler = precision_mode(str(cfg["trainer"]["precision"]), device)
        self.channels_last = bool(cfg["trainer"]["channels_last"])
        net = build_classifier_from_cfg(cfg, data_info).to(device)
        if self.dtype is not None:
            net = net.to(self.dtype)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = torch.compile(net) if cfg["trainer"].get("compile") else net
        self.optimizer = build_optimizer(cfg["optim"], net.parameters())
        self.scheduler = build_scheduler(self.optimizer, cfg["optim"]["scheduler"], 10_000, 100)["scheduler"]
        self.scaler = torch.amp.GradScaler(device.type) if use_scaler else None
        x, y = datamodule.split("train")
        self.x, self.y = x.to(device), y.to(device).long()
        self.batch_size = int(cfg["data"]["batch_size"])
        augment, padding, flip = (
            bool(datamodule.augment),
            int(datamodule.padding),
            bool(getattr(datamodule, "flip", True)),
        )
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        self.augment: Callable[[Tensor, torch.Generator], Tensor] = (
            (lambda b, g: random_crop_flip(b, padding, flip, generator=g, memory_format=fmt))
            if augment
            else (lambda b, g: to_unit_float(b))
        )
        self.noise = build_noise(cfg["noise"])
        self.noise_gen = training_generator(seed, 0, device)
        self.data_gen = torch.Generator(device=device).manual_seed(seed)
        self.device = device
        self._order = torch.empty(0, dtype=torch.int64, device=device)
        self._pos = 0

    def noisy_batch(self) -> tuple[Tensor, Tensor]:
        """Data + noise of one step: gather, crop/flip, memory format, noise draw."""
        if self._pos + self.batch_size > len(self._order):
            self._order = torch.randperm(len(self.y), device=self.device, generator=self.data_gen)
            self._pos = 0
        idx = self._order[self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        x = self.augment(self.x[idx], self.data_gen)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.dtype is not None:
            x = x.to(self.dtype)
        return self.noise(x, generator=self.noise_gen), self.y[idx]

    def step(self) -> None:
        x, y = self.noisy_batch()
        with self.autocast():
            loss = F.cross_entropy(self.net(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.scheduler.step()

    def run(self, window: StepWindow) -> None:
        self.net.train()
        for _ in range(window.total_steps):
            self.step()
            if window.step_end(self.batch_size):
                return

    def data_noise_batches(self) -> Iterator[Any]:
        while True:
            yield self.noisy_batch()


class LightningRow:
    """One strategy's training step through the real Lightning path (module, trainer, datamodule)."""

    def __init__(
        self, name: str, cfg: dict[str, Any], datamodule: Any, data_info: Mapping[str, Any], work_dir: Path
    ) -> None:
        from ssd.train import build_module

        self.name = name
        self.cfg = cfg
        self.datamodule = datamodule
        self.work_dir = work_dir / name
        self.frozen_stages = frozen_stages(cfg)
        L.seed_everything(int(cfg["seed"]), workers=True, verbose=False)
        self.module = build_module(cfg, data_info, build_frozen(cfg, data_info))

    def run(self, window: StepWindow) -> None:
        from ssd.train import build_trainer

        cfg = {
            **self.cfg,
            "trainer": {
                **self.cfg["trainer"],
                "max_steps": window.total_steps,
                "max_epochs": 1_000_000,
                "enable_model_summary": False,
            },
        }
        trainer = build_trainer(cfg, self.work_dir, None, [WindowCallback(window)])
        trainer.fit(self.module, datamodule=self.datamodule)

    def data_noise_batches(self) -> Iterator[Any]:
        """The datamodule path of a training step: loader, transfer, crop/flip, then the module's noise draw."""
        device = self.module.device
        while True:
            for batch in self.datamodule.train_dataloader():
                batch = move_data_to_device(batch, device)
                if hasattr(self.datamodule, "device_batch"):  # in-memory: crop/flip on the device
                    x, y, _ = self.datamodule.device_batch(batch, augment=self.datamodule.augment)
                else:  # image folders: augmented in the loader's workers
                    x, y, _ = self.datamodule.on_after_batch_transfer(batch, 0)
                yield self.module.add_noise(x), y


# --------------------------------------------------------------------------- running


@dataclass
class RowResult:
    name: str
    kind: str  # raw | lightning
    frozen: dict[str, str]
    variant: list[str] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    rounds: list[int] = field(default_factory=list)
    data_noise_s: list[float] = field(default_factory=list)
    error: str | None = None


def run_rounds(
    rows: Sequence[Any], results: dict[str, RowResult], settings: BenchSettings, sync: Callable[[], None]
) -> float:
    """Measure every row once per round, within ``budget_s`` after ``min_repeats`` rounds; returns wall seconds."""
    start = time.perf_counter()
    cost: dict[str, float] = {}
    for r in range(settings.repeats):
        for row in rows:
            res = results[row.name]
            if res.error is not None:
                continue
            if (
                r >= settings.min_repeats
                and time.perf_counter() - start + cost.get(row.name, 0.0) > settings.budget_s
            ):
                continue
            window = StepWindow(
                settings.warmup + (1 if r == 0 else 0),
                settings.min_steps,
                settings.max_steps,
                settings.min_window_s,
                sync,
            )
            began = time.perf_counter()
            try:
                row.run(window)
                res.windows.append(window.result())
            except Exception as err:  # noqa: BLE001 - a broken strategy is reported, not fatal
                if row.name == "raw":
                    raise
                res.error = f"{type(err).__name__}: {err}"
                log.warning("%s failed: %s", row.name, res.error)
                continue
            res.rounds.append(r)
            cost[row.name] = time.perf_counter() - began
            if len(res.data_noise_s) < 3:  # cheap, but no need to repeat it every round
                res.data_noise_s.append(
                    seconds_per_batch(row.data_noise_batches(), settings.data_noise_batches, sync)
                )
            log.info(
                "round %d %-16s %8.1f img/s (%d steps)",
                r,
                row.name,
                res.windows[-1].images_per_s,
                res.windows[-1].steps,
            )
    return time.perf_counter() - start


def paired_ratio(a: RowResult, b: RowResult, rate: str = "images_per_s") -> float | None:
    """Median over the rounds both rows ran of ``rate`` of ``a`` over ``b`` (load drift cancels per round)."""
    ips_b = {r: getattr(w, rate) for r, w in zip(b.rounds, b.windows, strict=True)}
    ratios = [getattr(w, rate) / ips_b[r] for r, w in zip(a.rounds, a.windows, strict=True) if ips_b.get(r)]
    return statistics.median(ratios) if ratios else None


def summarise(results: dict[str, RowResult], batch_size: int, cpu_clock: bool) -> list[dict[str, Any]]:
    """Per row: median images/s with its spread, step time, ratios to raw and vanilla, data + noise share."""
    raw, vanilla = results.get("raw"), results.get("vanilla")
    rows = []
    for res in results.values():
        row: dict[str, Any] = {
            "name": res.name,
            "kind": res.kind,
            "frozen": res.frozen,
            "variant": res.variant,
            "error": res.error,
        }
        if res.windows:
            ips = [w.images_per_s for w in res.windows]
            median = statistics.median(ips)
            step_s = batch_size / median
            data_noise = statistics.median(res.data_noise_s) if res.data_noise_s else None
            row.update(
                images_per_s=median,
                images_per_s_min=min(ips),
                images_per_s_max=max(ips),
                spread=(max(ips) - min(ips)) / median,
                repeats=len(ips),
                steps=[w.steps for w in res.windows],
                step_ms=1000 * step_s,
                vs_raw=paired_ratio(res, raw) if raw and raw.windows else None,
                vs_vanilla=paired_ratio(res, vanilla) if vanilla and vanilla.windows else None,
                # best windows: on a shared machine load only ever slows a window down
                best_vs_raw=max(ips) / max(w.images_per_s for w in raw.windows)
                if raw and raw.windows
                else None,
                best_vs_vanilla=max(ips) / max(w.images_per_s for w in vanilla.windows)
                if vanilla and vanilla.windows
                else None,
                # the same ratios in this process's CPU time (training on a CPU): robust to other jobs' load
                cpu_vs_raw=paired_ratio(res, raw, "images_per_cpu_s")
                if cpu_clock and raw and raw.windows
                else None,
                cpu_vs_vanilla=paired_ratio(res, vanilla, "images_per_cpu_s")
                if cpu_clock and vanilla and vanilla.windows
                else None,
                data_noise_ms=None if data_noise is None else 1000 * data_noise,
                data_noise_share=None if data_noise is None else data_noise / step_s,
                per_round_images_per_s=dict(zip(res.rounds, ips, strict=True)),
            )
        rows.append(row)
    return rows


def check_targets(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The three ratios of issue #6 and whether each meets its target (None: row not measured)."""
    by_name = {r["name"]: r for r in rows if r.get("images_per_s")}
    vanilla = by_name.get("vanilla", {})
    vs_raw = vanilla.get("vs_raw")
    share = vanilla.get("data_noise_share")
    students = [r for r in by_name.values() if "teacher" in r["frozen"] and r.get("vs_vanilla")]

    def cpu_inverse(r: Mapping[str, Any]) -> float | None:
        return 1 / r["cpu_vs_vanilla"] if r.get("cpu_vs_vanilla") else None

    return {
        "vanilla_vs_raw": {
            "value": vs_raw,
            "target": f">= {TARGET_VANILLA_VS_RAW}",
            "met": None if vs_raw is None else vs_raw >= TARGET_VANILLA_VS_RAW,
            "cpu_time_value": vanilla.get("cpu_vs_raw"),
        },
        "student_step_vs_vanilla": {
            r["name"]: {
                "value": 1 / r["vs_vanilla"],
                "target": f"<= {TARGET_STUDENT_STEP}",
                "met": 1 / r["vs_vanilla"] <= TARGET_STUDENT_STEP,
                "cpu_time_value": cpu_inverse(r),
            }
            for r in students
        },
        "data_noise_share": {
            "value": share,
            "target": f"<= {TARGET_DATA_NOISE_SHARE}",
            "met": None if share is None else share <= TARGET_DATA_NOISE_SHARE,
        },
    }


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def format_table(report: Mapping[str, Any]) -> str:
    """The printed table: one line per row, then the targets."""
    s, m = report["settings"], report["machine"]
    lines = [
        f"ssd.bench  {s['model']}  batch {s['batch_size']}  {report['resolved']['precision']}"
        f"{'  channels_last' if report['resolved']['channels_last'] else ''}{'  compiled' if s['compile'] else ''}"
        f"  {m['device']}  torch {m['torch']}  lightning {m['lightning']}  {m['date']}",
        f"{'row':<16} {'frozen stages':<36} {'img/s':>8} {'[min - max]':>17} {'step ms':>8} {'x raw':>6} {'x vanilla':>9} {'data+noise':>10}",
    ]
    for r in report["rows"]:
        frozen = ", ".join(f"{k}={v}" for k, v in r["frozen"].items()) or "-"
        label = "raw PyTorch loop" if r["kind"] == "raw" else r["name"] + ("*" if r["variant"] else "")
        if not r.get("images_per_s"):
            lines.append(f"{label:<16} {frozen:<36} not measured: {r.get('error') or 'skipped'}")
            continue
        lines.append(
            f"{label:<16} {frozen:<36} {r['images_per_s']:8.1f} {'[' + format(r['images_per_s_min'], '.1f') + ' - ' + format(r['images_per_s_max'], '.1f') + ']':>17}"
            f" {r['step_ms']:8.1f} {_fmt(r['vs_raw'], '6.2f')} {_fmt(r['vs_vanilla'], '9.2f')} {_fmt(None if r['data_noise_share'] is None else 100 * r['data_noise_share'], '9.1f', '%')}"
        )
    t = report["targets"]

    def verdict(met: bool | None) -> str:
        return "n/a" if met is None else "met" if met else "NOT met"

    def cpu(v: Mapping[str, Any]) -> str:
        return "" if v.get("cpu_time_value") is None else f" [CPU time: {v['cpu_time_value']:.3f}]"

    lines.append(
        f"targets: vanilla/raw images/s {_fmt(t['vanilla_vs_raw']['value'], '.3f')}{cpu(t['vanilla_vs_raw'])}"
        f" (>= {TARGET_VANILLA_VS_RAW}: {verdict(t['vanilla_vs_raw']['met'])})"
        f"; data+noise share of vanilla's step {_fmt(None if t['data_noise_share']['value'] is None else 100 * t['data_noise_share']['value'], '.1f', '%')}"
        f" (<= {100 * TARGET_DATA_NOISE_SHARE:.0f}%: {verdict(t['data_noise_share']['met'])})"
    )
    for name, v in t["student_step_vs_vanilla"].items():
        lines.append(
            f"         {name} student step / vanilla step {v['value']:.3f}{cpu(v)} (<= {TARGET_STUDENT_STEP}: {verdict(v['met'])})"
        )
    for r in report["rows"]:
        if r["variant"]:
            lines.append(f"*{r['name']}: {' '.join(r['variant'])} (its default config trains nothing)")
    load = m.get("load_before_after")
    lines.append(
        f"ratios: medians of per-round ratios, rows interleaved, {max((r.get('repeats') or 0) for r in report['rows'])} rounds at most;"
        f" measuring took {report['wall_s']:.0f} s"
        + (f"; load average {load[0]:.1f} -> {load[1]:.1f}" if load else "")
    )
    return "\n".join(lines)


def profile_row(
    row: Any, settings: BenchSettings, device: torch.device, sync: Callable[[], None], out_dir: Path
) -> str:
    """``torch.profiler`` over ``profile_steps`` timed steps of one row: the top ops table (and a Chrome trace)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    prof = profile(activities=activities, record_shapes=False)
    window = StepWindow(
        settings.warmup + 1, settings.profile_steps, settings.profile_steps, 0.0, sync, prof.start, prof.stop
    )
    row.run(window)
    out_dir.mkdir(parents=True, exist_ok=True)
    trace = out_dir / f"profile-{row.name}.json"
    prof.export_chrome_trace(str(trace))
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=25)
    return f"profile of {row.name} over {settings.profile_steps} steps (Chrome trace: {trace})\n{table}"


def quiet_lightning() -> None:
    """The bench fits many times: keep Lightning's per-fit banners and hints out of the table."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")  # frozen stages, on purpose


def run_benchmark(settings: BenchSettings) -> dict[str, Any]:
    """Build every row, measure them in rounds, return the report (also what is written as JSON)."""
    quiet_lightning()
    load_before = _load_average()
    previous = torch.get_num_threads()
    torch.set_num_threads(resolve_threads(settings.threads))
    try:
        report = _measure(settings)
    finally:
        torch.set_num_threads(previous)
    report["machine"]["load_before_after"] = None if load_before is None else [load_before, _load_average()]
    return report


def _measure(settings: BenchSettings) -> dict[str, Any]:
    from ssd.pipeline import build_datamodule

    device = resolve_device(settings.device)
    sync = synchronizer(device)
    names = settings.strategies if settings.strategies is not None else discover_strategies()
    if "vanilla" not in names:
        names = ["vanilla", *names]  # the reference of every ratio
    base_cfg = compose_run_cfg("vanilla", settings, device)
    datamodule, data_info = build_datamodule(base_cfg)
    results: dict[str, RowResult] = {"raw": RowResult("raw", "raw", {})}
    rows: list[Any] = [RawLoop(base_cfg, datamodule, data_info, device)]
    with tempfile.TemporaryDirectory(prefix="ssd-bench-") as tmp:
        for name in names:
            results[name] = RowResult(name, "lightning", {})
            try:
                cfg, results[name].variant = (
                    (base_cfg, []) if name == "vanilla" else row_config(name, settings, device)
                )
                row = LightningRow(name, cfg, datamodule, data_info, Path(tmp))
            except Exception as err:  # noqa: BLE001 - e.g. a strategy whose code is not written yet
                results[name].error = f"{type(err).__name__}: {err}"
                log.warning("skipping %s: %s", name, results[name].error)
                continue
            results[name].frozen = row.frozen_stages
            rows.append(row)
        wall = run_rounds(rows, results, settings, sync)
        out = (
            Path(settings.out)
            if settings.out
            else Path(base_cfg["paths"]["log_dir"]) / "bench" / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
        )
        profiles = [
            profile_row(row, settings, device, sync, out.parent)
            for row in rows
            if row.name in settings.profile
        ]
    table_rows = summarise(results, settings.batch_size, cpu_clock=device.type == "cpu")
    return {
        "settings": asdict(settings),
        "resolved": {
            "device": str(device),
            "precision": base_cfg["trainer"]["precision"],
            "channels_last": bool(base_cfg["trainer"]["channels_last"]),
            "threads": torch.get_num_threads(),
            "data": base_cfg["data"]["_target_"],
            "noise": base_cfg["noise"],
        },
        "machine": {
            "device": describe_device(device),
            "host": platform.node(),
            "torch": torch.__version__,
            "lightning": L.__version__,
            "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M"),
        },
        "rows": table_rows,
        "targets": check_targets(table_rows),
        "wall_s": wall,
        "profiles": profiles,
        "out": str(out),
    }


def _load_average() -> float | None:
    """The 1-minute load average (a CPU shared with other jobs makes every timing slower and noisier)."""
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):
        return None


# --------------------------------------------------------------------------- entry point


def parse_args(argv: Sequence[str] | None = None) -> BenchSettings:
    d = BenchSettings()
    p = argparse.ArgumentParser(
        prog="python -m ssd.bench",
        description="Train images/s of every strategy (real Lightning path) against a hand-written PyTorch loop.",
        epilog="Positional KEY=VALUE arguments are Hydra overrides of the run config, e.g. noise.sigma=0.2 data=cifar10.",
    )
    p.add_argument("overrides", nargs="*", help="Hydra overrides of the run config (applied last)")
    p.add_argument("--model", default=d.model, help="conf/model option (default %(default)s)")
    p.add_argument(
        "--denoiser",
        default=d.denoiser,
        help=f"conf/denoiser option of the denoise/joint rows; auto: {CPU_DENOISER} on a CPU, the run default on a GPU",
    )
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument(
        "--precision", default=d.precision, help="auto (bf16 where supported) or a Lightning precision"
    )
    p.add_argument("--device", default=d.device, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--channels-last", default=d.channels_last, choices=("auto", "true", "false"))
    p.add_argument(
        "--compile", action="store_true", help="torch.compile the trained networks (trainer.compile)"
    )
    p.add_argument(
        "--threads",
        default=d.threads,
        help="CPU threads; auto: torch's default, 1 when the CPU is already fully loaded",
    )
    p.add_argument("--strategies", default=None, help="comma list (default: every conf/strategy config)")
    p.add_argument("--image-size", type=int, default=d.image_size, help="synthetic image size")
    p.add_argument("--num-classes", type=int, default=d.num_classes, help="synthetic classes")
    p.add_argument(
        "--warmup", type=int, default=d.warmup, help="untimed steps per run (one more in the first round)"
    )
    p.add_argument("--min-steps", type=int, default=d.min_steps, help="timed steps per run, at least")
    p.add_argument("--max-steps", type=int, default=d.max_steps, help="timed steps per run, at most")
    p.add_argument(
        "--min-window-s",
        type=float,
        default=d.min_window_s,
        help="a timed window lasts at least this (unless max-steps)",
    )
    p.add_argument("--repeats", type=int, default=d.repeats, help="rounds at most")
    p.add_argument(
        "--min-repeats", type=int, default=d.min_repeats, help="rounds every row gets whatever the budget"
    )
    p.add_argument(
        "--budget-s",
        type=float,
        default=d.budget_s,
        help="no further rounds for a row once they would pass this",
    )
    p.add_argument("--data-noise-batches", type=int, default=d.data_noise_batches)
    p.add_argument(
        "--progress-bar", action="store_true", help="keep Lightning's progress bar on (as in training runs)"
    )
    p.add_argument(
        "--profile", default="", help="comma list of rows to profile with torch.profiler after measuring"
    )
    p.add_argument("--profile-steps", type=int, default=d.profile_steps)
    p.add_argument("--out", default=None, help="JSON path (default outputs/bench/bench-<time>.json)")
    a = p.parse_args(argv)
    bad = [o for o in a.overrides if "=" not in o]
    if bad:
        p.error(f"overrides must be KEY=VALUE, got {bad}")
    if (
        a.warmup < 1
        or a.min_steps < 1
        or a.max_steps < a.min_steps
        or a.min_repeats < 1
        or a.repeats < a.min_repeats
    ):
        p.error("need --warmup >= 1, 1 <= --min-steps <= --max-steps and 1 <= --min-repeats <= --repeats")
    return BenchSettings(
        model=a.model,
        denoiser=a.denoiser,
        batch_size=a.batch_size,
        precision=a.precision,
        device=a.device,
        channels_last=a.channels_last,
        compile=a.compile,
        threads=a.threads,
        strategies=[s for s in a.strategies.split(",") if s] if a.strategies else None,
        image_size=a.image_size,
        num_classes=a.num_classes,
        warmup=a.warmup,
        min_steps=a.min_steps,
        max_steps=a.max_steps,
        min_window_s=a.min_window_s,
        repeats=a.repeats,
        min_repeats=a.min_repeats,
        budget_s=a.budget_s,
        data_noise_batches=a.data_noise_batches,
        progress_bar=a.progress_bar,
        profile=[s for s in a.profile.split(",") if s],
        profile_steps=a.profile_steps,
        out=a.out,
        overrides=list(a.overrides),
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = parse_args(argv)
    report = run_benchmark(settings)
    out = Path(report["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    for text in report["profiles"]:
        print(text)
    print(format_table(report))
    print(f"written {out}")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
