"""Where a distillation student's teacher stage comes from, and how its run is labelled in reports.

The configured ``strategy.teacher`` section names the strategy that trains the teacher stage,
an optional checkpoint and overrides of the run config for that stage. Two keys derive a
different section from it:

* ``generations=k > 1`` (born-again chains): the teacher is generation k-1, i.e. this very
  strategy section with ``generations=k-1``; so generation 1's teacher is the configured one,
  and every generation is a stage with its own key, cache entry and seed;
* ``teacher_sigma``: the configured teacher, trained at that noise sigma (a ``noise.sigma``
  stage override; the student keeps the run's noise).

What ``role_config`` reads (``generations``, ``teacher_sigma``) is checked by ``check_config``,
which runs before the stage itself is checked (``NoisyImageModule.check``); the section's
``strategy``, ``ckpt`` and ``overrides`` are checked with the stage (ssd.config.validate), as
every stage's are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import OmegaConf

from ssd.config.checks import get_key, is_int, is_number, require
from ssd.stages import strategy_section


def _flat(mapping: Mapping[str, Any], prefix: str = "") -> list[str]:
    """``{a: {b: 1}}`` -> ``["a.b=1"]`` (report labels of teacher overrides)."""
    items: list[str] = []
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            items += _flat(value, f"{prefix}{key}.")
        else:
            items.append(f"{prefix}{key}={value}")
    return items


def _configured_teacher(name: str) -> str | None:
    """The teacher strategy that strategy ``name``'s own config sets (None: ``name`` is no config)."""
    try:
        return strategy_section(name)["teacher"]["strategy"]
    except FileNotFoundError:
        return None


def role_config(cfg: Mapping[str, Any], role: str) -> dict[str, Any]:
    """The section ``{strategy, ckpt, overrides}`` that builds ``role``'s stage for this config."""
    strategy_cfg = cfg["strategy"]
    section = dict(strategy_cfg[role])
    if role != "teacher":
        return section
    generations = strategy_cfg["generations"]
    if generations > 1:
        previous = {**strategy_cfg, "generations": generations - 1}
        return {"strategy": strategy_cfg["name"], "ckpt": None, "overrides": {"strategy": previous}}
    sigma = strategy_cfg["teacher_sigma"]
    if sigma is not None:
        merged = OmegaConf.merge(section.get("overrides") or {}, {"noise": {"sigma": sigma}})
        section["overrides"] = OmegaConf.to_container(merged)
    return section


def method_label(cfg: Mapping[str, Any]) -> str:
    """``self_distill:same``, ``student_teacher``, ``self_distill:same:gen2``, ``...:teacher_sigma=0.5``.

    Every way the teacher differs from the strategy's default is in the label, so a report
    never mixes a teacher ablation into the plain method's row.
    """
    strategy_cfg = cfg["strategy"]
    name, teacher_input = str(strategy_cfg["name"]), str(strategy_cfg["teacher_input"])
    label = name if (name, teacher_input) == ("student_teacher", "clean") else f"{name}:{teacher_input}"
    if strategy_cfg["generations"] > 1:
        label += f":gen{strategy_cfg['generations']}"
    teacher = strategy_cfg["teacher"]
    default = _configured_teacher(name)
    if default is not None and teacher["strategy"] != default:
        label += f":teacher={teacher['strategy']}"
    if strategy_cfg["teacher_sigma"] is not None:
        label += f":teacher_sigma={strategy_cfg['teacher_sigma']:g}"
    if teacher.get("overrides"):  # a stage section may leave out ckpt and overrides
        label += f":teacher[{','.join(_flat(teacher['overrides']))}]"
    return label


def check_config(cfg: Mapping[str, Any]) -> None:
    """``generations`` and ``teacher_sigma``: what ``role_config`` derives the teacher stage from."""
    strategy_cfg = cfg["strategy"]
    generations = get_key(cfg, "strategy.generations")
    require(
        is_int(generations) and generations >= 1,
        "strategy.generations",
        generations,
        "must be an integer >= 1 (1: one student of the configured teacher; k: a chain of k students)",
    )
    if generations > 1:
        require(
            _configured_teacher(strategy_cfg["name"]) is not None,
            "strategy.name",
            strategy_cfg["name"],
            "must name a conf/strategy/*.yaml when strategy.generations > 1 (earlier generations are built from it)",
        )
    sigma = get_key(cfg, "strategy.teacher_sigma")
    if sigma is None:
        return
    require(is_number(sigma) and sigma >= 0, "strategy.teacher_sigma", sigma, "must be null or a number >= 0")
    require(
        "sigma" in cfg["noise"],
        "strategy.teacher_sigma",
        sigma,
        f"needs a noise model with a sigma (noise={cfg['noise']['name']}); "
        "use strategy.teacher.overrides={noise: {...}} for its own level",
    )
    teacher = strategy_cfg["teacher"]
    overrides = teacher.get("overrides") if isinstance(teacher, Mapping) else None  # checked with the stage
    require(
        not isinstance(overrides, Mapping) or "sigma" not in (overrides.get("noise") or {}),
        "strategy.teacher_sigma",
        sigma,
        "and strategy.teacher.overrides.noise.sigma are both set; keep one",
    )
