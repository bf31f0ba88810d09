"""Check a whole run before any data is read: every part against its own signature, then built on meta.

Hydra already rejects unknown group options (``strategy=nope`` lists the valid ones). Then, in
this order, each step trusting the ones before:

1. the run's own keys (``RunSettings``), ``paths`` and ``trainer`` against their typed declarations;
2. every ``_target_`` section against the signature and annotations of the callable it names
   (``ssd.config.signatures``: unknown keys, required ones, strict bools, finite numbers,
   ``Literal`` choices, ranges), with what ``ssd.parts`` fills in and reads itself;
3. the cheap parts built for real: the datamodule (constructed only: it declares its classes and
   image size without reading), the noise model (and its contract, ``ssd.noise.contract``);
4. every stage's strategy module built on the meta device (no memory, no compute), required
   stages first, so each strategy's own checks (taps against both networks, widths, weights that
   fit) run as they will in training; a given checkpoint is compared with the network it is for;
5. what values point at on this machine: devices, writable folders.

Every error names the key, the bad value and what is allowed (``ConfigError``).
"""

from __future__ import annotations

import copy
import logging
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

import lightning as L
import torch
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ssd import parts
from ssd.cache import CACHE_MODES
from ssd.config.annotations import Range, check_value
from ssd.config.errors import ConfigError
from ssd.config.resources import check_devices, check_writable, read_weights
from ssd.config.signatures import check_keys, check_section, import_target
from ssd.data.protocol import DataFacts, NoisyDataModule
from ssd.data.splits import check_batch_fits, val_count
from ssd.fit import TRAINER_SET_BY_SSD, TrainerSettings
from ssd.hardware import resolve_channels_last, resolve_precision, uses_cuda
from ssd.models import Classifier
from ssd.noise import check_draws_only
from ssd.paths import PathsSection, conf_dir
from ssd.seeding import STAGE_SEED_MODES, stage_seed
from ssd.stages import group_section, stage_config

__all__ = ["resolve_auto", "validate"]

log = logging.getLogger("ssd")

#: the config groups (sections) of conf/config.yaml
GROUPS = (
    "paths",
    "data",
    "noise",
    "model",
    "denoiser",
    "strategy",
    "optim",
    "trainer",
    "logger",
    "callbacks",
)


class RunSettings(TypedDict):
    """The run's own keys (conf/config.yaml), besides its groups."""

    seed: Annotated[int, Range(ge=0)]
    stage_seeds: Literal[STAGE_SEED_MODES]  # type: ignore[valid-type]
    eval_seed: Annotated[int, Range(ge=0)]
    deterministic: bool
    run_name: str
    resume: bool
    init_from: str | None
    eval_only: bool
    tags: list[str]
    sweep_name: str
    objective: Literal["test_acc", "val_acc"]
    cache: Literal[CACHE_MODES]  # type: ignore[valid-type]


# --------------------------------------------------------------------------- sections


def _check_run_keys(cfg: Mapping[str, Any]) -> None:
    own = {k: v for k, v in cfg.items() if k not in GROUPS and k != "hydra"}
    hints = _hints(RunSettings)
    check_keys("", own, {**hints, **dict.fromkeys(GROUPS, Any)}, "the config")
    missing = [k for k in (*hints, *GROUPS) if k not in cfg]
    if missing:
        raise ConfigError(f"{missing[0]} is missing from the config (conf/config.yaml defines it)")
    if not str(cfg["run_name"]).strip():
        raise ConfigError(
            f"run_name={cfg['run_name']!r} is not allowed: must be a non-empty name (it names the run's folder, "
            "outputs/runs/<run_name>/<time>)"
        )


def _check_warmups(cfg: Mapping[str, Any]) -> None:
    """A learning-rate warm-up longer than the run never reaches the schedule's rate (it was silently cut
    to the run's length): allowed up to ``trainer.max_epochs``, when the run is counted in epochs. (An
    online teacher's distillation ramp may outlast a short smoke run: it is not checked here.)"""
    epochs = cfg["trainer"].get("max_epochs")
    if not isinstance(epochs, int) or epochs < 1:
        return
    optims = {"optim": cfg["optim"], "strategy.optim": cfg["strategy"].get("optim")}
    warmups = {
        f"{key}.scheduler.warmup_epochs": (o or {}).get("scheduler", {}).get("warmup_epochs")
        for key, o in optims.items()
    }
    for key, value in warmups.items():
        if isinstance(value, int | float) and not isinstance(value, bool) and value > epochs:
            raise ConfigError(
                f"{key}={value!r} is not allowed: must be <= trainer.max_epochs ({epochs}): a warm-up longer "
                "than the run never ends"
            )


