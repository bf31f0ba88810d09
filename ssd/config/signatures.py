"""What a config section may hold, read from the signature of the callable it builds.

A part's section is its ``_target_`` and that callable's keyword arguments, so the callable is the
schema: its parameters say which keys exist and which are required, their annotations what a value
may be (``ssd.config.annotations``). ``check_section`` compares a section with them before anything
is built: unknown keys (with "did you mean"), missing required ones, every value.

A parameter whose name is a Python keyword is spelled with a trailing underscore in code and
without it in YAML (``lambda_`` <-> ``strategy.lambda``): ``config_key`` and ``python_name`` are that
rule, the only mapping between the two. Messages always use the YAML key.
"""

from __future__ import annotations

import functools
import inspect
import keyword
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ssd.config.annotations import HYDRA_KEYS, Range, check_value, describe, hints_of, unknown_key_message
from ssd.config.errors import ConfigError

_REQUIRED = inspect.Parameter.empty

__all__ = [
    "HYDRA_KEYS",
    "Range",
    "as_kwargs",
    "check_keys",
    "check_section",
    "check_value",
    "config_key",
    "describe",
    "import_target",
    "python_name",
    "schema_of",
]


# --------------------------------------------------------------------------- names


def config_key(name: str) -> str:
    """The YAML key of parameter ``name`` (``lambda_`` -> ``lambda``)."""
    stripped = name[:-1] if name.endswith("_") else name
    return stripped if keyword.iskeyword(stripped) else name


def python_name(key: str) -> str:
    """The parameter name of YAML key ``key`` (``lambda`` -> ``lambda_``)."""
    return f"{key}_" if keyword.iskeyword(key) else key


def as_kwargs(section: Mapping[str, Any]) -> dict[str, Any]:
    """A section's keys as keyword arguments (Python keywords get their trailing underscore)."""
    return {python_name(str(k)): v for k, v in section.items()}


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Param:
    """One keyword a callable takes: its YAML key, annotation and default (``inspect.Parameter.empty``: required)."""

    key: str
    annotation: Any
    default: Any

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


@dataclass(frozen=True)
class Schema:
    """The keywords a callable takes; ``open``: it also takes any other (``**kwargs`` that nothing checks)."""

    params: dict[str, Param]
    open: bool = False


def _own_parameters(
    fn: Callable[..., Any], skip_first: bool
) -> tuple[list[inspect.Parameter], dict[str, Any]]:
    params = list(inspect.signature(fn).parameters.values())
    return (params[1:] if skip_first else params), hints_of(fn)


@functools.lru_cache(maxsize=512)
def schema_of(target: Callable[..., Any]) -> Schema:
    """The keywords ``target`` takes, following the ``**kwargs`` a class passes on to its bases.

    A class whose ``__init__`` takes ``**kwargs`` is read as passing them on
    (``super().__init__(**kwargs)``): the keyword-only parameters of the next class up its MRO
    with an ``__init__`` of its own are added (its positional ones are the subclass's to set), up
    to one that takes no ``**kwargs``. A function with ``**kwargs``, or a chain that ends in one,
    is ``open``: other keys cannot be checked.
    """
    params: dict[str, Param] = {}
    if not inspect.isclass(target):
        own, hints = _own_parameters(target, skip_first=False)
        return _collect(own, hints, params)
    for depth, cls in enumerate(c for c in target.__mro__ if "__init__" in vars(c) and c is not object):
        try:
            own, hints = _own_parameters(vars(cls)["__init__"], skip_first=True)
        except (TypeError, ValueError):  # a builtin without a signature
            return Schema(params, open=True)
        if depth:
            own = [p for p in own if p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD)]
        if "__dataclass_fields__" in vars(cls):
            hints = {**hints_of(cls), **hints}
        schema = _collect(own, hints, params)
        if not schema.open:
            return schema
    return Schema(params, open=True)


def _collect(own: list[inspect.Parameter], hints: dict[str, Any], params: dict[str, Param]) -> Schema:
    open_ = False
    for p in own:
        if p.kind is p.VAR_KEYWORD:
            open_ = True
            continue
        if p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY) or p.name in params:
            continue
        params[p.name] = Param(config_key(p.name), hints.get(p.name, Any), p.default)
    return Schema(params, open=open_)


# --------------------------------------------------------------------------- sections


def import_target(key: str, target: Any) -> Callable[..., Any]:
    """The callable a ``_target_`` names, or a ConfigError naming ``key``."""
    from hydra.utils import get_object

    try:
        obj = get_object(str(target))
    except Exception:  # noqa: BLE001 - hydra raises several types here
        obj = None
    if not callable(obj):
        raise ConfigError(
            f"{key}._target_={target!r} is not allowed: must name an importable class or function "
            "(module.Name), e.g. a class on the Python path of the folder you run from"
        )
    return obj


def check_section(
    key: str,
    section: Mapping[str, Any],
    *,
    filled: Iterable[str] = (),
    extra: Mapping[str, Any] | None = None,
    narrow: Mapping[str, Any] | None = None,
    target: Callable[..., Any] | None = None,
) -> Callable[..., Any]:
    """Check a ``_target_`` section against its callable; return the callable.

    ``filled``: parameters ssd passes itself when it builds the part (never config keys).
    ``extra``: keys of the section that ssd reads itself, with their annotations.
    ``narrow``: tighter annotations for parameters the callable has, where its own say too little
    (``torch.optim.SGD``'s ``lr: float | Tensor`` takes a negative learning rate).
    """
    if target is None:
        if not isinstance(section, Mapping) or "_target_" not in section:
            raise ConfigError(f"{key}={section!r} is not allowed: must be a section with a _target_")
        target = import_target(key, section["_target_"])
    schema = schema_of(target)
    filled = set(filled)
    params = {p.key: p for name, p in schema.params.items() if name not in filled}
    typed = {**{k: p.annotation for k, p in params.items()}, **dict(extra or {})}
    typed.update({k: v for k, v in (narrow or {}).items() if k in typed})
    where = f"{key} ({section.get('_target_', getattr(target, '__name__', target))})"
    for name, value in section.items():
        if name in HYDRA_KEYS:
            continue
        if name not in typed:
            if schema.open:
                continue
            raise ConfigError(unknown_key_message(f"{key}.{name}", value, where, typed))
        check_value(f"{key}.{name}", value, typed[name])
    if not section.get("_partial_"):
        missing = [p for k, p in params.items() if p.required and k not in section]
        if missing:
            p = missing[0]
            raise ConfigError(
                f"{key}.{p.key} is missing: {where} needs it (must be {describe(p.annotation)})"
            )
    return target


def check_keys(key: str, section: Mapping[str, Any], annotations: Mapping[str, Any], where: str) -> None:
    """Check a section that builds nothing (``paths``, the run's own keys) against ``annotations``."""
    for name, value in section.items():
        if name not in annotations:
            raise ConfigError(
                unknown_key_message(f"{key}.{name}" if key else str(name), value, where, annotations)
            )
        check_value(f"{key}.{name}" if key else str(name), value, annotations[name])
