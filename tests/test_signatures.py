"""ssd.config.signatures: what a section may hold, read from the callable it builds (no hand-kept lists)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypedDict

import pytest

from ssd.config import ConfigError, Range
from ssd.config.signatures import as_kwargs, check_section, check_value, config_key, describe, schema_of


class Window(TypedDict):
    size: Annotated[int, Range(gt=0)]
    shape: Literal["square", "round"]


def part(
    rate: Annotated[float, Range(gt=0, le=1)],
    mode: Literal["a", "b"],
    flag: bool,
    count: int,
    lambda_: float,
    names: list[str],
    weights: Mapping[str, Annotated[float, Range(ge=0)]] | None,
    window: Window,
    note: str | None = None,
) -> None:
    """A part with one parameter of every kind a config value is checked against."""


GOOD = {
    "_target_": f"{__name__}.part",
    "rate": 0.5,
    "mode": "a",
    "flag": True,
    "count": 3,
    "lambda": 2,
    "names": ["x"],
    "weights": {"x": 1.0},
    "window": {"size": 3, "shape": "round"},
}


def test_a_good_section_passes_and_a_keyword_is_spelled_without_its_underscore() -> None:
    assert check_section("part", GOOD) is part
    assert config_key("lambda_") == "lambda" and as_kwargs({"lambda": 1, "rate": 2}) == {
        "lambda_": 1,
        "rate": 2,
    }
    assert "lambda" in {p.key for p in schema_of(part).params.values()}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"flag": "maybe"}, "part.flag='maybe' is not allowed: must be true or false"),
        ({"flag": 1}, "part.flag=1 is not allowed: must be true or false"),
        ({"count": True}, "part.count=True is not allowed: must be an integer"),
        ({"count": 2.5}, "part.count=2.5 is not allowed: must be an integer"),
        ({"rate": float("inf")}, "part.rate=inf is not allowed: must be a finite number in (0, 1]"),
        ({"rate": 0}, "part.rate=0 is not allowed: must be a finite number in (0, 1]"),
        ({"mode": "c"}, "part.mode='c' is not allowed: must be one of a, b"),
        ({"names": "x"}, "part.names='x' is not allowed: must be a list of strings"),
        (
            {"weights": {"x": -1}},
            "part.weights={'x': -1} is not allowed: must be null or a mapping to numbers >= 0",
        ),
        (
            {"window": {"size": 0, "shape": "round"}},
            "part.window.size=0 is not allowed: must be an integer > 0",
        ),
        ({"window": {"size": 2, "shap": "round"}}, "did you mean part.window.shape"),
        ({"window": {"size": 2}}, "part.window.shape is missing"),
        (
            {"lamda": 1},
            "part.lamda=1 is not allowed: part (tests.test_signatures.part) has no key 'lamda'; did you mean part.lambda",
        ),
        ({"note": 3}, "part.note=3 is not allowed: must be null or a string"),
    ],
)
def test_each_bad_value_names_the_key_the_value_and_what_is_allowed(change: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_section("part", {**GOOD, **change})
    assert message in str(err.value)


def test_required_keys_and_importable_targets() -> None:
    with pytest.raises(
        ConfigError, match=r"part.rate is missing: part .* needs it \(must be a finite number in \(0, 1\]\)"
    ):
        check_section("part", {k: v for k, v in GOOD.items() if k != "rate"})
    check_section(
        "part", {"_target_": GOOD["_target_"], "_partial_": True}
    )  # finished later: nothing required
    with pytest.raises(
        ConfigError, match="part._target_='tests.nowhere.part' is not allowed: must name an importable"
    ):
        check_section("part", {**GOOD, "_target_": "tests.nowhere.part"})


class Base:
    def __init__(self, positional_of_base: int = 0, *, shared: int) -> None: ...


class Child(Base):
    def __init__(self, own: str, **rest: Any) -> None:
        super().__init__(**rest)


def open_part(size: int, **anything: Any) -> None: ...


def test_keyword_arguments_passed_on_to_a_base_class_are_followed() -> None:
    schema = schema_of(Child)
    assert (
        set(schema.params) == {"own", "shared"} and not schema.open
    )  # a base's positional ones are the child's
    check_section("c", {"_target_": f"{__name__}.Child", "own": "x", "shared": 1})
    with pytest.raises(ConfigError, match="has no key 'other'"):
        check_section("c", {"_target_": f"{__name__}.Child", "own": "x", "shared": 1, "other": 2})
    assert schema_of(open_part).open  # **kwargs that go nowhere known: other keys cannot be checked
    check_section("o", {"_target_": f"{__name__}.open_part", "size": 1, "anything": "goes"})


def test_extra_and_narrowed_annotations() -> None:
    """``extra``: keys ssd reads itself; ``narrow``: tighter types where a library's say too little."""
    section = {"_target_": f"{__name__}.open_part", "size": 1, "levels": [0.1, "x"]}
    with pytest.raises(ConfigError, match=r"o.levels=\[0.1, 'x'\] is not allowed: must be a list of numbers"):
        check_section("o", section, extra={"levels": list[float]})
    with pytest.raises(ConfigError, match="o.size=0 is not allowed: must be an integer > 0"):
        check_section(
            "o",
            {**section, "size": 0, "levels": []},
            extra={"levels": list[float]},
            narrow={"size": Annotated[int, Range(gt=0)]},
        )


def test_descriptions_read_as_words() -> None:
    assert describe(Annotated[int, Range(ge=1)] | None) == "null or an integer >= 1"
    assert describe(Literal[True, "auto"]) == "one of true, auto"
    check_value("k", [1, 2.5], list[float])
    with pytest.raises(ConfigError, match="k='1' is not allowed: must be a finite number"):
        check_value("k", "1", float)
