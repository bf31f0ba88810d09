"""ssd: simple self-distillation (Sasaya et al., ICIP 2023) and its baselines for noisy image classification.

``ssd.load(run_dir, stage="main")``: a finished run's trained network (``ssd/load.py``), imported on
first use so that ``import ssd`` does not import torch.
"""

from typing import Any

from ssd import resolvers  # noqa: F401 - registers the OmegaConf resolvers ssd's configs use


def __getattr__(name: str) -> Any:
    if name == "load":  # a callable module: ssd.load(run_dir) and ssd.load.info(run_dir)
        import importlib

        return importlib.import_module("ssd.load")
    raise AttributeError(f"module 'ssd' has no attribute {name!r}")
