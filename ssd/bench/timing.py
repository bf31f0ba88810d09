"""Timing: windows of whole training steps between two device synchronisations, and interleaved rounds.

Rows are measured in rounds, one fit (or raw run) per row per round, so load drift on a shared
machine hits every row alike; ratios are medians of per-round ratios.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning as L

from ssd.bench.settings import BenchSettings, log


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