def _hints(typed: type) -> dict[str, Any]:
    return typing.get_type_hints(typed, include_extras=True)


def _check_trainer(cfg: Mapping[str, Any]) -> None:
    """``trainer``: lightning.Trainer's arguments as Lightning types them, tightened by ``TrainerSettings``."""
    trainer = cfg["trainer"]
    check_section(
        "trainer", trainer, target=L.Trainer, filled=TRAINER_SET_BY_SSD, extra=_hints(TrainerSettings)
    )
    devices, world = trainer["devices"], 0
    if isinstance(devices, int) and devices > 1:
        world = devices * int(trainer["num_nodes"])
    batch = cfg["data"].get("batch_size")
    if world and isinstance(batch, int) and batch % world:
        raise ConfigError(
            f"data.batch_size={batch} is not allowed: must be divisible by the number of processes ({world}): "
            "it is the global batch size"
        )


def _check_optim(optim: Any, key: str) -> None:
    """An optimizer + schedule section (``optim``, or a strategy's own ``strategy.optim``)."""
    check_value(key, optim, Mapping[str, Any])
    for name, kind in (("optimizer", parts.OPTIMIZER), ("scheduler", parts.SCHEDULER)):
        if name not in optim:
            raise ConfigError(
                f"{key}.{name} is missing: {key} needs an optimizer and a scheduler, like conf/optim/*.yaml"
            )
        check_section(f"{key}.{name}", optim[name], filled=kind.filled, narrow=kind.narrow)
    unknown = sorted(set(optim) - {"optimizer", "scheduler"})
    if unknown:
        raise ConfigError(
            f"{key}.{unknown[0]}={optim[unknown[0]]!r} is not allowed: {key} has only optimizer and scheduler"
        )


def _check_entries(cfg: Mapping[str, Any], group: str, kind: parts.Kind) -> None:
    """``logger`` / ``callbacks``: a mapping of names to ``_target_`` sections (null: left out)."""
    section = cfg[group]
    check_value(group, section, Mapping[str, Any] | None)
    for name, entry in (section or {}).items():
        if entry is not None:
            check_section(f"{group}.{name}", entry, filled=kind.filled, narrow=kind.narrow)


def _check_strategy(section: Mapping[str, Any]) -> type:
    if not isinstance(section, Mapping) or "_target_" not in section:
        raise ConfigError(
            f"strategy={section!r} is not allowed: a strategy config needs a _target_ (the class that trains it)"
        )
    cls = import_target("strategy", section["_target_"])
    check_section(
        "strategy", section, target=cls, filled=parts.STRATEGY_FILLED, extra=cls.section_annotations()
    )
    if section.get("optim") is not None:
        _check_optim(section["optim"], "strategy.optim")
    return cls


def check_sections(cfg: Mapping[str, Any]) -> None:
    """Steps 1 and 2 of the module docstring, for one stage's whole config."""
    _check_run_keys(cfg)
    check_keys("paths", cfg["paths"], _hints(PathsSection), "paths")
    _check_trainer(cfg)  # first: data and others interpolate trainer keys (channels_last)
    check_section("data", cfg["data"], filled=parts.DATA.filled)
    check_section("noise", cfg["noise"], filled=parts.NOISE.filled, extra=parts.NOISE.reads)
    check_section("model", cfg["model"], filled=parts.MODEL.filled)
    check_section("denoiser", cfg["denoiser"], filled=parts.DENOISER.filled)
    _check_optim(cfg["optim"], "optim")
    _check_entries(cfg, "logger", parts.LOGGER)
    _check_entries(cfg, "callbacks", parts.CALLBACK)
    _check_strategy(cfg["strategy"])
    _check_warmups(cfg)
    if cfg["eval_only"] and cfg["init_from"] is None:
        raise ConfigError(
            "eval_only=True is not allowed: needs init_from=<net.pt or .ckpt>: the weights to evaluate"
        )


# --------------------------------------------------------------------------- parts built


def _built(key: str, build: Any, *args: Any) -> Any:
    """``build(*args)``; a ValueError/TypeError of the part itself becomes a ConfigError naming ``key``."""
    try:
        return build(*args)
    except ConfigError:
        raise
    except InstantiationException as err:
        cause = err.__cause__ or err
        if isinstance(cause, ConfigError):
            raise cause from None
        raise ConfigError(f"{key} is not allowed: {type(cause).__name__}: {cause}") from None
    except (ValueError, TypeError, FileNotFoundError) as err:
        raise ConfigError(f"{key} is not allowed: {type(err).__name__}: {err}") from None


