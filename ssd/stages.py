"""What a stage is: its config, its cache key and entry name, its seed, its weights in and out.

A *stage* is one trained network: the main network of a run, or a network a strategy
needs first (a teacher, a denoiser, a clean classifier). This module is the low layer
that ``ssd.pipeline`` (which orchestrates stages), ``ssd.fit`` (which trains one) and
``ssd.validate`` (which checks them) all import downward; it imports nothing above
``ssd.parts``.

The stage key is deny-by-default: the stage's whole resolved config less an explicit list of
keys that cannot change its weights (``KEY_EXCLUDED``), a digest of the source that trains it
(``TRAINING_SOURCES`` and any module outside ssd a ``_target_`` names), and a fingerprint of
the data the stage actually trained on (not just the config that found it), so a network
trained on the CIFAR subset is never served to a run on the full set.
Entry names are role-free (``<what was trained>-<key>``): the clean classifier that STL
uses as its teacher is the same entry that denoise and joint use as their classifier.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.util
import subprocess
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
from ssd.parts import strategy_class, takes
from ssd.paths import conf_dir
from ssd.results import json_digest, package_versions
from ssd.rundir import without_keys
from ssd.seeding import stage_identity
from ssd.strategies.base import NoisyImageModule

__all__ = [
    "KEY_EXCLUDED",
    "TRAINING_SOURCES",
    "code_digest",
    "code_files",
    "data_fingerprint",
    "entry_name",
    "key_config",
    "load_net_weights",
    "load_stage_weights",
    "method_label",
    "net_state_dict",
    "partial_schedule",
    "source_state",
    "stage_config",
    "stage_key",
    "stage_weights",
]

#: Keys of a stage's resolved config that cannot change its trained weights, as dotted paths (a path
#: names its whole subtree). The stage key is the WHOLE config minus these (deny by default): a key not
#: listed here, a brand-new one included, is in the key unless someone argues it out here, with its reason.
KEY_EXCLUDED: dict[str, str] = {
    # where things are read and written (the data actually read is in the key as its fingerprint)
    "paths": "folders and the lock kind; the data read is keyed by its content fingerprint",
    "hydra": "Hydra's own settings (output folders, launcher, job names)",
    "logger": "loggers record a stage, they do not train it",
    "callbacks.progress_bar": "display only",
    "callbacks.lr_monitor": "logs the learning rate, changes nothing",
    "run_name": "the run folder's name",
    "sweep_name": "the sweep folder's name and W&B group",
    "tags": "W&B tags",
    "resume": "resuming is bit-identical to an uninterrupted run (tests/test_resume.py)",
    "objective": "what a run returns to a sweeper, read after training",
    "eval_seed": "evaluation only: the seed of the fixed test noise",
    "cache": "whether the stage cache is read or written, not what is trained",
    # where and how fast it runs: the same recipe; results differ from other hardware at float rounding only
    "trainer.accelerator": "the device kind (auto), not the recipe",
    "trainer.devices": "the global batch (data.batch_size) is split over devices; the recipe is the same",
    "trainer.num_nodes": "as trainer.devices",
    "trainer.strategy": "how processes are launched (auto, ddp), as trainer.devices",
    "trainer.compile": "torch.compile runs the same network faster",
    "trainer.channels_last": "a memory layout",
    "trainer.enable_progress_bar": "display only",
    "trainer.enable_model_summary": "display only",
    "trainer.log_every_n_steps": "logging frequency",
    "trainer.limit_test_batches": "evaluation only (the test set)",
    "data.channels_last": "a memory layout",
    "data.num_workers": "loader processes; every batch is the same",
    "data.eval_batch_size": "evaluation only",
    "data.limit_test": "evaluation only (the test set)",
    "data.cache_dir": "where decoded data is cached; the data read is in the fingerprint",
    "data.root": "where the data is; the data read is in the fingerprint",
    "data.download": "whether data may be downloaded; the data read is in the fingerprint",
    "noise.eval_levels": "evaluation only: the robustness curve's levels",
}

#: ssd's source that trains a stage (paths under the ssd package; a folder means every .py in it):
#: its digest is in every stage key, so editing a loss, a network or the data pipeline retrains.
#: Modules a config reaches by ``_target_`` outside ssd are added per stage (see ``code_files``).
TRAINING_SOURCES = (
    "strategies",
    "models",
    "noise",
    "data",
    "fit.py",
    "callbacks.py",
    "schedules.py",
    "seeding.py",
    "parts.py",
    "hardware.py",
    "stages.py",
    "stage_info.py",
)
#: packages whose version is in the key already (``versions``): their files are not hashed
VERSIONED_PACKAGES = ("torch", "torchvision", "lightning", "pytorch_lightning", "ssd")
PACKAGE_DIR = Path(__file__).resolve().parent


def key_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """What of a stage's resolved config is in its key: all of it, less ``KEY_EXCLUDED``, less the
    noise of a stage that never sees noise and the denoiser of a strategy that builds none."""
    kept = without_keys(cfg, KEY_EXCLUDED)
    cls = strategy_class(cfg["strategy"])
    if not cls.trains_on_noise:  # a clean classifier serves every noise level
        kept.pop("noise", None)
    if not takes(cls, "denoiser"):
        kept.pop("denoiser", None)
    return kept


def _targets(tree: Any) -> list[str]:
    if isinstance(tree, Mapping):
        found = [str(tree["_target_"])] if "_target_" in tree else []
        return found + [t for v in tree.values() for t in _targets(v)]
    if isinstance(tree, list):
        return [t for v in tree for t in _targets(v)]
    return []


def _target_file(target: str) -> Path | None:
    """The source file of the module a ``_target_`` lives in, unless it is ssd or a versioned package."""
    if target.split(".")[0] in VERSIONED_PACKAGES:
        return None
    parts_ = target.split(".")
    for cut in range(len(parts_), 0, -1):
        spec = _find_spec_safely(".".join(parts_[:cut]))
        if spec is not None and spec.origin and spec.origin not in ("built-in", "frozen"):
            return Path(spec.origin).resolve()
    return None


def _find_spec_safely(name: str) -> Any:
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError, AttributeError):
        return None


def code_files(cfg: Mapping[str, Any]) -> list[Path]:
    """The files whose content is in a stage's key: ``TRAINING_SOURCES``, then each module outside ssd
    (and outside the versioned packages) that the stage's config names as a ``_target_``."""
    files: list[Path] = []
    for rel in TRAINING_SOURCES:
        path = PACKAGE_DIR / rel
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    for target in sorted(set(_targets(key_config(cfg)))):
        found = _target_file(target)
        if found is not None and found.suffix == ".py" and found not in files:
            files.append(found)
    return files


