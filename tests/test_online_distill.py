"""online_distill: the EMA teacher's update rule, its isolation from the gradient, the warm-up, a tiny fit."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

from ssd.config import ConfigError
from ssd.fit import build_module, fit_stage
from ssd.noise import fixed_noisy
from ssd.pipeline import load_data
from ssd.strategies.online_distill import OnlineDistillation, ema_decay_at, warmup_scale
from ssd.validate import validate
from tests.helpers import TINY, compose_cfg

SMALL_FIT = [
    "trainer.max_epochs=1",
    "data.train=64",
    "data.test=16",
    "data.val_size=0",
    "noise.eval_levels=[0.1]",
]


def online_cfg(*overrides: str) -> dict[str, Any]:
    cfg = compose_cfg([*TINY, "strategy=online_distill", *overrides])
    validate(cfg)
    return OmegaConf.to_container(cfg, resolve=True)


def make_module(cfg: dict[str, Any]) -> tuple[OnlineDistillation, Any]:
    datamodule, facts = load_data(cfg)
    return build_module(cfg, facts, {}), datamodule


def first_batch(datamodule: Any) -> tuple[torch.Tensor, torch.Tensor]:
    x, y, _ = datamodule.on_after_batch_transfer(next(iter(datamodule.train_dataloader())), 0)
    return x, y


def test_decay_schedule_and_warmup_ramp() -> None:
    assert [ema_decay_at(t, 0.9) for t in range(4)] == [0.0, 0.5, 2 / 3, 0.75]  # the running mean first
    assert ema_decay_at(100, 0.9) == 0.9  # then the configured decay
    assert [warmup_scale(s, 4) for s in (0, 1, 4, 9)] == [0.0, 0.25, 1.0, 1.0]
    assert warmup_scale(0, 0) == 1.0


def test_config_defaults_labels_and_errors() -> None:
    cfg = online_cfg()
    assert cfg["strategy"]["teacher_input"] == "same" and OnlineDistillation.requires == ()
    assert OnlineDistillation.method_label(cfg["strategy"]) == "online_distill:same"
    clean = online_cfg("strategy.teacher_input=clean")["strategy"]
    assert OnlineDistillation.method_label(clean) == "online_distill:clean"
    for override, message in [
        ("strategy.ema_decay=1.5", "strategy.ema_decay=1.5 is not allowed"),
        ("strategy.warmup_epochs=-1", "strategy.warmup_epochs=-1 is not allowed"),
        ("strategy.adapter=true", "strategy.adapter=True is not allowed"),
        ("strategy.teacher_input=blurry", "strategy.teacher_input='blurry' is not allowed"),
        ("strategy.taps=[layer9]", "tap 'layer9' is not known"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
            validate(compose_cfg([*TINY, "strategy=online_distill", override]))


def test_ema_moves_toward_the_student_by_the_documented_rule() -> None:
    module, _ = make_module(online_cfg("strategy.ema_decay=0.3"))
    student, ema = module.net, module.ema.module
    assert all(
        torch.equal(a, b)
        for a, b in zip(ema.state_dict().values(), student.state_dict().values(), strict=True)
    )
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
        for name, b in student.named_buffers():
            if name.endswith("running_mean"):
                b.add_(1.0)
            elif name.endswith("num_batches_tracked"):
                b.fill_(7)
    module.update_ema()  # update 0: d = min(0.3, 0) = 0, the teacher becomes the student
    assert all(
        torch.equal(a, b)
        for a, b in zip(ema.state_dict().values(), student.state_dict().values(), strict=True)
    )
    old = copy.deepcopy(ema.state_dict())
    with torch.no_grad():
        for p in student.parameters():
            p.mul_(-2.0)
        for name, b in student.named_buffers():
            if name.endswith("running_var"):
                b.mul_(3.0)
    module.update_ema()  # update 1: d = min(0.3, 1/2) = 0.3
    assert int(module.ema.n_averaged) == 2
    for name, value in ema.state_dict().items():
        target = student.state_dict()[name]
        if value.is_floating_point():
            expected = 0.3 * old[name] + 0.7 * target
            assert torch.allclose(value, expected, rtol=1e-6, atol=1e-6), name
        else:
            assert torch.equal(value, target), name  # num_batches_tracked: copied


def test_no_gradient_into_the_ema_and_eval_mode_batchnorm() -> None:
    module, datamodule = make_module(online_cfg())
    module.train()
    assert not module.ema.training and all(not m.training for m in module.ema.modules())
    x, y = first_batch(datamodule)
    loss, _, logs = module.batch_loss(x, y)
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in module.ema.parameters())
    assert any(p.grad is not None for p in module.net.parameters())
    trainable = {id(p) for p in module.param_groups()}
    assert not trainable & {id(p) for p in module.ema.parameters()}
    assert "distill_scale" not in logs  # outside a fit: no warm-up to count steps of
    assert loss.item() == pytest.approx((logs["ce"] + logs["feat"]).item(), rel=1e-5)


def test_the_distillation_term_ramps_from_zero() -> None:
    module, datamodule = make_module(online_cfg())
    x, y = first_batch(datamodule)
    module.warmup_steps = 8  # what on_train_start sets for 2 warm-up epochs of 4 batches
    loss, _, logs = module.batch_loss(x, y)  # step 0
    assert logs["distill_scale"].item() == 0.0 and logs["feat"].item() > 0
    assert loss.item() == pytest.approx(logs["ce"].item(), rel=1e-6)


def test_a_fit_updates_the_ema_every_step_and_tests_it(tmp_path: Path) -> None:
    cfg = online_cfg(*SMALL_FIT, "data.batch_size=16")
    module, datamodule = make_module(cfg)
    _, info = load_data(cfg)
    trained, result = fit_stage(cfg, "main", tmp_path / "main", datamodule, info, {}, "test")
    steps = int(trained.trainer.global_step)
    assert (
        steps == 4 and int(trained.ema.n_averaged) == steps
    )  # 64 images / 16 per batch, one update per step
    metrics = result["metrics"]
    assert {"test/acc", "test/acc_clean", "test/acc_ema", "test/acc_ema_clean"} <= set(metrics)
    assert trained.warmup_steps == 8  # strategy.warmup_epochs=2 of 4 batches
    correct = total = 0
    with torch.no_grad():  # the EMA on the fixed noisy test images, by hand
        for batch in datamodule.test_dataloader():
            x, y, idx = datamodule.on_after_batch_transfer(batch, 0)
            noisy = fixed_noisy(trained.noise, x, idx, cfg["eval_seed"])
            correct += int((trained.ema(noisy).argmax(1) == y).sum())
            total += len(y)
    assert metrics["test/acc_ema"] == pytest.approx(correct / total)
    ckpt = torch.load(tmp_path / "main" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert any(k.startswith("ema.") for k in ckpt["state_dict"])  # a resumed run keeps its teacher
    assert int(ckpt["state_dict"]["ema.n_averaged"]) == steps