def _check_files(cfg: Mapping[str, Any]) -> None:
    """Weights files a part reads while it is built (``model.pretrained``): there, before anything is read."""
    for key in ("model", "denoiser"):
        path = cfg[key].get("pretrained")
        if path is not None and not Path(str(path)).expanduser().is_file():
            raise ConfigError(
                f"{key}.pretrained={str(path)!r} is not allowed: no such file; must be null or an existing "
                "state_dict file (.pt / .pth) of that network"
            )


def _check_noise(cfg: Mapping[str, Any]) -> None:
    noise = _built(f"noise ({cfg['noise']['_target_']})", parts.build_noise, cfg["noise"])
    for level in cfg["noise"]["eval_levels"]:
        try:
            noise.at_level(float(level))
        except ValueError as err:
            raise ConfigError(f"noise.eval_levels contains {level!r}: {err}") from None
    check_draws_only(noise)


def _datamodule(cfg: Mapping[str, Any]) -> tuple[NoisyDataModule, DataFacts]:
    """The datamodule, constructed (nothing read), and what it declares: classes, image size, a bound on its size."""
    key = f"data ({cfg['data']['_target_']})"
    datamodule = _built(key, parts.build_datamodule, cfg)
    facts = _built(key, DataFacts.declared, datamodule)
    bound = datamodule.declared_train_images()
    if bound is not None:
        try:
            val_count(int(bound), datamodule.val_size)
        except ValueError:
            raise ConfigError(
                f"data.val_size={datamodule.val_size!r} is not allowed: it leaves no training images of the "
                f"{bound} the data declares; must be a fraction in [0, 1) or a count below {bound}"
            ) from None
        check_batch_fits(
            int(datamodule.batch_size), int(bound), datamodule.val_size, "the images data declares"
        )
    return datamodule, facts


def _stage_module(cfg: Mapping[str, Any], facts: DataFacts, where: str = "") -> Any:
    """This stage's strategy module built on the meta device, its required stages (recursively) first."""
    section = cfg["strategy"]
    cls = parts.strategy_class(section)
    frozen: dict[str, nn.Module] = {}
    seeds: dict[str, int | None] = {}
    for role in cls.requires:
        role_cfg = cls.role_config(section, role)
        frozen[role] = _required_stage(cfg, role, role_cfg, facts, f"{where}strategy.{role}")
        seeds[role] = (
            None if role_cfg.get("ckpt") else 0
        )  # whether it is a stage ssd trains (its seed unused)
    with torch.device("meta"):
        return _built(
            f"strategy ({section['_target_']})",
            parts.build_strategy,
            cfg,
            facts,
            frozen,
            stage_seed(cfg),
            seeds,
        )


def _required_stage(
    cfg: Mapping[str, Any], role: str, role_cfg: Mapping[str, Any], facts: DataFacts, key: str
) -> nn.Module:
    """Check a required stage's whole config; return its network (meta) for the strategy that needs it."""
    ckpt = role_cfg.get("ckpt")
    if ckpt is not None and not Path(str(ckpt)).is_file():
        raise ConfigError(
            f"{key}.ckpt={ckpt!r} is not allowed: must be null or an existing net.pt or Lightning .ckpt file"
        )
    try:
        # init_from and eval_only are the main stage's (ssd.fit applies them to it alone)
        sub = {**stage_config(cfg, role_cfg), "init_from": None, "eval_only": False}
    except FileNotFoundError:
        names = ", ".join(sorted(p.stem for p in (conf_dir() / "strategy").glob("*.yaml")))
        raise ConfigError(
            f"{key}.strategy={role_cfg['strategy']!r} is not allowed: must name a config in conf/strategy: {names}"
        ) from None
    try:
        check_sections(sub)
        net = _stage_module(sub, facts, f"{key}.").net
    except ConfigError as err:
        raise ConfigError(f"stage {role} ({key}): {err}") from None
    if ckpt is not None:
        check_weights(ckpt, f"{key}.ckpt", net, sub, facts)
    return net


# --------------------------------------------------------------------------- weights files


def _shapes(net: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k.replace("_orig_mod.", ""): tuple(v.shape) for k, v in net.state_dict().items()}


def _classifier_shapes(model: Mapping[str, Any], num_classes: int) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        net = parts.classifier_factory(model, DataFacts(num_classes, 32, (0.0,) * 3, (1.0,) * 3))()
    return _shapes(net)


