"""Where a distillation student's teacher stage comes from, and how its run is labelled in reports.

The configured ``strategy.teacher`` section names the strategy that trains the teacher stage,
an optional checkpoint and overrides of the run config for that stage. Two keys of the
strategy section derive a different teacher from it:

* ``generations=k > 1`` (born-again chains): the teacher is generation k-1, i.e. this very
  strategy section with ``generations=k-1``; so generation 1's teacher is the configured one,
  and every generation is a stage with its own key, cache entry and seed;
* ``teacher_sigma``: the configured teacher, trained at that noise sigma (a ``noise.sigma``
  stage override; the student keeps the run's noise).

Both read the strategy section alone; the stage they describe is checked as every stage is
(``ssd.validate``). How the teacher differs from the one the strategy's YAML names is added to
the label by ``ssd.stages.method_label``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ssd.config.errors import ConfigError


def _flat(mapping: Mapping[str, Any], prefix: str = "") -> list[str]:
    """``{a: {b: 1}}`` -> ``["a.b=1"]`` (report labels of teacher overrides)."""
    items: list[str] = []
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            items += _flat(value, f"{prefix}{key}.")
        else:
            items.append(f"{prefix}{key}={value}")
    return items


def role_config(section: Mapping[str, Any], role: str) -> dict[str, Any]:
    """The section ``{strategy, ckpt, overrides}`` that builds ``role``'s stage for this strategy section."""
    role_section = dict(section[role])
    if role != "teacher":
        return role_section
    generations = section["generations"]
    if generations > 1:  # the previous generation: this section itself, one generation shorter
        return {"strategy": {**section, "generations": generations - 1}, "ckpt": None, "overrides": None}
    sigma = section["teacher_sigma"]
    if sigma is not None:
        overrides = dict(role_section.get("overrides") or {})
        noise = dict(overrides.get("noise") or {})
        if "sigma" in noise:
            raise ConfigError(
                f"strategy.teacher_sigma={sigma!r} is not allowed: strategy.teacher.overrides.noise.sigma is set "
                "too; keep one"
            )
        role_section["overrides"] = {**overrides, "noise": {**noise, "sigma": sigma}}
    return role_section


def method_label(section: Mapping[str, Any]) -> str:
    """``self_distill:same``, ``student_teacher``, ``self_distill:same:gen2``, ``...:teacher_sigma=0.5``.

    Every way the teacher differs from the strategy's default is in the label (the teacher's
    strategy: ``ssd.stages.method_label``), so a report never mixes a teacher ablation into the
    plain method's row.
    """
    name, teacher_input = str(section["name"]), str(section["teacher_input"])
    label = name if (name, teacher_input) == ("student_teacher", "clean") else f"{name}:{teacher_input}"
    if section["generations"] > 1:
        label += f":gen{section['generations']}"
    if section["teacher_sigma"] is not None:
        label += f":teacher_sigma={section['teacher_sigma']:g}"
    overrides = section["teacher"].get("overrides")
    if overrides:  # a stage section may leave out ckpt and overrides
        label += f":teacher[{','.join(_flat(overrides))}]"
    return label
