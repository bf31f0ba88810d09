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


# --------------------------------------------------------------------------- the EMA's BatchNorm statistics


def _bn_buffers(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items() if "running_" in k}


@pytest.mark.parametrize("mode", ["ema", "student", "recompute"])
def test_ema_bn_modes_on_an_update(mode: str) -> None:
    """ema: averaged like the weights; student: the student's copied; recompute: left to the recomputation."""
    module, _ = make_module(online_cfg(f"strategy.ema_bn={mode}", "strategy.ema_decay=0.5"))
    student, ema = module.net, module.ema.module
    module.update_ema()  # update 0 copies the student, buffers included
    before, weights_before = _bn_buffers(ema), [p.detach().clone() for p in ema.parameters()]
    with torch.no_grad():
        for name, b in student.named_buffers():
            if "running_" in name:
                b.add_(1.0)
        for p in student.parameters():
            p.add_(1.0)
    module.update_ema()  # update 1: d = min(0.5, 1/2) = 0.5
    after, now = _bn_buffers(ema), _bn_buffers(student)
    expected = {
        "ema": {k: 0.5 * before[k] + 0.5 * now[k] for k in before},
        "student": now,
        "recompute": before,
    }[mode]
    assert all(torch.allclose(after[k], expected[k]) for k in after), mode
    for old, averaged, current in zip(weights_before, ema.parameters(), student.parameters(), strict=True):
        assert torch.allclose(averaged, 0.5 * old + 0.5 * current)  # the weights: averaged in every mode


def test_recompute_gives_the_teacher_its_own_statistics_from_the_first_update() -> None:
    """The divergence this fixes: recomputed only at epoch ends, the EMA kept the statistics its first
    update copies from the student (after one step, nearly mean 0 / variance 1) through epoch 0, its
    features blew up and the student's loss went to NaN."""
    from lightning import Trainer

    module, datamodule = make_module(online_cfg("strategy.ema_bn=recompute", "data.batch_size=16"))
    module.trainer = Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False)
    module.train()
    x, _ = first_batch(datamodule)
    view = module.teacher_view(x, module.add_noise(x))  # as the training step calls it
    module.update_ema()  # the first update: the student's weights and buffers copied, then recomputed
    twin = copy.deepcopy(module.ema.module)
    torch.optim.swa_utils.update_bn([view], twin)
    now, student = _bn_buffers(module.ema.module), _bn_buffers(module.net)
    assert all(torch.allclose(now[k], v) for k, v in _bn_buffers(twin).items())
    assert all(not torch.allclose(now[k], student[k]) for k in now)


def test_recompute_runs_every_ema_bn_every_steps_on_the_latest_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ema_bn=recompute: torch.optim.swa_utils.update_bn after the first update, every ``ema_bn_every``-th
    one and each epoch end, on this epoch's latest ``ema_bn_batches`` teacher views; the stored EMA holds
    the last recomputation's statistics."""
    import ssd.strategies.online_distill as online

    calls: list[tuple[list[torch.Tensor], torch.nn.Module]] = []
    real = online.update_bn
    monkeypatch.setattr(
        online, "update_bn", lambda views, net: calls.append((list(views), net)) or real(views, net)
    )
    cfg = online_cfg(
        *SMALL_FIT,
        "data.batch_size=16",
        "trainer.max_epochs=2",
        "strategy.ema_bn=recompute",
        "strategy.ema_bn_batches=2",
        "strategy.ema_bn_every=3",
    )
    module, datamodule = make_module(cfg)
    _, facts = load_data(cfg)
    trained, _ = fit_stage(cfg, "main", tmp_path / "main", datamodule, facts, {}, "test")
    # 4 steps an epoch: updates 0 and 3, epoch 0's end, update 6, epoch 1's end (views cleared at epoch start)
    assert [len(views) for views, _ in calls] == [1, 2, 2, 2, 2]
    assert all(net is trained.ema.module for _, net in calls)
    assert all(v.shape == (16, 3, 16, 16) for v in calls[-1][0])
    twin = copy.deepcopy(trained.ema.module)
    real(calls[-1][0], twin)  # the averaged weights' statistics on the last recomputation's batches
    assert all(
        torch.allclose(a, b)
        for a, b in zip(_bn_buffers(twin).values(), _bn_buffers(trained.ema.module).values(), strict=True)
    )
    assert any(
        not torch.allclose(a, b)
        for a, b in zip(
            _bn_buffers(trained.net).values(), _bn_buffers(trained.ema.module).values(), strict=True
        )
    )


