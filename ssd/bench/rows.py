"""The benchmark's rows: each strategy's run config, its frozen stages (random weights), its Lightning fit."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch import nn

from ssd.bench.settings import CPU_DENOISER, PREFERRED_ORDER, ROW_VARIANTS, BenchSettings
from ssd.bench.timing import StepWindow, WindowCallback
from ssd.callbacks import last_checkpoint
from ssd.console import progress_bar
from ssd.data.protocol import DataFacts
from ssd.fit import build_module, build_trainer
from ssd.parts import strategy_class
from ssd.paths import conf_dir
from ssd.run import prepare
from ssd.seeding import stage_seed
from ssd.stage_info import StageInfo
from ssd.stages import stage_config


def discover_strategies() -> list[str]:
    """Every strategy config in ``conf/strategy``, in table order."""
    names = sorted(p.stem for p in (conf_dir() / "strategy").glob("*.yaml"))
    return [n for n in PREFERRED_ORDER if n in names] + [n for n in names if n not in PREFERRED_ORDER]


def run_overrides(
    strategy: str, settings: BenchSettings, device: torch.device, variant: Sequence[str] = ()
) -> list[str]:
    """Hydra overrides of one row's run config: the bench's choices, the row's variant, then the user's."""
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
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        cfg = compose(config_name="config", overrides=run_overrides(strategy, settings, device, variant))
    return prepare(cfg)


def trains(cfg: Mapping[str, Any]) -> bool:
    """Whether this config's main stage has a training step (some only evaluate frozen stages)."""
    return bool(strategy_class(cfg["strategy"]).trains)


def row_config(name: str, settings: BenchSettings, device: torch.device) -> tuple[dict[str, Any], list[str]]:
    """(run config, variant overrides) of a row: a strategy's default config, or a named ``ROW_VARIANTS`` row."""
    strategy, variant = ROW_VARIANTS.get(name, (name, []))
    cfg = compose_run_cfg(strategy, settings, device, variant)
    if not trains(cfg):
        raise ValueError(f"{name}'s config trains nothing (evaluation only): it has no training step to time")
    return cfg, list(variant)


def build_frozen(cfg: Mapping[str, Any], data_info: DataFacts) -> dict[str, nn.Module]:
    """The networks of the stages ``cfg``'s strategy requires, with random weights.

    Built as ``ssd.pipeline`` builds them (``stage_config`` + ``build_module``, recursively), only not trained.
    """
    frozen: dict[str, nn.Module] = {}
    section = cfg["strategy"]
    cls = strategy_class(section)
    for role in cls.requires:
        stage_cfg = stage_config(cfg, cls.role_config(section, role))
        frozen[role] = build_module(stage_cfg, data_info, build_frozen(stage_cfg, data_info)).net
    return frozen


def frozen_stages(cfg: Mapping[str, Any]) -> dict[str, str]:
    """``{role: strategy}`` of the stages this row's strategy requires (for the table)."""
    section = cfg["strategy"]
    cls = strategy_class(section)
    return {role: str(cls.role_config(section, role)["strategy"]) for role in cls.requires}


class LightningRow:
    """One strategy's training step through the real Lightning path (module, trainer, datamodule)."""

    def __init__(
        self, name: str, cfg: dict[str, Any], datamodule: Any, data_info: DataFacts, work_dir: Path
    ) -> None:
        self.name = name
        self.cfg = cfg
        self.datamodule = datamodule
        self.work_dir = work_dir / name
        self.frozen_stages = frozen_stages(cfg)
        L.seed_everything(stage_seed(cfg), workers=True, verbose=False)
        self.module = build_module(cfg, data_info, build_frozen(cfg, data_info))

    def run(self, window: StepWindow) -> None:
        cfg = {
            **self.cfg,
            "trainer": {
                **self.cfg["trainer"],
                "max_steps": window.total_steps,
                "max_epochs": 1_000_000,
                "enable_model_summary": False,
            },
        }
        stage = StageInfo(
            dir=self.work_dir,
            role="main",
            group="bench",
            label=None,
            progress_bar=bool(cfg["trainer"]["enable_progress_bar"]),
        )
        callbacks = [last_checkpoint(stage), WindowCallback(window), progress_bar(stage)]
        trainer = build_trainer(cfg, stage, [], [c for c in callbacks if c is not None])
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
