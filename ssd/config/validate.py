"""Validate a composed config early, with one clear message per problem.

Hydra already rejects unknown group options (``strategy=nope`` lists the valid ones).
This module checks values: types, ranges and names that are plain keys. Every error
names the key, the bad value and what is allowed, and is raised before any data is read
or any network is built.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

LOGGERS = ("wandb", "csv", "tensorboard", "none")
PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "64-true")
TRAINER_STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true", "fsdp", "deepspeed")


class ConfigError(ValueError):
    """A config value that is not allowed; the message names key, value and what is allowed."""


def _get(cfg: Mapping[str, Any], key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ConfigError(f"{key} is missing from the config")
        node = node[part]
    return node


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def require(ok: bool, key: str, value: Any, allowed: str) -> None:
    """Raise ConfigError ``key=value is not allowed: allowed`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


def require_positive_int(cfg: Mapping[str, Any], key: str) -> None:
    value = _get(cfg, key)
    require(_is_int(value) and value > 0, key, value, "must be an integer > 0")


def require_number(
    cfg: Mapping[str, Any], key: str, low: float = float("-inf"), high: float = float("inf")
) -> None:
    value = _get(cfg, key)
    require(
        _is_number(value) and low <= value <= high, key, value, f"must be a number in [{low:g}, {high:g}]"
    )


def require_choice(cfg: Mapping[str, Any], key: str, choices: Iterable[Any]) -> None:
    value = _get(cfg, key)
    choices = tuple(choices)
    require(value in choices, key, value, f"must be one of {', '.join(map(str, choices))}")


def _check_noise(cfg: Mapping[str, Any]) -> None:
    from ssd.noise import build_noise

    try:
        noise = build_noise(cfg["noise"])
    except (ValueError, TypeError) as err:
        raise ConfigError(str(err) if "noise." in str(err) else f"noise: {err}") from None
    levels = cfg["noise"].get("eval_levels", [])
    require(
        isinstance(levels, Iterable) and not isinstance(levels, str) and all(_is_number(v) for v in levels),
        "noise.eval_levels",
        levels,
        "must be a list of numbers",
    )
    for level in levels:
        try:
            noise.at_level(float(level))
        except ValueError as err:
            raise ConfigError(f"noise.eval_levels contains {level!r}: {err}") from None


def _check_data(cfg: Mapping[str, Any]) -> None:
    require_positive_int(cfg, "data.batch_size")
    if "eval_batch_size" in cfg["data"]:
        require_positive_int(cfg, "data.eval_batch_size")
    if "val_size" in cfg["data"]:
        value = cfg["data"]["val_size"]
        ok = (_is_int(value) and value >= 0) or (_is_number(value) and 0 <= value < 1)
        require(ok, "data.val_size", value, "must be a fraction in [0, 1) or a count >= 0")


def _check_model(cfg: Mapping[str, Any]) -> None:
    from ssd.models import ARCHITECTURES

    require_choice(cfg, "model.arch", ARCHITECTURES)


def _check_trainer(cfg: Mapping[str, Any]) -> None:
    require_positive_int(cfg, "trainer.max_epochs")
    devices = _get(cfg, "trainer.devices")
    require(
        (_is_int(devices) and devices > 0) or devices in ("auto", -1),
        "trainer.devices",
        devices,
        "must be an integer > 0 or 'auto'",
    )
    require_positive_int(cfg, "trainer.num_nodes")
    require_choice(cfg, "trainer.precision", PRECISIONS)
    require_choice(cfg, "trainer.strategy", TRAINER_STRATEGIES)
    require_choice(cfg, "trainer.channels_last", ("auto", True, False))
    if _is_int(devices) and devices > 1:
        world = devices * int(cfg["trainer"]["num_nodes"])
        batch = cfg["data"]["batch_size"]
        require(
            batch % world == 0,
            "data.batch_size",
            batch,
            f"must be divisible by the number of processes ({world}): it is the global batch size",
        )


def _check_strategy(cfg: Mapping[str, Any]) -> type:
    target = _get(cfg, "strategy._target_")
    try:
        cls = get_class(target)
    except Exception:  # noqa: BLE001 - hydra raises several types here
        raise ConfigError(f"strategy._target_={target!r} is not an importable class") from None
    check = getattr(cls, "check_config", None)
    if check is not None:
        check(cfg)
    for role in getattr(cls, "required_roles", lambda _: ())(cfg):
        _check_stage(cfg, role)
    return cls


def _check_stage(cfg: Mapping[str, Any], role: str) -> None:
    """Check a required stage's whole config (the run's, with ``strategy.<role>``'s strategy and overrides)."""
    from ssd.pipeline import stage_config

    section = _get(cfg, f"strategy.{role}")
    require(
        isinstance(section, Mapping) and "strategy" in section,
        f"strategy.{role}",
        section,
        "must be a section with strategy, ckpt and overrides",
    )
    try:
        validate(stage_config(cfg, section))
    except FileNotFoundError:
        raise ConfigError(
            f"strategy.{role}.strategy={section['strategy']!r} is not allowed: must name a conf/strategy/*.yaml"
        ) from None
    except ConfigError as err:
        raise ConfigError(f"stage {role} (strategy.{role}): {err}") from None


def _check_init(cfg: Mapping[str, Any]) -> None:
    """``init_from`` (weights the main stage starts from) and ``eval_only`` (evaluate them, train nothing)."""
    init_from, eval_only = cfg.get("init_from"), cfg.get("eval_only", False)
    require(isinstance(eval_only, bool), "eval_only", eval_only, "must be true or false")
    if init_from is not None:
        require(
            isinstance(init_from, str) and Path(init_from).is_file(),
            "init_from",
            init_from,
            "must be null or an existing net.pt or Lightning .ckpt file",
        )
    require(
        not eval_only or init_from is not None,
        "eval_only",
        eval_only,
        "needs init_from=<net.pt or .ckpt>: the weights to evaluate",
    )


def validate(cfg: DictConfig | Mapping[str, Any]) -> None:
    """Check the whole run config; raise ConfigError on the first problem."""
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    require(_is_int(cfg.get("seed")) and cfg["seed"] >= 0, "seed", cfg.get("seed"), "must be an integer >= 0")
    require(
        _is_int(cfg.get("eval_seed")) and cfg["eval_seed"] >= 0,
        "eval_seed",
        cfg.get("eval_seed"),
        "must be an integer >= 0",
    )
    _check_noise(cfg)
    _check_data(cfg)
    _check_model(cfg)
    _check_trainer(cfg)
    _check_init(cfg)
    require_choice(cfg, "logger.name", LOGGERS)
    _check_strategy(cfg)
