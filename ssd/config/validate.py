"""Validate a composed config early, with one clear message per problem.

Hydra already rejects unknown group options (``strategy=nope`` lists the valid ones).
This module checks keys (``ssd.config.keys``: nothing unknown under ssd's sections), values
(types, ranges, names that are plain keys) and what values point at on this machine
(``ssd.config.resources``: devices, writable folders, checkpoint files). Every error names
the key, the bad value and what is allowed, and is raised before any data is read or any
network is built.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from ssd.config.checks import (
    get_key,
    is_finite,
    is_int,
    is_number,
    require,
    require_bool,
    require_choice,
    require_optional_positive_int,
    require_positive_int,
)
from ssd.config.errors import ConfigError
from ssd.config.keys import check_unknown_keys
from ssd.config.resources import check_checkpoint, check_devices, check_writable
from ssd.data.cifar import VARIANTS
from ssd.data.splits import val_count
from ssd.models import ARCHITECTURES
from ssd.noise import build_noise
from ssd.paths import conf_dir
from ssd.stages import stage_config
from ssd.strategies.optim import check_optim_section

LOGGERS = ("wandb", "csv", "tensorboard", "none")
# Lightning's names; a bare 16/32/64 is an int once Hydra parses the command line
PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "16-mixed", "16", "bf16-true", "64-true", "64")
TRAINER_STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true", "fsdp", "deepspeed")
CACHE_LOCKS = ("file", "soft")

__all__ = ["check_batch_fits", "validate"]  # the require* helpers are ssd.config.checks


def _check_noise(cfg: Mapping[str, Any]) -> None:
    for key, value in cfg["noise"].items():
        if is_number(value):
            require(math.isfinite(value), f"noise.{key}", value, "must be a finite number")
    try:
        noise = build_noise(cfg["noise"])
    except (ValueError, TypeError) as err:
        raise ConfigError(str(err) if "noise." in str(err) else f"noise: {err}") from None
    levels = cfg["noise"].get("eval_levels", [])
    require(
        isinstance(levels, Iterable) and not isinstance(levels, str) and all(is_number(v) for v in levels),
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
    data = cfg["data"]
    require_positive_int(cfg, "data.batch_size")
    if "eval_batch_size" in data:
        require_positive_int(cfg, "data.eval_batch_size")
    if "val_size" in data:
        value = data["val_size"]
        ok = (is_int(value) and value >= 0) or (is_number(value) and 0 <= value < 1)
        require(ok, "data.val_size", value, "must be a fraction in [0, 1) or a count >= 0")
    for key in ("limit_train", "limit_test"):
        if key in data:
            require_optional_positive_int(cfg, f"data.{key}", " (null: every image)")
    for key in ("train", "test", "num_classes", "image_size"):  # synthetic data and image folders
        if key in data:
            require_positive_int(cfg, f"data.{key}")
    if "num_workers" in data:
        workers = data["num_workers"]
        require(is_int(workers) and workers >= 0, "data.num_workers", workers, "must be an integer >= 0")
    if "variant" in data:
        require_choice(cfg, "data.variant", VARIANTS)
    n_train = data.get("limit_train") if data.get("limit_train") is not None else data.get("train")
    if is_int(n_train) and n_train > 0:  # the training set's size (or a bound on it) is in the config
        check_batch_fits(cfg, int(n_train), "data.limit_train" if data.get("limit_train") else "data.train")


def check_batch_fits(cfg: Mapping[str, Any], n_images: int, source: str = "the training split") -> None:
    """``data.batch_size`` is at most the training images left after the validation split.

    A larger batch would silently become one short step per epoch. ``n_images``: the images
    before the validation split (a datamodule's train + val sizes, or a config bound on them).
    """
    data = cfg["data"]
    try:
        n_val = val_count(n_images, data.get("val_size", 0) or 0)
    except (ValueError, TypeError):
        return  # the val_size itself is reported elsewhere
    n_train, batch = n_images - n_val, data["batch_size"]
    require(
        n_train >= batch,
        "data.batch_size",
        batch,
        f"must be at most the training set: {n_train} images ({source}={n_images}, minus {n_val} for "
        f"validation): a larger batch would be one short step per epoch",
    )


def _check_paths(cfg: Mapping[str, Any]) -> None:
    paths = cfg.get("paths") or {}
    if "cache_lock" in paths:
        require_choice(cfg, "paths.cache_lock", CACHE_LOCKS)
    if "cache_dir" in paths:
        check_writable(paths["cache_dir"], "paths.cache_dir")


def _check_model(cfg: Mapping[str, Any]) -> None:
    require_choice(cfg, "model.arch", ARCHITECTURES)


def _check_trainer(cfg: Mapping[str, Any]) -> None:
    trainer = cfg["trainer"]
    require_positive_int(cfg, "trainer.max_epochs")
    clip = trainer.get("gradient_clip_val")
    require(
        clip is None or (is_finite(clip) and clip >= 0),
        "trainer.gradient_clip_val",
        clip,
        "must be null or a finite number >= 0",
    )
    for key in ("log_every_n_steps", "check_val_every_n_epoch"):
        if trainer.get(key) is not None:
            require_positive_int(cfg, f"trainer.{key}")
    for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
        value = trainer.get(key)
        zero_ok = key == "limit_val_batches"  # 0 = no validation; no training or test is never a result
        ok = value is None or (is_int(value) and (value > 0 or (zero_ok and value == 0)))
        ok = ok or (is_finite(value) and not is_int(value) and 0 < value <= 1)
        require(ok, f"trainer.{key}", value, "must be null, a number of batches >= 1 or a fraction in (0, 1]")
    devices = get_key(cfg, "trainer.devices")
    require(
        (is_int(devices) and devices > 0) or devices in ("auto", -1),
        "trainer.devices",
        devices,
        "must be an integer > 0 or 'auto'",
    )
    require_positive_int(cfg, "trainer.num_nodes")
    precision = get_key(cfg, "trainer.precision")
    require(
        str(precision) in PRECISIONS,
        "trainer.precision",
        precision,
        f"must be one of {', '.join(PRECISIONS)}",
    )
    require_choice(cfg, "trainer.strategy", TRAINER_STRATEGIES)
    require_choice(cfg, "trainer.channels_last", ("auto", True, False))
    if is_int(devices) and devices > 1:
        world = devices * int(cfg["trainer"]["num_nodes"])
        batch = cfg["data"]["batch_size"]
        require(
            batch % world == 0,
            "data.batch_size",
            batch,
            f"must be divisible by the number of processes ({world}): it is the global batch size",
        )
    check_devices(trainer)  # the accelerator exists here, and devices do not exceed what the machine has


def _strategy_names() -> list[str]:
    """The runnable strategies in ssd's ``conf/strategy`` (shared parts live in ``conf/_shared/strategy``)."""
    return sorted(p.stem for p in (conf_dir() / "strategy").glob("*.yaml"))


def _check_strategy(cfg: Mapping[str, Any]) -> type:
    """The strategy's class, then its whole check (``NoisyImageModule.check``: own keys, stages, both)."""
    strategy_cfg = cfg["strategy"]
    require(
        "_target_" in strategy_cfg,
        "strategy",
        strategy_cfg.get("name"),
        "a strategy config needs a _target_ (the class that trains it); must be one of "
        + ", ".join(_strategy_names()),
    )
    target = strategy_cfg["_target_"]
    try:
        cls = get_class(target)
    except Exception:  # noqa: BLE001 - hydra raises several types here
        raise ConfigError(f"strategy._target_={target!r} is not an importable class") from None
    cls.check(cfg, lambda role: _check_stage(cfg, cls, role))
    return cls


def _check_stage(cfg: Mapping[str, Any], cls: type, role: str) -> dict[str, Any]:
    """Check a required stage's whole config (the run's, with ``strategy.<role>``'s strategy and overrides);
    return it for the strategy's own checks against it."""
    section = get_key(cfg, f"strategy.{role}")
    require(
        isinstance(section, Mapping) and "strategy" in section,
        f"strategy.{role}",
        section,
        "must be a section with strategy, ckpt and overrides",
    )
    overrides, ckpt = section.get("overrides"), section.get("ckpt")
    require(
        overrides is None or isinstance(overrides, Mapping),
        f"strategy.{role}.overrides",
        overrides,
        "must be null or a mapping merged into the stage's run config",
    )
    require(
        ckpt is None or Path(str(ckpt)).is_file(),
        f"strategy.{role}.ckpt",
        ckpt,
        "must be null or an existing net.pt or Lightning .ckpt file",
    )
    # the strategy's own view of the section (e.g. generation k's teacher is generation k-1)
    section = cls.role_config(cfg, role)
    try:
        # init_from and eval_only are the main stage's (ssd.fit applies them to it alone)
        sub = {**stage_config(cfg, section), "init_from": None, "eval_only": False}
        validate(sub)
    except FileNotFoundError:
        raise ConfigError(
            f"strategy.{role}.strategy={section['strategy']!r} is not allowed: must name a config in "
            f"conf/strategy: {', '.join(_strategy_names())}"
        ) from None
    except ConfigError as err:
        raise ConfigError(f"stage {role} (strategy.{role}): {err}") from None
    if section.get("ckpt"):  # weights given for the stage: readable, and of the network it builds
        check_checkpoint(section["ckpt"], f"strategy.{role}.ckpt", sub)
    return sub


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
        check_checkpoint(init_from, "init_from", cfg)
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
    check_unknown_keys(cfg)
    for key in ("resume", "deterministic"):
        if key in cfg:
            require_bool(cfg, key)
    require(is_int(cfg.get("seed")) and cfg["seed"] >= 0, "seed", cfg.get("seed"), "must be an integer >= 0")
    require(
        is_int(cfg.get("eval_seed")) and cfg["eval_seed"] >= 0,
        "eval_seed",
        cfg.get("eval_seed"),
        "must be an integer >= 0",
    )
    _check_noise(cfg)
    _check_data(cfg)
    _check_model(cfg)
    check_optim_section(cfg, "optim")
    _check_trainer(cfg)
    _check_paths(cfg)
    require_choice(cfg, "logger.name", LOGGERS)
    _check_strategy(cfg)
    _check_init(cfg)
