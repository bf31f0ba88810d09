"""The generic config checks: ``require`` and its helpers for numbers, booleans and choices.

A low-level module (it imports nothing from ssd but the error type), so that strategies,
stages and ``ssd.config.validate`` can all check their keys the same way, with one message
form: ``key=value is not allowed: what is allowed``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

from ssd.config.errors import ConfigError

__all__ = [
    "get_key",
    "is_finite",
    "is_int",
    "is_number",
    "require",
    "require_bool",
    "require_choice",
    "require_number",
    "require_optional_positive_int",
    "require_positive_int",
]


def get_key(cfg: Mapping[str, Any], key: str) -> Any:
    """``cfg[a][b]`` for ``key="a.b"``; a missing key is a ConfigError naming it."""
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ConfigError(f"{key} is missing from the config")
        node = node[part]
    return node


def is_number(value: Any) -> bool:
    """A real number (``True`` is not one)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_finite(value: Any) -> bool:
    return is_number(value) and math.isfinite(value)


def is_int(value: Any) -> bool:
    """An integer (``True`` is not one)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def require(ok: bool, key: str, value: Any, allowed: str) -> None:
    """Raise ConfigError ``key=value is not allowed: allowed`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


def require_positive_int(cfg: Mapping[str, Any], key: str) -> None:
    value = get_key(cfg, key)
    require(is_int(value) and value > 0, key, value, "must be an integer > 0")


def require_number(
    cfg: Mapping[str, Any], key: str, low: float = float("-inf"), high: float = float("inf")
) -> None:
    value = get_key(cfg, key)
    require(is_number(value) and low <= value <= high, key, value, f"must be a number in [{low:g}, {high:g}]")


def require_optional_positive_int(cfg: Mapping[str, Any], key: str, what: str = "") -> None:
    value = get_key(cfg, key)
    require(
        value is None or (is_int(value) and value > 0), key, value, f"must be null or an integer > 0{what}"
    )


def require_bool(cfg: Mapping[str, Any], key: str) -> None:
    value = get_key(cfg, key)
    require(isinstance(value, bool), key, value, "must be true or false")


def require_choice(cfg: Mapping[str, Any], key: str, choices: Iterable[Any]) -> None:
    value = get_key(cfg, key)
    choices = tuple(choices)
    require(value in choices, key, value, f"must be one of {', '.join(map(str, choices))}")
