"""What a data path in a config means: ``~`` expanded, relative to where the user launched from.

Shared by every source family that reads files (CIFAR arrays, image folders).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "SSD_DATA_DIR"


def absolute_path(path: str | Path) -> Path:
    """Expand ``~``; make a relative path relative to where the user launched from.

    Hydra may change the working directory (``hydra.job.chdir``); its original cwd is what a
    relative path in a config means.
    """
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.utils import get_original_cwd

        if HydraConfig.initialized():
            return Path(get_original_cwd()) / p
    except (ImportError, ValueError):
        pass
    return p.absolute()


def resolve_data_root(cfg_root: str | Path | None) -> Path:
    """The dataset root: ``$SSD_DATA_DIR`` when set, else the config value ``data.root``."""
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return absolute_path(env)
    if cfg_root is None or str(cfg_root).strip() == "":
        raise ValueError(
            f"data.root is not set and {ENV_VAR} is empty: set one of them to the dataset folder"
        )
    return absolute_path(cfg_root)
