"""Unknown keys: a typo, or a key of another config option, must fail instead of being ignored.

Hydra's struct mode does not apply to ``+key=value`` overrides (and Hydra itself suggests
``+strategy.lamda=0.1`` for the typo ``strategy.lamda``), so a composed config may carry keys
nothing reads. Every key of ssd's own sections is compared with the keys ssd's config files
define, read from ``conf/`` (so new keys need no second list here):

* the top level: ``conf/config.yaml`` and its config groups;
* a section whose ``_target_`` is built from keyword arguments (datamodule, classifier, optimizer):
  that callable's parameters, less the ones ssd fills in at build time;
* any other section: the union of the group's option files that build the same ``_target_``
  (and ``arch``) as the section, or of all the group's options when it has no ``_target_``
  (noise, trainer, logger, paths, optim); ``trainer`` also takes every ``lightning.Trainer`` argument.

Values the files leave open (``null``, a list, ``{}``) and ``strategy.<role>.overrides`` (a run-config
fragment, checked as that stage's own config) are not looked into. A section built from a
``_target_`` no option file uses is not ssd's: its keys are its own.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ssd.config.errors import ConfigError
from ssd.paths import conf_dir

#: keys Hydra's instantiate reads
HYDRA_KEYS = frozenset({"_target_", "_partial_", "_recursive_", "_convert_", "_args_"})
#: parameters ssd passes itself when it builds a target (never config keys)
FILLED_AT_BUILD = frozenset({"self", "cfg", "params", "num_classes", "mean", "std", "data_info", "frozen"})
#: sections whose content is another config, checked where it is used
FREE_FORM = frozenset({"overrides"})
#: lightning.Trainer arguments ssd sets itself (build_trainer); a config value would clash
TRAINER_SET_BY_SSD = frozenset({"logger", "callbacks", "default_root_dir", "use_distributed_sampler"})

Schema = dict[str, Any]  # key -> nested Schema (a mapping the files define) or None (an open value)


def _union(a: Schema, b: Schema) -> Schema:
    out = dict(a)
    for key, value in b.items():
        if isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = _union(out[key], value)
        elif key not in out or not isinstance(out[key], dict) or value is None:
            out[key] = value if value is None or isinstance(value, dict) else None
    return out


def _shape(node: Any) -> Any:
    """A config value as a schema: mappings with keys stay mappings; anything else is open (None)."""
    if isinstance(node, Mapping) and node:
        return {str(k): _shape(v) for k, v in node.items()}
    return None


@functools.lru_cache(maxsize=256)
def _raw(path: Path) -> dict[str, Any]:
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    return raw if isinstance(raw, dict) else {}


def _merged_default(path: Path, entry: Any) -> Path | None:
    """The file a defaults-list entry of ``path`` merges into the same section, if any.

    ``default`` (``trainer/ddp.yaml``) is relative to the file's folder,
    ``/_shared/strategy/distill@_here_`` to ``conf/``; entries for other packages are not this section's.
    """
    if not isinstance(entry, str) or entry == "_self_":
        return None
    name, _, package = entry.partition("@")
    if package not in ("", "_here_"):
        return None
    file = conf_dir() / f"{name[1:]}.yaml" if name.startswith("/") else path.parent / f"{name}.yaml"
    return file if file.is_file() else None


@functools.lru_cache(maxsize=256)
def _option(path: Path) -> Schema:
    """The keys of one option file, with its own defaults list (``trainer/ddp.yaml`` extends ``default``,
    ``strategy/self_distill.yaml`` the shared ``_shared/strategy/feature_distill.yaml``)."""
    raw = dict(_raw(path))
    schema: Schema = {}
    for entry in raw.pop("defaults", None) or []:
        file = _merged_default(path, entry)
        if file is not None:
            schema = _union(schema, _option(file))
    return _union(schema, _shape(raw) or {})


def _options(group: str) -> list[tuple[dict[str, Any], Schema]]:
    """(raw content, schema) of every option file of ``group``."""
    folder = conf_dir() / group
    return [(_raw(p), _option(p)) for p in (sorted(folder.glob("*.yaml")) if folder.is_dir() else [])]


@functools.lru_cache(maxsize=64)
def _parameters(target: str) -> frozenset[str] | None:
    """Keyword parameters of the callable ``target`` (None: unknown, ``**kwargs``, or a config-taking class)."""
    from hydra.utils import get_object

    try:
        params = inspect.signature(get_object(target)).parameters
    except Exception:  # noqa: BLE001 - not importable or no signature: not ours to check
        return None
    if "cfg" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return frozenset(params) - FILLED_AT_BUILD


def _top_level() -> Schema:
    raw = _raw(conf_dir() / "config.yaml")
    groups = []
    for entry in raw.get("defaults") or []:
        if isinstance(entry, Mapping):
            name = str(next(iter(entry))).removeprefix("optional ").removeprefix("override ").strip()
            groups.append(name.split("@")[0])
    schema = {k: _shape(v) for k, v in raw.items() if k not in ("defaults", "hydra")}
    schema.update({g: {} for g in groups})  # filled per section below
    schema["hydra"] = None  # present when composed with return_hydra_config
    return schema


def _group_schema(group: str, section: Mapping[str, Any]) -> tuple[Schema | None, str]:
    """The keys ``section`` (the config of group ``group``) may have, and how to name that in a message."""
    target = section.get("_target_")
    params = _parameters(target) if isinstance(target, str) else None
    options = _options(group)
    if params is not None:  # built from keyword arguments: the callable's parameters (and its options' keys)
        keys = params | HYDRA_KEYS | {k for raw, _ in options if raw.get("_target_") == target for k in raw}
        return {k: None for k in keys}, f"{group} ({target})"
    if isinstance(target, str):
        options = [
            (raw, schema)
            for raw, schema in options
            if raw.get("_target_") == target and ("arch" not in section or raw.get("arch") == section["arch"])
        ]
        if not options:
            return None, group  # built from somewhere else: its keys are its own
    schema: Schema = {}
    for _, option in options:
        schema = _union(schema, option)
    if group == "trainer":
        from lightning import Trainer

        extra = frozenset(inspect.signature(Trainer).parameters) - TRAINER_SET_BY_SSD
        schema = _union({k: None for k in extra}, schema)
    name = section.get("name")
    return schema, f"{group}={name}" if isinstance(name, str) else group


def _closest(key: str, allowed: list[str], parent: str) -> str:
    close = difflib.get_close_matches(key, allowed, n=3, cutoff=0.6)
    return f"did you mean {' or '.join(f'{parent}{c}' for c in close)}? " if close else ""


def _experiment_hint(dotted: str) -> str:
    """``(experiment=cpu_quick sets it)`` when the selected preset is where the key comes from."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return ""
        choice = HydraConfig.get().runtime.choices.get("experiment")
    except Exception:  # noqa: BLE001 - no Hydra run: no hint
        return ""
    path = conf_dir() / "experiment" / f"{choice}.yaml"
    if not choice or not path.is_file():
        return ""
    node: Any = _raw(path)
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return ""
        node = node[part]
    return f": experiment={choice} does"


