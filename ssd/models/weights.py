"""Local pretrained weights for a backbone (never downloaded): ``pretrained=<state-dict file>``."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

Net = TypeVar("Net", bound=nn.Module)


def load_pretrained(module: Net, path: str | Path | None) -> Net:
    """Load a local state dict file into ``module`` (nothing when ``path`` is None); return ``module``.

    Accepts a plain state dict or ``{"state_dict": ...}``, and strips the ``module.`` prefix that
    DDP-saved dicts carry. If the file's ``fc`` has a different number of classes than ``module``
    (ImageNet weights, CIFAR head), ``fc`` keeps its fresh init and a warning says so; every other
    key must match exactly.
    """
    if path is None:
        return module
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file {str(path)!r} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = module.state_dict()
    head = [k for k in state if k.startswith("fc.") and k in own and state[k].shape != own[k].shape]
    if head:
        warnings.warn(f"{path}: fc has a different number of classes; keeping a fresh head", stacklevel=2)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (head and k.startswith("fc."))]
    if missing or unexpected:
        raise RuntimeError(f"{path}: missing keys {missing}, unexpected keys {unexpected}")
    return module