def _option_names(group: str) -> list[str]:
    folder = conf_dir() / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def _identify(found: dict[str, tuple[int, ...]]) -> str:
    """What a weights file holds, in the names of ssd's config options (``model=resnet56 (4 classes)``)."""
    for name in _option_names("model"):
        try:
            a, b = (
                _classifier_shapes(group_section("model", name), 10),
                _classifier_shapes(group_section("model", name), 11),
            )
        except Exception:  # noqa: BLE001 - an option that needs more than a class count to build
            continue
        loose = {k for k in a if a[k] != b[k]}
        if found.keys() == a.keys() and all(k in loose or found[k] == a[k] for k in a):
            classes = {found[k][0] for k in loose}
            return f"a model={name}" + (f" ({classes.pop()} classes)" if len(classes) == 1 else "")
    for name in _option_names("denoiser"):
        try:
            with torch.device("meta"):
                net = parts.denoiser_factory(group_section("denoiser", name))()
        except Exception:  # noqa: BLE001
            continue
        if _shapes(net) == found:
            return f"a denoiser={name}"
    sample = ", ".join(list(found)[:3])
    return f"a network that is none of ssd's models or denoisers ({len(found)} tensors: {sample}, ...)"


def _network_name(net: nn.Module, cfg: Mapping[str, Any]) -> str:
    if isinstance(net, Classifier):
        return f"model ({cfg['model']['_target_']})"
    if parts.takes(parts.strategy_class(cfg["strategy"]), "denoiser"):
        return f"denoiser ({cfg['denoiser']['_target_']})"
    return f"network of strategy={cfg['strategy']['name']}"


def check_weights(path: Any, key: str, net: nn.Module, cfg: Mapping[str, Any], facts: DataFacts) -> None:
    """``path`` is readable and holds weights of ``net`` (the stage's network, built on meta): the same
    tensors, of the same shapes, the class count the data declares included."""
    found = {k: tuple(v.shape) for k, v in read_weights(path, key).items()}
    expected = _shapes(net)
    if found == expected:
        return
    if isinstance(net, Classifier):
        loose = {
            k
            for k, v in _classifier_shapes(cfg["model"], facts.num_classes + 1).items()
            if v != expected.get(k)
        }
        if found.keys() == expected.keys() and all(k in loose or found[k] == expected[k] for k in expected):
            have = {found[k][0] for k in loose}
            data = cfg["data"].get("name", cfg["data"]["_target_"])
            raise ConfigError(
                f"{key}={str(path)!r} is not allowed: it holds a network for {have.pop()} classes, but data={data} has "
                f"{facts.num_classes}; must be weights for {facts.num_classes} classes"
            )
    raise ConfigError(
        f"{key}={str(path)!r} is not allowed: it holds {_identify(found)}, but this stage's network is the "
        f"{_network_name(net, cfg)}; must be weights of that network"
    )


# --------------------------------------------------------------------------- the run


def recorded_precision(precision: str, accelerator: str) -> str:
    """The precision a run will actually use, so that is what its config records: Lightning runs
    ``16-mixed`` on a CPU as ``bf16-mixed`` (fp16 autocast is not supported there), with a warning."""
    mps = accelerator == "mps" or (accelerator == "auto" and torch.backends.mps.is_available())
    if precision in ("16-mixed", "16") and not uses_cuda(accelerator) and not mps:
        log.warning("trainer.precision=%s on the CPU runs (and is recorded) as bf16-mixed", precision)
        return "bf16-mixed"
    return precision


def resolve_auto(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The config as plain containers, its ``auto`` device settings made concrete (``trainer.precision``,
    ``trainer.channels_last``; keys that interpolate them, like ``data.channels_last``, follow).
    ``cfg`` is not changed (a copy keeps what it resolved already, e.g. ``${now:...}``)."""
    node = copy.deepcopy(cfg) if isinstance(cfg, DictConfig) else OmegaConf.create(dict(cfg))
    accelerator = str(node.trainer.accelerator)
    node.trainer.precision = recorded_precision(
        resolve_precision(str(node.trainer.precision), accelerator), accelerator
    )
    node.trainer.channels_last = resolve_channels_last(node.trainer.channels_last, accelerator)
    return OmegaConf.to_container(node, resolve=True)


def validate(cfg: DictConfig | Mapping[str, Any]) -> None:
    """Check the whole run config, every stage included; raise ConfigError on the first problem.

    A composed ``DictConfig`` is checked as ``resolve_auto`` makes it (what a run uses)."""
    if isinstance(cfg, DictConfig):
        cfg = resolve_auto(cfg)
    check_sections(cfg)
    _check_files(cfg)
    _check_noise(cfg)
    _, facts = _datamodule(cfg)
    main = _stage_module(cfg, facts)
    if cfg["init_from"] is not None:
        if not Path(str(cfg["init_from"])).is_file():
            raise ConfigError(
                f"init_from={cfg['init_from']!r} is not allowed: must be null or an existing net.pt or Lightning .ckpt file"
            )
        check_weights(cfg["init_from"], "init_from", main.net, cfg, facts)
    check_devices(
        cfg["trainer"]
    )  # the accelerator exists here, and devices do not exceed what the machine has
    check_writable(cfg["paths"]["cache_dir"], "paths.cache_dir")