def _defines(schema: Schema, parts: list[str]) -> bool:
    node: Any = schema
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    return isinstance(node, dict) and parts[-1] in node


def _elsewhere(dotted: str) -> str:
    """Which other options of the group define ``dotted`` (then a preset made for them set it)."""
    group, *rest = dotted.split(".")
    folder = conf_dir() / group
    having = [p.stem for p in sorted(folder.glob("*.yaml")) if rest and _defines(_option(p), rest)]
    if not having:
        return ""
    return f"; it is a key of {group}={'/'.join(having)}: drop it when a preset made for those sets it"


def _walk(node: Mapping[str, Any], schema: Schema, path: str, where: str) -> None:
    for key, value in node.items():
        dotted = f"{path}.{key}" if path else str(key)
        if key in HYDRA_KEYS and path:
            continue
        if key not in schema:
            allowed = sorted(k for k in schema if k not in HYDRA_KEYS)
            listing = (
                f"its keys: {', '.join(allowed)}"
                if len(allowed) <= 24
                else f"see conf/{dotted.split('.')[0]}/"
            )
            parent = f"{path}." if path else ""
            raise ConfigError(
                f"{dotted}={value!r} is not allowed: {where} has no key {key!r}; "
                f"{_closest(str(key), allowed, parent)}fix the spelling, or drop it with ~{dotted}"
                f"{_elsewhere(dotted)}{_experiment_hint(dotted)} ({listing})"
            )
        sub = schema[key]
        if key in FREE_FORM or not isinstance(value, Mapping) or not isinstance(sub, dict):
            continue
        target = value.get("_target_")
        params = _parameters(target) if isinstance(target, str) else None
        if params is not None:
            sub, sub_where = {k: None for k in params | HYDRA_KEYS}, f"{dotted} ({target})"
        else:
            sub_where = dotted
        _walk(value, sub, dotted, sub_where)


def check_unknown_keys(cfg: Mapping[str, Any]) -> None:
    """Raise ConfigError for the first key of ``cfg`` that ssd's config files do not define."""
    top = _top_level()
    _walk({k: v for k, v in cfg.items() if not isinstance(v, Mapping) or k not in top}, top, "", "the config")
    for group, section in cfg.items():
        if group == "hydra" or group not in top or not isinstance(section, Mapping):
            continue
        schema, where = _group_schema(group, section)
        if schema is None:
            continue
        if group == "strategy" and isinstance(section.get("optim"), Mapping):  # a whole optim section
            schema = {**schema, "optim": _group_schema("optim", section["optim"])[0]}
        _walk(section, schema, group, where)
