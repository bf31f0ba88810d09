"""Shared test utilities: compose the real config tree, run the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from ssd.paths import conf_dir

REPO = Path(__file__).resolve().parents[1]

# tiny, fast, offline settings for end-to-end runs (on top of data=synthetic)
TINY = [
    "data=synthetic",
    "model=resnet20",
    "logger=none",
    "trainer.max_epochs=2",
    "trainer.accelerator=cpu",
    "trainer.precision=32-true",
    "trainer.enable_progress_bar=false",
    "noise.sigma=0.1",
]

#: a little more data than TINY and one epoch: sweeps, DDP and resume tests of many runs
SMALL = [
    *TINY,
    "data.train=64",
    "data.test=32",
    "data.val_size=0",
    "data.batch_size=16",
    "trainer.max_epochs=1",
    "noise.eval_levels=[0,0.3]",
]

#: environment for subprocess runs of tiny models: one OpenMP thread. On a shared 2-core machine two
#: spinning OpenMP threads per process make tiny runs several times slower, not faster.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def compose_cfg(
    overrides: list[str] | None = None, tmp_path: Path | None = None, return_hydra: bool = False
) -> DictConfig:
    """The real config with ``overrides``, as ``python -m ssd.run`` would compose it."""
    extra = [f"paths.log_dir={tmp_path}/outputs", f"paths.cache_dir={tmp_path}/cache"] if tmp_path else []
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        return compose(
            config_name="config", overrides=[*extra, *(overrides or [])], return_hydra_config=return_hydra
        )


def run_cli(
    args: list[str], tmp_path: Path, timeout: int = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``python -m ssd.run ARGS`` in a subprocess, with outputs and cache under ``tmp_path``."""
    full_env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONWARNINGS": "ignore", **(env or {})}
    cmd = [
        sys.executable,
        "-m",
        "ssd.run",
        f"paths.log_dir={tmp_path}/outputs",
        f"paths.cache_dir={tmp_path}/cache",
        *args,
    ]
    return subprocess.run(
        cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout, check=False
    )


def read_results(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "results.json").read_text())


def classifier(arch: str, num_classes: int, mean: Any, std: Any, **kwargs: Any) -> Any:
    """The ``Classifier`` of ``conf/model/<arch>.yaml``'s backbone (``resnet18`` is ``resnet18_cifar``)."""
    from ssd import models

    backbone = getattr(models, "resnet18_cifar" if arch == "resnet18" else arch)(num_classes, **kwargs)
    return models.Classifier(backbone, mean, std)


def datamodule(option: str, **settings: Any) -> Any:
    """``data=<option>`` as a run builds it (its YAML is where the defaults are), ``settings`` over it."""
    from ssd.parts import build_datamodule
    from ssd.validate import resolve_auto

    cfg = compose_cfg([f"data={option}", "trainer.accelerator=cpu", "trainer.channels_last=false"])
    return build_datamodule({"data": {**resolve_auto(cfg)["data"], **settings}})


#: every shared datamodule setting, for a datamodule built in Python from arrays (``InMemoryDataModule``)
DATA_SETTINGS: dict[str, Any] = {
    "name": "arrays",
    "pad_mode": "zeros",
    "batch_size": 32,
    "eval_batch_size": None,
    "val_size": 0.1,
    "split_seed": 0,
    "seed": 0,
    "augment": True,
    "channels_last": False,
    "limit_train": None,
    "limit_test": None,
}
