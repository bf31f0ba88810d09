"""Checks of what a config points at on this machine: devices, writable folders, weights files.

Each runs before any data is read or any network is built, and fails with a ConfigError naming
the key, the value and what is allowed. (Whether a weights file fits the network a stage
builds is ``ssd.validate``'s: it builds that network on the meta device.)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ssd.config.errors import ConfigError

# ----------------------------------------------------------------------------- devices


def check_devices(trainer: Mapping[str, Any]) -> None:
    """``trainer.accelerator`` exists on this machine and ``trainer.devices`` does not exceed it."""
    accelerator = trainer["accelerator"]
    cuda = torch.cuda.is_available()
    if accelerator in ("gpu", "cuda") and not cuda:
        raise ConfigError(
            f"trainer.accelerator={accelerator!r} is not allowed: this machine has no CUDA GPU that torch "
            f"{torch.__version__} can use; use trainer.accelerator=cpu (or auto)"
        )
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("trainer.accelerator='mps' is not allowed: this machine has no Apple MPS device")
    devices = trainer["devices"]
    if not isinstance(devices, int) or isinstance(devices, bool) or devices < 1:
        return  # 'auto' / -1: as many as there are
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and cuda):
        have, what = torch.cuda.device_count(), "CUDA GPU(s)"
    elif accelerator == "mps":
        have, what = 1, "MPS device"
    else:
        have, what = os.cpu_count() or 1, "CPU cores (one process per device)"
    if devices > have:
        raise ConfigError(
            f"trainer.devices={devices} is not allowed: this machine has {have} {what} "
            f"(trainer.accelerator={accelerator}); use at most {have}"
        )


# ----------------------------------------------------------------------------- folders


def check_writable(path: Any, key: str) -> None:
    """``path`` is a folder this user can write, or one that can be created (its nearest existing
    ancestor is a writable folder). Nothing is created."""
    if path is None or not str(path).strip():
        raise ConfigError(f"{key}={path!r} is not allowed: must be a folder path")
    target = Path(str(path)).expanduser().absolute()
    probe = target
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(
            f"{key}={str(path)!r} is not allowed: {probe} is a file, not a folder; "
            "must be a folder this user can create and write"
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        where = "it" if probe == target else f"its parent {probe}"
        raise ConfigError(
            f"{key}={str(path)!r} is not allowed: {where} cannot be written by this user; "
            "must be a folder this user can create and write"
        )


# ----------------------------------------------------------------------------- checkpoints


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:160] if text else ''}"


def read_weights(path: Any, key: str) -> dict[str, torch.Tensor]:
    """The network weights in a ``net.pt`` state dict or a Lightning ``.ckpt`` (its ``net.*`` part)."""
    allowed = "must be a net.pt (a network's state_dict) or a Lightning .ckpt written by ssd"
    file = Path(str(path)).expanduser()
    if not file.is_file():
        raise ConfigError(f"{key}={str(path)!r} is not allowed: no such file; {allowed} that exists")
    try:
        try:
            state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise
            state = torch.load(file, map_location="cpu", weights_only=True)  # the pre-zip format
    except Exception as err:  # noqa: BLE001 - truncated zip, random bytes, pickled objects, ...
        raise ConfigError(
            f"{key}={str(path)!r} is not allowed: not a readable PyTorch weights file, e.g. truncated or "
            f"not a checkpoint ({_first_line(err)}); {allowed}"
        ) from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = {k[len("net.") :]: v for k, v in state["state_dict"].items() if k.startswith("net.")}
    if (
        not isinstance(state, Mapping)
        or not state
        or not all(isinstance(v, torch.Tensor) for v in state.values())
    ):
        raise ConfigError(f"{key}={str(path)!r} is not allowed: it holds no network weights; {allowed}")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ConfigError(
            f"{key}={str(path)!r} is not allowed: {len(bad)} of its tensors hold NaN or infinite values "
            f"({', '.join(map(str, bad[:3]))}{', ...' if len(bad) > 3 else ''}), e.g. saved from a run that "
            "diverged; must be finite weights"
        )
    return {str(k).replace("_orig_mod.", ""): v for k, v in state.items()}