def code_digest(files: list[Path]) -> str:
    """sha256 over the names (relative to ssd where inside it) and contents of ``files``."""
    digest = hashlib.sha256()
    for path in files:
        try:
            name = str(path.relative_to(PACKAGE_DIR))
        except ValueError:
            name = path.name
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:20]


@functools.lru_cache(maxsize=1)
def source_state() -> dict[str, Any]:
    """The git commit of ssd's checkout and whether it has uncommitted changes (None outside git)."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(PACKAGE_DIR), *args], capture_output=True, text=True, timeout=20, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


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
    # init_from and eval_only are the main stage's (ssd.fit reads them there only): a required stage
    # of an init_from run is the same network, and keyed the same, as everyone else's
    merged = OmegaConf.merge(base, {"strategy": section, "init_from": None, "eval_only": False}, overrides)
    return OmegaConf.to_container(merged, resolve=True)


def stage_key(
    cfg: Mapping[str, Any], required_keys: Mapping[str, str], fingerprint: Mapping[str, Any]
) -> str:
    """Hash of everything that may decide a trained stage: its config less ``KEY_EXCLUDED``
    (``key_config``), the data it trains on, the code that trains it (``code_files``), the versions
    of ssd, torch and Lightning, and ``required_keys`` (its own stages' keys)."""
    versions = package_versions()
    payload = {
        "config": key_config(cfg),
        "data_fingerprint": dict(fingerprint),
        "code": code_digest(code_files(cfg)),
        "requires": dict(required_keys),
        "versions": {k: versions[k] for k in ("ssd", "torch", "lightning")},
    }
    return json_digest(payload, length=20)


def partial_schedule(cfg: Mapping[str, Any], epochs: int | None) -> str | None:
    """Why a trained stage did not run its full schedule (so it must never be published), or None.

    ``epochs``: the epochs it trained. Cut short: ``trainer.fast_dev_run``, ``limit_train_batches``
    below a whole epoch (a fraction < 1, or any batch count), and ``max_steps``/``max_time`` ending
    training before ``max_epochs``. Early stopping (``callbacks``) ending early is the schedule itself.
    An interrupted run raises and never gets here.
    """
    trainer = cfg["trainer"]
    if trainer.get("fast_dev_run"):
        return f"trainer.fast_dev_run={trainer['fast_dev_run']!r}"
    limit = trainer.get("limit_train_batches")
    if limit is not None and not (isinstance(limit, float) and limit >= 1.0):
        return f"trainer.limit_train_batches={limit!r} trains part of each epoch"
    max_epochs = trainer.get("max_epochs")
    cut = [k for k in ("max_steps", "max_time") if trainer.get(k) not in (None, -1)]
    if cut and (not isinstance(max_epochs, int) or max_epochs < 0 or (epochs or 0) < max_epochs):
        return f"trainer.{cut[0]}={trainer[cut[0]]!r} ended it after {epochs} of {max_epochs} epochs"
    return None


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
