"""What a config value may be, read from an annotation: ``key=value is not allowed: must be ...``.

``check_value`` compares a plain YAML value with a Python annotation: ``bool`` is strict
(``"maybe"`` or ``1`` is no boolean), ``int`` is not a bool, ``float`` is finite; ``Literal``
choices, ``Optional`` and unions, lists and tuples, mappings, ``TypedDict`` sections (their own
keys checked too), and ranges marked ``Annotated[float, Range(ge=0)]``. ``describe`` says in
words what an annotation allows, for the message.
"""

from __future__ import annotations

import difflib
import inspect
import math
import numbers
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from ssd.config.errors import ConfigError

#: keys Hydra's ``instantiate`` reads itself
HYDRA_KEYS = frozenset({"_target_", "_partial_", "_recursive_", "_convert_", "_args_"})


@dataclass(frozen=True)
class Range:
    """A bound on a number, used as ``Annotated[float, Range(ge=0, lt=1)]``."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def holds(self, value: float) -> bool:
        return (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )

    def describe(self) -> str:
        low = f"{'[' if self.ge is not None else '('}{_num(self.ge if self.ge is not None else self.gt)}"
        high = f"{_num(self.le if self.le is not None else self.lt)}{']' if self.le is not None else ')'}"
        has_low, has_high = (
            self.ge is not None or self.gt is not None,
            self.le is not None or self.lt is not None,
        )
        if has_low and has_high:
            return f"in {low}, {high}"
        if has_low:
            return (
                f"{'>=' if self.ge is not None else '>'} {_num(self.ge if self.ge is not None else self.gt)}"
            )
        if has_high:
            return (
                f"{'<=' if self.le is not None else '<'} {_num(self.le if self.le is not None else self.lt)}"
            )
        return ""


# --------------------------------------------------------------------------- value classes
# The ranges where a kind of value means something; a part annotates its parameters with these, so one
# bound serves every parameter of the kind (a noise level in every noise model, every loss weight).

#: a noise standard deviation in [0,1] image units: 1 already buries the image; beyond 10 nothing is left
NoiseStd = Annotated[float, Range(ge=0, le=10)]
#: photons per pixel of shot noise: at 1e6 the noise (1e-3) is below an 8-bit image's step already
Photons = Annotated[float, Range(gt=0, le=1e6)]
#: a loss term's weight: beyond 1e6 the term is all the loss there is, and overflows float32 on a large feature loss
LossWeight = Annotated[float, Range(ge=0, le=1e6)]
#: an image side in pixels: below 8, a CIFAR ResNet's downsampling (x4) leaves less than 2x2 to classify
ImageSide = Annotated[int, Range(ge=8, le=4096)]
#: images generated in memory (synthetic data): a million 32x32 RGB images are 3 GB already
GeneratedImages = Annotated[int, Range(gt=0, le=1_000_000)]


def _num(value: float | None) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# --------------------------------------------------------------------------- values


def _strip_annotated(annotation: Any) -> tuple[Any, list[Range]]:
    if get_origin(annotation) is Annotated:
        base, *extras = get_args(annotation)
        inner, ranges = _strip_annotated(base)
        return inner, [*ranges, *(e for e in extras if isinstance(e, Range))]
    return annotation, []


def _is_union(annotation: Any) -> bool:
    import types

    return get_origin(annotation) in (Union, types.UnionType)


def _is_typed_dict(annotation: Any) -> bool:
    return isinstance(annotation, type) and typing.is_typeddict(annotation)


def describe(annotation: Any) -> str:
    """What a value of ``annotation`` is, in words (``an integer > 0``, ``one of a, b``, ``null or ...``)."""
    base, ranges = _strip_annotated(annotation)
    bound = " ".join(r.describe() for r in ranges if r.describe())
    if base is Any or base is inspect.Parameter.empty:
        return "any value"
    if _is_union(base):
        members = [m for m in get_args(base) if m is not type(None)]
        words = _join([describe(m) for m in members])
        words = f"null or {words}" if len(members) < len(get_args(base)) else words
        return f"{words} {bound}".strip()
    origin = get_origin(base)
    if origin is Literal:
        return "one of " + ", ".join(_literal_word(c) for c in get_args(base))
    if base is bool:
        return "true or false"
    if base is int:
        return f"an integer {bound}".strip()
    if base is float:
        return f"a finite number {bound}".strip()
    if base is str:
        return "a string"
    if base is type(None):
        return "null"
    if isinstance(base, type) and issubclass(base, PurePath):
        return "a path"
    if _is_typed_dict(base):
        return "a section with " + ", ".join(typing.get_type_hints(base))
    if origin in (list, tuple, Sequence, Iterable) or base in (list, tuple):
        args = [a for a in get_args(base) if a is not Ellipsis]
        item = describe(args[0]) if args else "values"
        return f"a list of {_plural(item)}"
    if origin in (dict, Mapping) or base in (dict, Mapping):
        args = get_args(base)
        return f"a mapping to {_plural(describe(args[1]))}" if len(args) == 2 else "a mapping"
    name = getattr(base, "__name__", str(base))
    return f"a {name}"


def _literal_word(value: Any) -> str:
    if value is True or value is False:
        return str(value).lower()
    return str(value)


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _plural(words: str) -> str:
    for single, plural in (
        ("an integer", "integers"),
        ("a finite number", "numbers"),
        ("a string", "strings"),
    ):
        if words.startswith(single):
            return plural + words[len(single) :]
    return words


def is_real(value: Any) -> bool:
    """A real number that is not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _fits(value: Any, annotation: Any) -> bool:
    """Whether ``value`` (plain YAML data) is a value of ``annotation``."""
    base, ranges = _strip_annotated(annotation)
    if base is Any or base is inspect.Parameter.empty or isinstance(base, typing.TypeVar):
        ok = True
    elif _is_union(base):
        ok = any(_fits(value, m) for m in get_args(base))
    elif get_origin(base) is Literal:
        ok = any(value == c and type(value) is type(c) for c in get_args(base))
    elif base is bool:
        ok = isinstance(value, bool)
    elif base is int:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    elif base is float:
        ok = is_real(value) and math.isfinite(value)
    elif base is str:
        ok = isinstance(value, str)
    elif base is type(None):
        ok = value is None
    elif isinstance(base, type) and issubclass(base, PurePath):
        ok = isinstance(value, (str, PurePath))
    elif _is_typed_dict(base):
        ok = isinstance(value, Mapping) and _typed_dict_problem("", value, base) is None
    elif get_origin(base) in (list, tuple, Sequence, Iterable) or base in (list, tuple):
        ok = _fits_sequence(value, base)
    elif get_origin(base) in (dict, Mapping) or base in (dict, Mapping):
        args = get_args(base)
        ok = isinstance(value, Mapping) and (len(args) != 2 or all(_fits(v, args[1]) for v in value.values()))
    else:  # a class or protocol: a section that builds one, or anything a value cannot be checked against
        ok = True
    if ok and ranges and is_real(value):
        ok = all(r.holds(value) for r in ranges)
    return ok


