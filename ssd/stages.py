"""What a stage is: its config, its cache key and entry name, its seed, its weights in and out.

A *stage* is one trained network: the main network of a run, or a network a strategy
needs first (a teacher, a denoiser, a clean classifier). This module is the low layer
that ``ssd.pipeline`` (which orchestrates stages), ``ssd.fit`` (which trains one) and
``ssd.config.validate`` (which checks them) all import downward; it imports nothing above
the data, model and strategy packages.

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

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import MissingConfigException
from hydra.utils import get_class
from omegaconf import OmegaConf
from torch import nn

from ssd.config.errors import ConfigError
from ssd.paths import conf_dir
from ssd.results import json_digest, package_versions
from ssd.seeding import stage_identity, stage_seed
from ssd.strategies.base import NoisyImageModule

__all__ = [
    "data_fingerprint",
    "data_info",
    "entry_name",
    "load_net_weights",
    "net_state_dict",
    "stage_config",
    "stage_key",
    "stage_seed",
    "strategy_class",
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


def strategy_class(cfg: Mapping[str, Any]) -> type[NoisyImageModule]:
    return get_class(cfg["strategy"]["_target_"])


def data_info(datamodule: L.LightningDataModule) -> dict[str, Any]:
    """The facts a network is built from (the datamodule protocol: classes, mean/std, image size)."""
    return {
        "num_classes": int(datamodule.num_classes),
        "mean": [float(v) for v in datamodule.mean],
        "std": [float(v) for v in datamodule.std],
        "image_size": int(datamodule.image_size),
    }


def data_fingerprint(datamodule: L.LightningDataModule) -> dict[str, Any]:
    """What the stages of a run train on: a content hash where the datamodule gives one, and split sizes."""
    return {"content": datamodule.fingerprint(), "splits": dict(datamodule.split_sizes())}


def _compose_strategy(name: str) -> dict[str, Any]:
    """``strategy=<name>`` as Hydra composes it: its defaults list, and the app's config search path."""
    try:
        composed = compose(config_name="config", overrides=[f"strategy={name}"])
    except MissingConfigException as err:
        raise FileNotFoundError(f"stage strategy {name!r} has no config strategy/{name}.yaml") from err
    return OmegaConf.to_container(composed.strategy, resolve=False)


@functools.lru_cache(maxsize=64)
def _compose_strategy_from_conf_dir(name: str) -> dict[str, Any]:
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        return _compose_strategy(name)


def strategy_section(name: str) -> dict[str, Any]:
    """The config section of strategy ``name``; inside a Hydra app (``python -m ssd.run``, also with
    ``--config-dir``) from that app's search path, elsewhere (tests, notebooks) from ssd's ``conf/``."""
    if GlobalHydra.instance().is_initialized():
        return _compose_strategy(name)
    return copy.deepcopy(_compose_strategy_from_conf_dir(name))


def stage_config(run_cfg: Mapping[str, Any], role_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The full config of a required stage: the run's, with the stage's strategy and overrides.

    Stage overrides may not touch ``data``: every stage of a run trains on the run's datamodule.
    """
    section = strategy_section(str(role_cfg["strategy"]))
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
    cls = strategy_class(cfg)
    data = {k: v for k, v in cfg["data"].items() if k not in KEY_DATA_IGNORED}
    noise = {k: v for k, v in cfg["noise"].items() if k != "eval_levels"} if cls.trains_on_noise else None
    versions = package_versions()
    payload = {
        "data": data,
        "data_fingerprint": dict(fingerprint),
        "noise": noise,
        "model": cfg["model"],
        "strategy": cfg["strategy"],
        "optim": cfg["optim"],
        "trainer": {k: cfg["trainer"].get(k) for k in KEY_TRAINER_FIELDS},
        **{k: cfg.get(k) for k in KEY_RUN_FIELDS},
        "requires": dict(required_keys),
        "versions": {k: versions[k] for k in ("ssd", "torch", "lightning")},
    }
    payload.update({section: cfg[section] for section in cls.config_sections})  # e.g. the denoiser network
    return json_digest(payload, length=20)


def entry_name(cfg: Mapping[str, Any], key: str) -> str:
    """The stage cache entry of a stage: what was trained and its key, never the role it plays."""
    return f"{stage_identity(cfg['strategy']).replace('/', '-')}-{key}"


def net_state_dict(net: nn.Module) -> dict[str, torch.Tensor]:
    """Weights without wrappers (``torch.compile``'s ``_orig_mod``), loadable by any run."""
    return getattr(net, "_orig_mod", net).state_dict()


def load_net_weights(net: nn.Module, path: str | Path) -> None:
    """Load a stage's network from ``net.pt`` (a state_dict) or from a Lightning ``.ckpt``."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if "state_dict" in state:  # a Lightning checkpoint of a whole strategy module
        state = {k[len("net.") :]: v for k, v in state["state_dict"].items() if k.startswith("net.")}
    state = {k.replace("_orig_mod.", ""): v for k, v in state.items()}  # saved from a compiled net
    getattr(net, "_orig_mod", net).load_state_dict(state)
