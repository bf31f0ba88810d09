"""The floor of framework overhead: a hand-written training loop with the same work per step as ssd's."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ssd.bench.timing import StepWindow
from ssd.data.augment import random_crop_flip, to_unit_float
from ssd.data.protocol import DataFacts
from ssd.parts import build_noise, classifier_factory, optimizer_factory, scheduler_factory
from ssd.seeding import generator, stage_seed


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
        self, cfg: Mapping[str, Any], datamodule: Any, data_info: DataFacts, device: torch.device
    ) -> None:
        seed = stage_seed(cfg)  # vanilla's: the row it is compared with
        torch.manual_seed(seed)
        self.autocast, self.dtype, use_scaler = precision_mode(str(cfg["trainer"]["precision"]), device)
        self.channels_last = bool(cfg["trainer"]["channels_last"])
        net = classifier_factory(cfg["model"], data_info)().to(device)
        if self.dtype is not None:
            net = net.to(self.dtype)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = torch.compile(net) if cfg["trainer"].get("compile") else net
        self.optimizer = optimizer_factory(cfg["optim"])(net.parameters())
        self.scheduler = scheduler_factory(cfg["optim"])(self.optimizer, 10_000, 100)
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
        self.noise_gen = generator(seed, "noise", 0, 0, device)
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