def _fits_sequence(value: Any, base: Any) -> bool:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)):
        return False
    args = get_args(base)
    if get_origin(base) is tuple and args and args[-1] is not Ellipsis:
        return len(value) == len(args) and all(_fits(v, a) for v, a in zip(value, args, strict=True))
    item = args[0] if args else Any
    return all(_fits(v, item) for v in value)


def check_value(key: str, value: Any, annotation: Any) -> None:
    """Raise ConfigError ``key=value is not allowed: must be ...`` unless ``value`` fits ``annotation``."""
    base, _ = _strip_annotated(annotation)
    if _is_typed_dict(base) and isinstance(value, Mapping):
        problem = _typed_dict_problem(key, value, base)
        if problem:
            raise ConfigError(problem)
        return
    if not _fits(value, annotation):
        raise ConfigError(f"{key}={value!r} is not allowed: must be {describe(annotation)}")


def _typed_dict_problem(key: str, value: Mapping[str, Any], typed: type) -> str | None:
    hints = typing.get_type_hints(typed, include_extras=True)
    required = getattr(typed, "__required_keys__", frozenset(hints))
    for name in value:
        if name not in hints:
            return unknown_key_message(f"{key}.{name}" if key else str(name), value[name], key, list(hints))
    for name in sorted(required):
        if name not in value:
            return f"{key}.{name} is missing: must be {describe(hints[name])}"
    for name, item in value.items():
        try:
            check_value(f"{key}.{name}" if key else str(name), item, hints[name])
        except ConfigError as err:
            return str(err)
    return None


def unknown_key_message(dotted: str, value: Any, where: str, allowed: Iterable[str]) -> str:
    """``dotted=value is not allowed: <where> has no key ...; did you mean ...? fix the spelling, or drop it``."""
    allowed = sorted(a for a in allowed if a not in HYDRA_KEYS)
    parent, _, name = dotted.rpartition(".")
    close = difflib.get_close_matches(name, allowed, n=3, cutoff=0.6)
    prefix = f"{parent}." if parent else ""
    hint = f"did you mean {' or '.join(prefix + c for c in close)}? " if close else ""
    listing = f"its keys: {', '.join(allowed)}" if len(allowed) <= 30 else f"{len(allowed)} keys"
    return (
        f"{dotted}={value!r} is not allowed: {where or 'the config'} has no key {name!r}; "
        f"{hint}fix the spelling, or drop it with ~{dotted} ({listing})"
    )


def hints_of(obj: Any) -> dict[str, Any]:
    """Resolved annotations of a function or class (with ``Annotated`` extras); unresolvable ones are Any."""
    try:
        return typing.get_typehints_of(obj, include_extras=True)
    except Exception:  # noqa: BLE001 - a name only importable under TYPE_CHECKING, say: resolve one by one
        raw = getattr(obj, "__annotations__", {}) or {}
        module = inspect.getmodule(obj)
        namespace = dict(vars(module)) if module else {}
        out: dict[str, Any] = {}
        for name, ann in raw.items():
            try:
                out[name] = eval(ann, namespace) if isinstance(ann, str) else ann  # noqa: S307 - own annotations
            except Exception:  # noqa: BLE001
                out[name] = Any
        return out
