"""Checks of what a config points at on this machine: devices, writable folders, checkpoint files.

Each runs before any data is read or any network is built (a checkpoint is read once, on the
CPU, and compared with its network built on the ``meta`` device: no memory, no compute), and
fails with a ConfigError naming the key, the value and what is allowed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ssd.config.errors import ConfigError
from ssd.models import ARCHITECTURES
from ssd.strategies.base import NoisyImageModule
from ssd.strategies.denoiser import TrainDenoiser, build_denoiser_from_cfg

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
#: classes of the datasets whose class count the config alone tells
KNOWN_CLASSES = {"cifar10": 10, "cifar100": 100}


# ----------------------------------------------------------------------------- devices


def check_devices(trainer: Mapping[str, Any]) -> None:
    """``trainer.accelerator`` exists on this machine and ``trainer.devices`` does not exceed it."""
    accelerator = trainer.get("accelerator", "auto")
    if accelerator not in ACCELERATORS:
        raise ConfigError(
            f"trainer.accelerator={accelerator!r} is not allowed: must be one of {', '.join(ACCELERATORS)}"
        )
    cuda = torch.cuda.is_available()
    if accelerator in ("gpu", "cuda") and not cuda:
        raise ConfigError(
            f"trainer.accelerator={accelerator!r} is not allowed: this machine has no CUDA GPU that torch "
            f"{torch.__version__} can use; use trainer.accelerator=cpu (or auto)"
        )
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("trainer.accelerator='mps' is not allowed: this machine has no Apple MPS device")
    devices = trainer.get("devices", 1)
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
    return {str(k).replace("_orig_mod.", ""): v for k, v in state.items()}


Shapes = dict[str, tuple[int, ...]]


def _classifier_shapes(arch: str, num_classes: int) -> Shapes:
    with torch.device("meta"):
        backbone = ARCHITECTURES[arch].build(num_classes)
    shapes = {f"backbone.{k}": tuple(v.shape) for k, v in backbone.state_dict().items()}
    return {**shapes, "mean": (1, 3, 1, 1), "std": (1, 3, 1, 1)}


def _class_dependent(arch: str) -> set[str]:
    a, b = _classifier_shapes(arch, 10), _classifier_shapes(arch, 11)
    return {k for k in a if a[k] != b[k]}


def _matches(found: Shapes, expected: Shapes, loose: set[str]) -> bool:
    if found.keys() != expected.keys():
        return False
    return all(k in loose or found[k] == expected[k] for k in expected)


def _num_classes(found: Shapes, loose: set[str]) -> int | None:
    outs = {shape[0] for k, shape in found.items() if k in loose and shape}
    return outs.pop() if len(outs) == 1 else None


def _identify(found: Shapes) -> str:
    """The name of the classifier architecture ``found`` is, else a short description."""
    for arch in ARCHITECTURES:
        loose = _class_dependent(arch)
        if _matches(found, _classifier_shapes(arch, 10), loose):
            classes = _num_classes(found, loose)
            return f"a {arch}" + (f" ({classes} classes)" if classes else "")
    sample = ", ".join(list(found)[:3])
    return f"a network that is none of ssd's classifiers ({len(found)} tensors: {sample}, ...)"


def expected_num_classes(cfg: Mapping[str, Any]) -> int | None:
    data = cfg.get("data", {})
    if isinstance(data.get("num_classes"), int):
        return int(data["num_classes"])
    return KNOWN_CLASSES.get(str(data.get("name")))


def check_checkpoint(path: Any, key: str, cfg: Mapping[str, Any]) -> None:
    """``path`` is readable and holds the network the stage of ``cfg`` trains (same architecture,
    and the dataset's class count where the config tells it)."""
    state = read_weights(path, key)
    found = {k: tuple(v.shape) for k, v in state.items()}
    kind = network_kind(cfg)
    if kind == "classifier":
        arch = cfg["model"]["arch"]
        loose = _class_dependent(arch)
        if not _matches(found, _classifier_shapes(arch, 10), loose):
            raise ConfigError(
                f"{key}={str(path)!r} is not allowed: it holds {_identify(found)}, but this stage's "
                f"model.arch is {arch}; must be weights of a {arch}"
            )
        have, want = _num_classes(found, loose), expected_num_classes(cfg)
        if have is not None and want is not None and have != want:
            raise ConfigError(
                f"{key}={str(path)!r} is not allowed: it holds a {arch} for {have} classes, but "
                f"data={cfg['data'].get('name')} has {want}; must be weights for {want} classes"
            )
    elif kind == "denoiser":
        with torch.device("meta"):
            net = build_denoiser_from_cfg(cfg)
        expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        if found != expected:
            described = {k: v for k, v in cfg["denoiser"].items() if k != "_target_"}
            raise ConfigError(
                f"{key}={str(path)!r} is not allowed: it holds {_identify(found)}, not the "
                f"denoiser this stage builds ({described}); must be weights of that denoiser"
            )


def network_kind(cfg: Mapping[str, Any]) -> str | None:
    """``classifier`` or ``denoiser``: what the stage of ``cfg`` trains (None: a composite network)."""
    from hydra.utils import get_class

    cls = get_class(cfg["strategy"]["_target_"])
    if issubclass(cls, TrainDenoiser):
        return "denoiser"
    if cls.build_net is NoisyImageModule.build_net:
        return "classifier"
    return None