# --------------------------------------------------------------------------- the warm-up, counted in optimizer steps


def test_the_warmup_counts_optimizer_steps_also_under_gradient_accumulation(tmp_path: Path) -> None:
    """4 batches an epoch, accumulation 2: 2 optimizer steps an epoch, so 2 warm-up epochs are 4 steps
    (counting batches, as before, gave 8: a ramp over 4 epochs)."""
    cfg = online_cfg(
        *SMALL_FIT, "data.batch_size=16", "trainer.max_epochs=2", "+trainer.accumulate_grad_batches=2"
    )
    module, datamodule = make_module(cfg)
    _, facts = load_data(cfg)
    trained, _ = fit_stage(cfg, "main", tmp_path / "main", datamodule, facts, {}, "test")
    assert int(trained.trainer.global_step) == 4 and trained.warmup_steps == 4
    assert trained.distill_scale() == 1.0  # the ramp is over after the 2 warm-up epochs


# --------------------------------------------------------------------------- the EMA is stored with the stage


def test_the_trained_ema_is_what_a_stage_evaluated_again_tests(tmp_path: Path) -> None:
    """Re-tested from its folder, served by the cache, or evaluated by eval_only: the same EMA (extra.pt)."""
    from ssd.run import run_config
    from ssd.stages import load_stage_weights

    base = [
        *TINY,
        "strategy=online_distill",
        *SMALL_FIT,
        "data.batch_size=16",
        "trainer.max_epochs=3",
        "strategy.ema_decay=0.5",
        "optim.optimizer.lr=0.02",  # lr 0.1 diverges on these 64 images once the distillation term is full
    ]
    first = run_config(compose_cfg(base, tmp_path), tmp_path / "a", "g")
    main = first["stages"]["main"]
    ema_acc = main["metrics"]["test/acc_ema"]
    assert (tmp_path / "a" / "main" / "extra.pt").is_file()
    entry = (
        Path(main["net"]).parent
        if main["source"] == "cache"
        else next(p for p in (tmp_path / "cache" / "stages").glob("online_distill-*") if p.is_dir())
    )
    assert (entry / "extra.pt").is_file()
    # the EMA weights come back, not the student's initial copy
    cfg = online_cfg(*SMALL_FIT, "data.batch_size=16", "trainer.max_epochs=3", "strategy.ema_decay=0.5")
    fresh, _ = make_module(cfg)
    load_stage_weights(fresh, tmp_path / "a" / "main" / "net.pt")
    saved = torch.load(tmp_path / "a" / "main" / "extra.pt", weights_only=True)
    assert int(fresh.ema.n_averaged) == 12  # 3 epochs x 4 steps
    assert all(torch.equal(v, saved[f"ema.module.{k}"]) for k, v in fresh.ema.module.state_dict().items())
    assert not torch.equal(
        fresh.ema.module.backbone.fc.weight, fresh.net.backbone.fc.weight
    )  # not the student
    # 1. the same folder, its results gone: the stage is re-tested from the folder
    (tmp_path / "a" / "results.json").unlink()
    again = run_config(compose_cfg(base, tmp_path), tmp_path / "a", "g")
    # 2. another folder: the stage from the cache
    cached = run_config(compose_cfg(base, tmp_path), tmp_path / "b", "g")
    # 3. eval_only of the stage's net.pt (its extra.pt beside it)
    evaluated = run_config(
        compose_cfg([*base, "eval_only=true", f"init_from={tmp_path / 'a' / 'main' / 'net.pt'}"], tmp_path),
        tmp_path / "c",
        "g",
    )
    assert (again["stages"]["main"]["source"], cached["stages"]["main"]["source"]) == ("run", "cache")
    for run in (again, cached, evaluated):
        assert run["stages"]["main"]["metrics"]["test/acc_ema"] == ema_acc
        assert run["stages"]["main"]["metrics"]["test/acc"] == main["metrics"]["test/acc"]
