"""``python -m ssd.run``: compose the config with Hydra, validate it, run the job.

Thin on purpose: ``train(cfg)`` does the work and returns the results dict, so tests
and notebooks call it directly with a composed config.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from ssd.config import ConfigError, validate
from ssd.dist import is_launch_rank_zero
from ssd.launch import distributed_job

log = logging.getLogger("ssd")


def resolve_auto(cfg: DictConfig) -> None:
    """Turn ``auto`` device-dependent settings into concrete ones, once, in the launching process."""
    from ssd.train import resolve_channels_last, resolve_precision

    accelerator = str(cfg.trainer.accelerator)
    cfg.trainer.precision = resolve_precision(str(cfg.trainer.precision), accelerator)
    cfg.trainer.channels_last = resolve_channels_last(cfg.trainer.channels_last, accelerator)


def run_dir_and_group() -> tuple[Path, str]:
    """This job's output folder and its W&B group (the sweep folder for multiruns)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    if hc.mode == RunMode.MULTIRUN:
        return run_dir, Path(hc.sweep.dir).name
    return run_dir, f"{run_dir.parent.name}/{run_dir.name}"


def train(cfg: DictConfig, run_dir: Path | None = None, group: str | None = None) -> dict[str, Any]:
    """Validate ``cfg`` and run its pipeline into ``run_dir``; return the results."""
    from ssd.pipeline import run_pipeline

    validate(cfg)
    resolve_auto(cfg)
    if run_dir is None:
        run_dir, group = run_dir_and_group()
    container = OmegaConf.to_container(cfg, resolve=True)
    if is_launch_rank_zero():
        run_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(container), run_dir / "config.resolved.yaml")
    results = run_pipeline(container, run_dir, group or run_dir.name)
    if is_launch_rank_zero():
        log.info(
            "%s done: noisy test acc %.4f, clean acc %.4f -> %s",
            results.get("strategy"),
            results.get("test_acc") or float("nan"),
            results.get("clean_acc") or float("nan"),
            run_dir / "results.json",
        )
    return results


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the noisy test accuracy (for Hydra sweepers)."""
    try:
        validate(cfg)  # before any other rank is started
        run_dir, group = run_dir_and_group()
        with distributed_job(cfg, run_dir):  # ssd.launch: this job's own DDP group, when it asks for one
            results = train(cfg, run_dir, group)
    except ConfigError as err:
        print(f"ssd: config error: {err}", file=sys.stderr)
        sys.exit(2)
    return results.get("test_acc")


if __name__ == "__main__":
    main()
