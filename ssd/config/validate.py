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
import numbers
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from ssd.config.errors import ConfigError
from ssd.config.keys import check_unknown_keys
from ssd.config.resources import check_checkpoint, check_devices, check_writable
from ssd.stages import stage_config

LOGGERS = ("wandb", "csv", "tensorboard", "none")
PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "64-true")
TRAINER_STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true", "fsdp", "deepspeed")
CACHE_LOCKS = ("file", "soft")


def _get(cfg: Mapping[str, Any], key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ConfigError(f"{key} is missing from the config")
        node = node[part]
    return node


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    return _is_number(value) and math.isfinite(value)


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


def require_optional_positive_int(cfg: Mapping[str, Any], key: str, what: str = "") -> None:
    value = _get(cfg, key)
    require(
        value is None or (_is_int(value) and value > 0), key, value, f"must be null or an integer > 0{what}"
    )


def require_bool(cfg: Mapping[str, Any], key: str) -> None:
    value = _get(cfg, key)
    require(isinstance(value, bool), key, value, "must be true or false")


def require_choice(cfg: Mapping[str, Any], key: str, choices: Iterable[Any]) -> None:
    value = _get(cfg, key)
    choices = tuple(choices)
    require(value in choices, key, value, f"must be one of {', '.join(map(str, choices))}")


def _check_noise(cfg: Mapping[str, Any]) -> None:
    from ssd.noise import build_noise

    for key, value in cfg["noise"].items():
        if _is_number(value):
            require(math.isfinite(value), f"noise.{key}", value, "must be a finite number")
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
    data = cfg["data"]
    require_positive_int(cfg, "data.batch_size")
    if "eval_batch_size" in data:
        require_positive_int(cfg, "data.eval_batch_size")
    if "val_size" in data:
        value = data["val_size"]
        ok = (_is_int(value) and value >= 0) or (_is_number(value) and 0 <= value < 1)
        require(ok, "data.val_size", value, "must be a fraction in [0, 1) or a count >= 0")
    for key in ("limit_train", "limit_test"):
        if key in data:
            require_optional_positive_int(cfg, f"data.{key}", " (null: every image)")
    for key in ("train", "test", "num_classes", "image_size"):  # synthetic data and image folders
        if key in data:
            require_positive_int(cfg, f"data.{key}")
    if "num_workers" in data:
        workers = data["num_workers"]
        require(_is_int(workers) and workers >= 0, "data.num_workers", workers, "must be an integer >= 0")
    if "variant" in data:
        from ssd.data.sources import VARIANTS

        require_choice(cfg, "data.variant", VARIANTS)
    n_train = data.get("limit_train") if data.get("limit_train") is not None else data.get("train")
    if _is_int(n_train) and n_train > 0:  # the training set's size (or a bound on it) is in the config
        check_batch_fits(cfg, int(n_train), "data.limit_train" if data.get("limit_train") else "data.train")


def check_batch_fits(cfg: Mapping[str, Any], n_images: int, source: str = "the training split") -> None:
    """``data.batch_size`` is at most the training images left after the validation split.

    A larger batch would silently become one short step per epoch. ``n_images``: the images
    before the validation split (a datamodule's train + val sizes, or a config bound on them).
    """
    from ssd.data.memory import val_count

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


def _check_optim(cfg: Mapping[str, Any], key: str) -> None:
    """An optimizer + scheduler section (``optim``, or a strategy's own ``strategy.optim``)."""
    from ssd.strategies.optim import SCHEDULES

    optim = _get(cfg, key)
    require(
        isinstance(optim, Mapping) and isinstance(optim.get("optimizer"), Mapping),
        key,
        optim,
        "must have an optimizer section (with _target_) and a scheduler section, like conf/optim/*.yaml",
    )
    target = optim["optimizer"].get("_target_")
    try:
        get_class(str(target))
    except Exception:  # noqa: BLE001 - hydra raises several types here
        raise ConfigError(
            f"{key}.optimizer._target_={target!r} is not allowed: must be an importable optimizer class "
            "such as torch.optim.SGD"
        ) from None
    lr = optim["optimizer"].get("lr")
    require(_is_finite(lr) and lr > 0, f"{key}.optimizer.lr", lr, "must be a finite number > 0")
    for name, low, high in (("weight_decay", 0.0, math.inf), ("momentum", 0.0, 1.0)):
        if name in optim["optimizer"]:
            value = optim["optimizer"][name]
            require(
                _is_finite(value) and low <= value <= high,
                f"{key}.optimizer.{name}",
                value,
                f"must be a finite number in [{low:g}, {high:g}]",
            )
    sched = optim.get("scheduler")
    require(
        isinstance(sched, Mapping), f"{key}.scheduler", sched, "must be a section with name, warmup_epochs"
    )
    require_choice(cfg, f"{key}.scheduler.name", SCHEDULES)
    checks = (("warmup_epochs", 0.0, math.inf), ("min_lr_ratio", 0.0, 1.0), ("gamma", 0.0, math.inf))
    for name, low, high in checks:
        if sched.get(name) is not None:
            value = sched[name]
            require(
                _is_finite(value) and low <= value <= high,
                f"{key}.scheduler.{name}",
                value,
                f"must be a finite number in [{low:g}, {high:g}]",
            )
    milestones = sched.get("milestones", [])
    require(
        isinstance(milestones, list) and all(_is_finite(m) and 0 <= m <= 1 for m in milestones),
        f"{key}.scheduler.milestones",
        milestones,
        "must be a list of fractions of training in [0, 1]",
    )


def _check_paths(cfg: Mapping[str, Any]) -> None:
    paths = cfg.get("paths") or {}
    if "cache_lock" in paths:
        require_choice(cfg, "paths.cache_lock", CACHE_LOCKS)
    if "cache_dir" in paths:
        check_writable(paths["cache_dir"], "paths.cache_dir")


def _check_model(cfg: Mapping[str, Any]) -> None:
    from ssd.models import ARCHITECTURES

    require_choice(cfg, "model.arch", ARCHITECTURES)


def _check_trainer(cfg: Mapping[str, Any]) -> None:
    trainer = cfg["trainer"]
    require_positive_int(cfg, "trainer.max_epochs")
    clip = trainer.get("gradient_clip_val")
    require(
        clip is None or (_is_finite(clip) and clip >= 0),
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
        ok = value is None or (_is_int(value) and (value > 0 or (zero_ok and value == 0)))
        ok = ok or (_is_finite(value) and not _is_int(value) and 0 < value <= 1)
        require(ok, f"trainer.{key}", value, "must be null, a number of batches >= 1 or a fraction in (0, 1]")
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
    check_devices(trainer)  # the accelerator exists here, and devices do not exceed what the machine has


def _check_strategy(cfg: Mapping[str, Any]) -> type:
    target = _get(cfg, "strategy._target_")
    try:
        cls = get_class(target)
    except Exception:  # noqa: BLE001 - hydra raises several types here
        raise ConfigError(f"strategy._target_={target!r} is not an importable class") from None
    if isinstance(cfg["strategy"].get("optim"), Mapping):
        _check_optim(cfg, "strategy.optim")
    roles = getattr(cls, "required_roles", lambda _: ())(cfg)
    check = getattr(cls, "check_config", None)
    try:
        if check is not None:
            check(cfg)
    except ConfigError:
        raise
    except Exception:  # e.g. a KeyError for an unknown architecture in a stage's overrides:
        for role in roles:  # the stage's own check names it
            _check_stage(cfg, role)
        raise
    for role in roles:
        _check_stage(cfg, role)
    return cls


def _check_stage(cfg: Mapping[str, Any], role: str) -> None:
    """Check a required stage's whole config (the run's, with ``strategy.<role>``'s strategy and overrides)."""
    section = _get(cfg, f"strategy.{role}")
    require(
        isinstance(section, Mapping) and "strategy" in section,
        f"strategy.{role}",
        section,
        "must be a section with strategy, ckpt and overrides",
    )
    try:
        # the strategy's own view of the section (e.g. generation k's teacher is generation k-1)
        section = get_class(cfg["strategy"]["_target_"]).role_config(cfg, role)
        # init_from and eval_only are the main stage's (ssd.train applies them to it alone)
        sub = {**stage_config(cfg, section), "init_from": None, "eval_only": False}
        validate(sub)
    except FileNotFoundError:
        from ssd.paths import conf_dir

        names = ", ".join(sorted(p.stem for p in (conf_dir() / "strategy").glob("*.yaml")))
        raise ConfigError(
            f"strategy.{role}.strategy={section['strategy']!r} is not allowed: must name a config in "
            f"conf/strategy: {names}"
        ) from None
    except ConfigError as err:
        raise ConfigError(f"stage {role} (strategy.{role}): {err}") from None
    if section.get("ckpt"):  # weights given for the stage: readable, and of the network it builds
        check_checkpoint(section["ckpt"], f"strategy.{role}.ckpt", sub)


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
    _check_optim(cfg, "optim")
    _check_trainer(cfg)
    _check_paths(cfg)
    require_choice(cfg, "logger.name", LOGGERS)
    _check_strategy(cfg)
    _check_init(cfg)
