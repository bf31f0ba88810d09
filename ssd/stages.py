"""What a stage is: its config, its cache key and entry name, its seed, its weights in and out.

A *stage* is one trained network: the main network of a run, or a network a strategy
needs first (a teacher, a denoiser, a clean classifier). This module is the low layer
that ``ssd.pipeline`` (which orchestrates stages), ``ssd.fit`` (which trains one) and
``ssd.validate`` (which checks them) all import downward; it imports nothing above
``ssd.parts``.

The stage key hashes everything that decides the trained weights, including a
fingerprint of the data the stage actually trained on (not just the config that found
it), so a network trained on the CIFAR subset is never served to a run on the full set.
Entry names are role-free (``<what was trained>-<key>``): the clean classifier that STL
uses as its teacher is the same entry that denoise and joint use as their classifier.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf
from torch import nn

from ssd.cache import EXTRA_FILE, NET_FILE
from ssd.config.errors import ConfigError
from ssd.data.protocol import NoisyDataModule
from ssd.parts import NOISE, strategy_class, takes
from ssd.paths import conf_dir
from ssd.results import json_digest, package_versions
from ssd.seeding import stage_identity
from ssd.strategies.base import NoisyImageModule

__all__ = [
    "data_fingerprint",
    "entry_name",
    "load_net_weights",
    "load_stage_weights",
    "method_label",
    "net_state_dict",
    "stage_config",
    "stage_key",
    "stage_weights",
]

# config keys that decide what a trained stage is (launch details like devices do not)
KEY_TRAINER_FIELDS = ("max_epochs", "precision", "gradient_clip_val", "limit_train_batches")
# data keys that do not change the trained weights, or whose effect the data fingerprint already covers
KEY_DATA_IGNORED = (
    "eval_batch_size",
    "channels_last",
    "cache_dir",
    "root",
    "download",
    "num_workers",
    "limit_test",
)
# top-level keys that decide every stage
KEY_RUN_FIELDS = ("seed", "stage_seeds")


def data_fingerprint(datamodule: NoisyDataModule) -> dict[str, Any]:
    """What the stages of a run train on: a content hash where the datamodule gives one, and split sizes."""
    return {"content": datamodule.fingerprint(), "splits": dict(datamodule.split_sizes())}


def _compose(group: str, name: str) -> dict[str, Any]:
    """``<group>=<name>`` as Hydra composes it: its defaults list, and the app's config search path."""
    try:
        composed = compose(config_name="config", overrides=[f"{group}={name}"])
    except MissingConfigException as err:
        raise FileNotFoundError(f"{group} {name!r} has no config {group}/{name}.yaml") from err
    return OmegaConf.to_container(composed[group], resolve=False)


@functools.lru_cache(maxsize=128)
def _compose_from_conf_dir(group: str, name: str) -> dict[str, Any]:
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        return _compose(group, name)


def group_section(group: str, name: str) -> dict[str, Any]:
    """The section option ``name`` of config group ``group`` gives; inside a Hydra app (``python -m
    ssd.run``, with ``hydra.searchpath`` or ``--config-dir``) from that app's search path, elsewhere
    (tests, notebooks) from ssd's ``conf/``. FileNotFoundError: no such option."""
    if GlobalHydra.instance().is_initialized():
        return _compose(group, name)
    return copy.deepcopy(_compose_from_conf_dir(group, name))


def strategy_section(name: str) -> dict[str, Any]:
    """The config section of strategy ``name`` (``group_section("strategy", name)``)."""
    return group_section("strategy", name)


