"""The strategy contract (ssd.strategies.base): one noise draw per batch, declared once; shared config parts."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf

from ssd.config import ConfigError
from ssd.fit import build_module
from ssd.pipeline import load_data
from ssd.strategies.base import NoisyImageModule
from ssd.strategies.clean import Clean
from ssd.strategies.denoiser import TrainDenoiser
from ssd.strategies.vanilla import Vanilla
from ssd.validate import validate
from tests.helpers import TINY, compose_cfg
from tests.test_distill import first_batch, make_module, tiny_cfg


def count_draws(module: NoisyImageModule, x: torch.Tensor, y: torch.Tensor) -> int:
    """How many training-noise draws one ``batch_loss`` (what ``training_step`` runs) makes."""
    draws = []
    real = module.add_noise
    module.add_noise = lambda images: draws.append(1) or real(images)  # type: ignore[method-assign]
    module.batch_loss(x, y)
    return len(draws)


def plain_module(cls: type[NoisyImageModule], *overrides: str) -> tuple[NoisyImageModule, Any]:
    cfg = OmegaConf.to_container(compose_cfg([*TINY, *overrides]), resolve=True)
    datamodule, info = load_data(cfg)
    return build_module(cfg, info, {}), datamodule


def test_the_base_draws_the_noise_once_and_only_for_strategies_that_train_on_it() -> None:
    vanilla, dm = plain_module(Vanilla, "strategy=vanilla")
    x, y = first_batch(dm)
    assert count_draws(vanilla, x, y) == 1 and not torch.equal(vanilla.training_input(x), x)
    clean, _ = plain_module(Clean, "strategy=clean")
    assert not Clean.trains_on_noise and clean.training_input(x) is x and count_draws(clean, x, y) == 0
    for teacher_input, draws in (
        ("clean", 1),
        ("same", 1),
        ("independent", 2),
    ):  # a second view: a second draw
        student, _ = make_module(tiny_cfg("self_distill", f"strategy.teacher_input={teacher_input}"))
        assert count_draws(student, x, y) == draws, teacher_input
    for target, draws in (("clean", 1), ("noise2noise", 2)):
        denoiser, _ = plain_module(TrainDenoiser, "strategy=denoiser", f"strategy.target={target}")
        assert count_draws(denoiser, x, y) == draws, target


def test_self_distill_and_student_teacher_share_one_base_and_differ_in_three_values() -> None:
    sd, st = (
        OmegaConf.to_container(compose_cfg([f"strategy={n}"]).strategy)
        for n in ("self_distill", "student_teacher")
    )
    differ = {k for k in sd.keys() | st.keys() if sd.get(k) != st.get(k)}
    assert differ == {"name", "teacher", "teacher_input"}
    assert {k for k in sd["teacher"] if sd["teacher"][k] != st["teacher"][k]} == {"strategy"}
    assert sd["lambda"] == 0.1 and sd["generations"] == 1  # from conf/_shared/strategy/, once
    online = OmegaConf.to_container(compose_cfg(["strategy=online_distill"]).strategy)
    assert {k: online[k] for k in ("taps", "lambda", "logit_kd", "adapter")} == {
        k: sd[k] for k in ("taps", "lambda", "logit_kd", "adapter")
    }
    for name in ("self_distill", "student_teacher", "online_distill"):
        validate(compose_cfg([*TINY, f"strategy={name}"]))  # the unknown-key check knows the base's keys


@pytest.mark.parametrize("part", ["feature_distill", "distill"])
def test_a_shared_part_is_not_a_strategy(part: str) -> None:
    """Shared parts live outside the strategy group (conf/_shared/strategy): not selectable as a strategy."""
    with pytest.raises(MissingConfigException, match=rf"strategy/{part}"):
        compose_cfg([*TINY, f"strategy={part}"])
    with pytest.raises(ConfigError, match=rf"strategy.teacher.strategy='{part}' is not allowed: must name"):
        validate(compose_cfg([*TINY, "strategy=self_distill", f"strategy.teacher.strategy={part}"]))