def stage_config(run_cfg: Mapping[str, Any], role_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The full config of a required stage: the run's, with the stage's strategy and overrides.

    ``role_cfg["strategy"]`` names a strategy config (composed as ``strategy=<name>``) or is a whole
    strategy section (a derived stage: a born-again chain's previous generation). Stage overrides may
    not touch ``data``: every stage of a run trains on the run's datamodule.
    """
    strategy = role_cfg["strategy"]
    section = dict(strategy) if isinstance(strategy, Mapping) else strategy_section(str(strategy))
    overrides = role_cfg.get("overrides") or {}
    if isinstance(overrides, Mapping) and "data" in overrides:
        raise ConfigError(
            f"overrides.data={overrides['data']!r} is not allowed: every stage trains on the run's data; "
            "set data.* for the whole run instead"
        )
    base = OmegaConf.create({k: v for k, v in run_cfg.items() if k != "strategy"})
    merged = OmegaConf.merge(base, {"strategy": section}, overrides)
    return OmegaConf.to_container(merged, resolve=True)


def stage_key(
    cfg: Mapping[str, Any], required_keys: Mapping[str, str], fingerprint: Mapping[str, Any]
) -> str:
    """Hash of everything that determines a trained stage (``required_keys``: its own stages' keys)."""
    cls = strategy_class(cfg["strategy"])
    data = {k: v for k, v in cfg["data"].items() if k not in KEY_DATA_IGNORED}
    noise = {k: v for k, v in cfg["noise"].items() if k not in NOISE.reads} if cls.trains_on_noise else None
    versions = package_versions()
    payload = {
        "data": data,
        "data_fingerprint": dict(fingerprint),
        "noise": noise,
        "model": cfg["model"],
        "strategy": cfg["strategy"],
        "optim": cfg["optim"],
        "callbacks": cfg["callbacks"],  # early stopping changes what is trained
        "trainer": {k: cfg["trainer"].get(k) for k in KEY_TRAINER_FIELDS},
        **{k: cfg.get(k) for k in KEY_RUN_FIELDS},
        "requires": dict(required_keys),
        "versions": {k: versions[k] for k in ("ssd", "torch", "lightning")},
    }
    if takes(cls, "denoiser"):  # it builds the configured denoiser network
        payload["denoiser"] = cfg["denoiser"]
    return json_digest(payload, length=20)


def entry_name(cfg: Mapping[str, Any], key: str) -> str:
    """The stage cache entry of a stage: what was trained and its key, never the role it plays."""
    return f"{stage_identity(cfg['strategy']).replace('/', '-')}-{key}"


def method_label(cfg: Mapping[str, Any]) -> str:
    """A run's row in a report: its strategy's label, plus every role whose stage strategy differs from
    the one the strategy's own config names (``:teacher=clean`` for a self_distill with a clean teacher)."""
    section = cfg["strategy"]
    cls = strategy_class(section)
    label = cls.method_label(section)
    try:
        default = strategy_section(str(section["name"]))
    except FileNotFoundError:  # a strategy section of no config file: nothing to compare with
        return label
    for role in cls.requires:
        given, usual = section[role].get("strategy"), (default.get(role) or {}).get("strategy")
        if isinstance(given, str) and usual is not None and given != usual:
            label += f":{role}={given}"
    return label


def net_state_dict(net: nn.Module) -> dict[str, torch.Tensor]:
    """Weights without wrappers (``torch.compile``'s ``_orig_mod``), loadable by any run."""
    return getattr(net, "_orig_mod", net).state_dict()


def stage_weights(module: NoisyImageModule) -> dict[str, dict[str, torch.Tensor]]:
    """What is saved of a trained stage, by file: ``net.pt`` (its network) and, where its evaluation
    needs more (an EMA teacher), ``extra.pt``."""
    files = {NET_FILE: net_state_dict(module.net)}
    extra = module.stage_state()
    if extra:
        files[EXTRA_FILE] = extra
    return files


def load_net_weights(net: nn.Module, path: str | Path) -> None:
    """Load a stage's network from ``net.pt`` (a state_dict) or from a Lightning ``.ckpt``."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if "state_dict" in state:  # a Lightning checkpoint of a whole strategy module
        state = {k[len("net.") :]: v for k, v in state["state_dict"].items() if k.startswith("net.")}
    state = {k.replace("_orig_mod.", ""): v for k, v in state.items()}  # saved from a compiled net
    getattr(net, "_orig_mod", net).load_state_dict(state)


def load_stage_weights(module: NoisyImageModule, path: str | Path) -> None:
    """A stage's network from ``path`` and what else its evaluation needs: an ``extra.pt`` beside a
    ``net.pt``, or the rest of a Lightning ``.ckpt`` (none: the strategy makes do, e.g. an EMA is the net)."""
    load_net_weights(module.net, path)
    path = Path(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if "state_dict" in state:
        extra = {k: v for k, v in state["state_dict"].items() if not k.startswith(("net.", "frozen."))}
    elif (path.parent / EXTRA_FILE).is_file():
        extra = torch.load(path.parent / EXTRA_FILE, map_location="cpu", weights_only=True)
    else:
        return
    wanted = set(module.stage_state())
    extra = {k: v for k, v in extra.items() if k in wanted}
    if extra:
        module.load_stage_state(extra)
