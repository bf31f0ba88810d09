"""FeatureDistillation (student_teacher, self_distill): config checks, taps, teacher inputs, frozen teacher, CLI."""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from ssd.cache import sha256_file
from ssd.config import ConfigError
from ssd.fit import build_module, fit_stage
from ssd.parts import classifier_factory
from ssd.pipeline import load_data
from ssd.seeding import stage_seed
from ssd.stages import method_label, stage_config
from ssd.strategies.distill import FeatureDistillation
from ssd.validate import validate
from tests.helpers import TINY, compose_cfg, read_results, run_cli

# a smaller tiny run for end-to-end CLI tests: one epoch, few images, one robustness level
E2E = [
    *TINY,
    "trainer.max_epochs=1",
    "data.train=64",
    "data.test=16",
    "data.val_size=0",
    "noise.eval_levels=[0.1]",
]


def tiny_cfg(strategy: str, *overrides: str) -> dict[str, Any]:
    return OmegaConf.to_container(compose_cfg([*TINY, f"strategy={strategy}", *overrides]), resolve=True)


def make_module(cfg: dict[str, Any]) -> tuple[FeatureDistillation, Any]:
    """The strategy module with a randomly initialised teacher built from the teacher stage's config."""
    datamodule, info = load_data(cfg)
    torch.manual_seed(1)
    teacher = classifier_factory(stage_config(cfg, cfg["strategy"]["teacher"])["model"], info)()
    module = build_module(cfg, info, {"teacher": teacher})
    return module, datamodule


def first_batch(datamodule: Any) -> tuple[torch.Tensor, torch.Tensor]:
    x, y, idx = datamodule.on_after_batch_transfer(next(iter(datamodule.train_dataloader())), 0)
    return x, y


# ---------------------------------------------------------------------------------- config


def test_defaults_of_the_two_strategies() -> None:
    st, sd = (
        compose_cfg(["strategy=student_teacher"]).strategy,
        compose_cfg(["strategy=self_distill"]).strategy,
    )
    assert st._target_ == sd._target_ == "ssd.strategies.distill.FeatureDistillation"
    assert (st.teacher.strategy, st.teacher_input) == ("clean", "clean")
    assert (sd.teacher.strategy, sd.teacher_input) == ("vanilla", "same")
    for s in (st, sd):
        assert s.taps == "all" and s["lambda"] == 0.1 and s.feature_loss == "mse" and s.logit_kd.weight == 0.0
        assert s.teacher.ckpt is None and not s.adapter and s.student_init == "random"
    validate(compose_cfg([*TINY, "strategy=self_distill"]))
    validate(
        compose_cfg(
            [
                *TINY,
                "strategy=student_teacher",
                "strategy.taps=[layer3,stem]",
                "strategy.tap_weights={stem: 2}",
            ]
        )
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["strategy.taps=[stem,layer4]"],
            "tap 'layer4' is not known: not a named tap (stem, layer1, layer2, layer3",
        ),
        (
            ["strategy.feature_loss=l1"],
            "strategy.feature_loss='l1' is not allowed: must be one of mse, nmse, cosine",
        ),
        (
            ["strategy.teacher_input=blurry"],
            "strategy.teacher_input='blurry' is not allowed: must be one of clean, same, independent",
        ),
        (
            ["strategy.lambda=-0.5"],
            "strategy.lambda=-0.5 is not allowed: must be a finite number in [0, 1e+06]",
        ),
        (
            ["strategy.teacher.ckpt=/nonexistent/net.pt"],
            "strategy.teacher.ckpt='/nonexistent/net.pt' is not allowed",
        ),
        (
            ["strategy.teacher.strategy=nope"],
            "strategy.teacher.strategy='nope' is not allowed: must name a config in conf/strategy",
        ),
        (["strategy.tap_weights={layer9: 1}"], "strategy.tap_weights={'layer9': 1} is not allowed"),
        (["strategy.logit_kd.temperature=0"], "strategy.logit_kd.temperature=0 is not allowed"),
        (["strategy.taps=[]"], "must name at least one tap unless strategy.logit_kd.weight > 0"),
        (
            ["strategy.teacher.overrides={model: {_target_: ssd.models.resnet18_cifar}}"],
            "strategy.adapter=False is not allowed: tap 'stem' has 16 student channels but 64",
        ),
        (
            [
                "strategy.teacher.overrides={model: {_target_: ssd.models.resnet18_cifar}}",
                "strategy.adapter=true",
                "strategy.student_init=teacher",
            ],
            "strategy.student_init='teacher' is not allowed",
        ),
    ],
)
def test_config_errors_name_the_key(overrides: list[str], message: str) -> None:
    cfg = compose_cfg([*TINY, "strategy=self_distill", *overrides])
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert message in str(err.value)


def test_wider_teacher_needs_and_gets_adapters() -> None:
    validate(
        compose_cfg(
            [
                *TINY,
                "strategy=self_distill",
                "strategy.teacher.overrides={model: {_target_: ssd.models.resnet18_cifar}}",
                "strategy.adapter=true",
            ]
        )
    )
    module, datamodule = make_module(
        tiny_cfg(
            "self_distill",
            "strategy.teacher.overrides={model: {_target_: ssd.models.resnet18_cifar}}",
            "strategy.adapter=true",
        )
    )
    assert {k: (a.in_channels, a.out_channels) for k, a in module.adapters.items()} == {
        "stem": (16, 64),
        "layer1": (16, 64),
        "layer2": (32, 128),
        "layer3": (64, 256),
    }
    loss, _, _ = module.batch_loss(*first_batch(datamodule))
    loss.backward()
    assert all(a.weight.grad is not None for a in module.adapters.values())
    assert all(p.grad is None for p in module.teacher.parameters())


# ---------------------------------------------------------------------------------- taps and loss


def test_taps_through_the_strategy() -> None:
    module, datamodule = make_module(tiny_cfg("self_distill"))
    assert module.tap_names == ["stem", "layer1", "layer2", "layer3"] and len(module.adapters) == 0
    loss, logits, logs = module.batch_loss(*first_batch(datamodule))
    assert set(logs) == {"ce", "feat", "feat/stem", "feat/layer1", "feat/layer2", "feat/layer3"}
    total = logs["ce"] + 0.1 * sum(logs[f"feat/{t}"] for t in module.tap_names)
    assert loss.item() == pytest.approx(total.item(), rel=1e-5)
    assert logits.shape == (32, 4)

    chosen, dm2 = make_module(
        tiny_cfg("self_distill", "strategy.taps=[layer3,stem]", "strategy.feature_loss=cosine")
    )
    assert chosen.tap_names == ["stem", "layer3"]
    _, _, logs = chosen.batch_loss(*first_batch(dm2))
    assert {k for k in logs if k.startswith("feat/")} == {"feat/stem", "feat/layer3"}
    with pytest.raises(ValueError, match="tap 'layer4' is not known"):
        make_module(tiny_cfg("self_distill", "strategy.taps=[layer4]"))


def test_no_hooks_outside_training_and_evaluation_is_untouched() -> None:
    module, datamodule = make_module(tiny_cfg("self_distill"))
    x, y = first_batch(datamodule)
    module.batch_loss(x, y)
    module.teardown("fit")
    assert all(
        not m._forward_hooks for m in module.net.modules()
    )  # hooks removed: the module pickles (ddp_spawn)
    assert all(not m._forward_hooks for m in module.teacher.modules())
    module.batch_loss(x, y)  # and come back when training resumes


# ---------------------------------------------------------------------------------- teacher inputs


def captured_inputs(module: FeatureDistillation, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    seen: dict[str, torch.Tensor] = {}
    handles = [
        net.register_forward_pre_hook(
            lambda _m, args, name=name: seen.__setitem__(name, args[0].detach().clone())
        )
        for name, net in (("teacher", module.teacher), ("student", module.net))
    ]
    try:
        module.batch_loss(x, y)
    finally:
        for h in handles:
            h.remove()
    return seen


@pytest.mark.parametrize("teacher_input", ["clean", "same", "independent"])
def test_teacher_inputs(teacher_input: str) -> None:
    module, datamodule = make_module(
        tiny_cfg("self_distill", f"strategy.teacher_input={teacher_input}", "noise.sigma=0.05")
    )
    x, y = first_batch(datamodule)
    seen = captured_inputs(module, x, y)
    student_noise = seen["student"] - x
    assert student_noise.std().item() == pytest.approx(0.05, rel=0.1)  # the student always sees x + noise
    if teacher_input == "clean":
        assert torch.equal(seen["teacher"], x)
    elif teacher_input == "same":
        assert torch.equal(seen["teacher"], seen["student"])
    else:
        teacher_noise = seen["teacher"] - x  # the same clean image under a second, independent draw
        assert teacher_noise.std().item() == pytest.approx(0.05, rel=0.1)
        assert not torch.allclose(seen["teacher"], seen["student"])
        corr = torch.corrcoef(torch.stack([teacher_noise.flatten(), student_noise.flatten()]))[0, 1]
        assert abs(corr.item()) < 0.05


def test_teacher_runs_without_grad_in_the_training_precision() -> None:
    module, datamodule = make_module(tiny_cfg("self_distill"))
    x, y = first_batch(datamodule)
    out: dict[str, torch.Tensor] = {}
    handle = module.teacher.register_forward_hook(lambda _m, _a, o: out.__setitem__("logits", o))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _, _ = module.batch_loss(x, y)
    handle.remove()
    assert out["logits"].dtype == torch.bfloat16 and not out["logits"].requires_grad
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in module.teacher.parameters())


def test_student_init_teacher_starts_from_the_trained_teacher() -> None:
    module, _ = make_module(tiny_cfg("self_distill", "strategy.student_init=teacher"))
    for (name, a), b in zip(
        module.net.state_dict().items(), module.teacher.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    assert next(module.net.parameters()).data_ptr() != next(module.teacher.parameters()).data_ptr()  # a copy


@pytest.mark.parametrize(
    "strategy, extra",
    [("student_teacher", ()), ("self_distill", ()), ("self_distill", ("strategy.teacher_sigma=0.3",))],
)
def test_student_init_teacher_init_starts_from_the_teacher_stages_initial_weights(
    strategy: str, extra: tuple[str, ...]
) -> None:
    """The weights the teacher stage started from (ssd.fit seeds a stage, then builds it); the student's own
    streams (data order, noise) stay its own. student_init=random starts elsewhere."""
    cfg = tiny_cfg(strategy, "strategy.student_init=teacher_init", *extra)
    teacher_cfg = teacher_stage(cfg)
    _, facts = load_data(cfg)
    seeds = {"teacher": stage_seed(teacher_cfg)}
    L.seed_everything(seeds["teacher"], verbose=False)  # what ssd.fit.fit_stage does before building a stage
    teacher_at_start = build_module(teacher_cfg, facts, {}).net.state_dict()
    module = build_module(cfg, facts, {"teacher": build_module(teacher_cfg, facts, {}).net}, seeds)
    assert stage_seed(cfg) != seeds["teacher"]
    for (name, a), b in zip(module.net.state_dict().items(), teacher_at_start.values(), strict=True):
        assert torch.equal(a, b), name
    L.seed_everything(stage_seed(cfg), verbose=False)
    random_init = build_module(tiny_cfg(strategy, *extra), facts, {"teacher": module.teacher}, seeds)
    assert not torch.equal(random_init.net.backbone.fc.weight, module.net.backbone.fc.weight)


def test_student_init_teacher_init_needs_a_teacher_stage(tmp_path: Path) -> None:
    ckpt = tmp_path / "net.pt"
    cfg = tiny_cfg("self_distill")
    _, facts = load_data(cfg)
    torch.save(build_module(teacher_stage(cfg), facts, {}).net.state_dict(), ckpt)
    bad = compose_cfg(
        [
            *TINY,
            "strategy=self_distill",
            "strategy.student_init=teacher_init",
            f"strategy.teacher.ckpt={ckpt}",
        ]
    )
    with pytest.raises(
        ConfigError, match="strategy.student_init='teacher_init' is not allowed: the teacher's initial"
    ):
        validate(bad)


# ---------------------------------------------------------------------------------- frozen teacher


def test_teacher_frozen_and_unchanged_by_a_fit(tmp_path: Path) -> None:
    cfg = tiny_cfg("self_distill", *E2E[len(TINY) :])
    module, datamodule = make_module(cfg)
    _, info = load_data(cfg)
    teacher = module.teacher
    before = copy.deepcopy(teacher.state_dict())
    student_before = copy.deepcopy(module.net.state_dict())
    modes: list[bool] = []
    teacher.register_forward_pre_hook(lambda m, _a: modes.append(m.training))
    trained, _ = fit_stage(cfg, "main", tmp_path / "main", datamodule, info, {"teacher": teacher}, "test")
    assert trained.teacher is teacher
    assert modes and not any(modes)  # eval mode (BatchNorm statistics frozen) in every step
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key]), key  # weights and BatchNorm buffers unchanged
    assert not any(p.requires_grad for p in teacher.parameters())
    optimizer_params = {id(p) for g in trained.trainer.optimizers[0].param_groups for p in g["params"]}
    assert not optimizer_params & {id(p) for p in teacher.parameters()}
    assert any(not torch.equal(v, student_before[k]) for k, v in trained.net.state_dict().items())
    ckpt = torch.load(tmp_path / "main" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert not any(
        k.startswith("frozen.") for k in ckpt["state_dict"]
    )  # the teacher is referenced, not copied


# ---------------------------------------------------------------------------------- end to end


def stage_log(result: subprocess.CompletedProcess, role: str = "teacher") -> tuple[str, str]:
    """(key prefix, source) from the pipeline's '[i/n] teacher vanilla (source key)' stage announcement."""
    match = re.search(rf"\] {role} (\w+)(?: ← [^(]*)? \((\w+) (\w+)…\)", result.stdout + result.stderr)
    assert match, result.stdout[-3000:] + result.stderr[-3000:]
    return match.group(3), match.group(2)


def check_results(run_dir: Path, strategy: str, teacher_strategy: str, source: str) -> dict[str, Any]:
    results = read_results(run_dir)
    assert results["status"] == "complete" and results["strategy"] == strategy
    teacher, main = results["stages"]["teacher"], results["stages"]["main"]
    assert teacher["strategy"] == teacher_strategy and teacher["source"] == source
    assert teacher["sha256"] == sha256_file(teacher["net"])
    assert 0.0 <= teacher["test_acc"] <= 1.0 and 0.0 <= teacher["clean_acc"] <= 1.0
    assert 0.0 <= main["test_acc"] <= 1.0 and results["test_acc"] == main["test_acc"]
    return results


def test_self_distill_end_to_end_and_teacher_reuse(tmp_path: Path) -> None:
    first = run_cli([*E2E, "strategy=self_distill", f"hydra.run.dir={tmp_path}/sd1"], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    key, source = stage_log(first)
    assert source == "train"
    r1 = check_results(tmp_path / "sd1", "self_distill", "vanilla", "train")
    # a sweep point over lambda / teacher_input: same teacher key, served by the cache
    second = run_cli(
        [
            *E2E,
            "strategy=self_distill",
            "strategy.lambda=0.3",
            "strategy.teacher_input=independent",
            f"hydra.run.dir={tmp_path}/sd2",
        ],
        tmp_path,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert stage_log(second) == (key, "cache")
    r2 = check_results(tmp_path / "sd2", "self_distill", "vanilla", "cache")
    assert r2["stages"]["teacher"]["sha256"] == r1["stages"]["teacher"]["sha256"]
    assert r2["stages"]["teacher"]["test_acc"] == r1["stages"]["teacher"]["test_acc"]
    assert not (tmp_path / "sd2" / "teacher" / "checkpoints").exists()  # nothing retrained


@pytest.mark.slow
def test_student_teacher_end_to_end_after_vanilla(tmp_path: Path) -> None:
    vanilla = run_cli([*E2E, "strategy=vanilla", f"hydra.run.dir={tmp_path}/v"], tmp_path)
    assert vanilla.returncode == 0, vanilla.stderr[-3000:]
    sd = run_cli([*E2E, "strategy=self_distill", f"hydra.run.dir={tmp_path}/sd"], tmp_path)
    assert sd.returncode == 0, sd.stderr[-3000:]
    assert stage_log(sd)[1] == "cache"  # the vanilla run published its network as a teacher
    st = run_cli([*E2E, "strategy=student_teacher", f"hydra.run.dir={tmp_path}/st"], tmp_path)
    assert st.returncode == 0, st.stderr[-3000:]
    assert stage_log(st)[1] == "train"
    check_results(tmp_path / "st", "student_teacher", "clean", "train")
    # a given checkpoint is used as is and recorded with its hash
    ckpt = read_results(tmp_path / "st")["stages"]["teacher"]["net"]
    given = run_cli(
        [*E2E, "strategy=student_teacher", f"strategy.teacher.ckpt={ckpt}", f"hydra.run.dir={tmp_path}/st2"],
        tmp_path,
    )
    assert given.returncode == 0, given.stderr[-3000:]
    assert stage_log(given)[1] == "ckpt"
    assert read_results(tmp_path / "st2")["stages"]["teacher"]["sha256"] == sha256_file(ckpt)


@pytest.mark.slow
@pytest.mark.ddp
def test_self_distill_ddp_spawn_on_cpu(tmp_path: Path) -> None:
    result = run_cli(
        [
            *E2E,
            "strategy=self_distill",
            "trainer.strategy=ddp_spawn",
            "trainer.devices=2",
            f"hydra.run.dir={tmp_path}/ddp",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MEMBER: 2/2" in result.stdout + result.stderr  # both stages really ran in two processes
    check_results(tmp_path / "ddp", "self_distill", "vanilla", "train")


# ---------------------------------------------------------------------------------- a cheaper student step


def n_batchnorms(net: torch.nn.Module) -> int:
    return sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())


def test_teacher_batchnorm_is_folded_for_a_fit_and_the_loss_is_unchanged() -> None:
    losses = {}
    for fold in (True, False):
        for fused in (True, False):
            cfg = tiny_cfg(
                "self_distill", f"strategy.fold_teacher_bn={fold}", f"strategy.fused_feature_loss={fused}"
            )
            module, datamodule = make_module(cfg)  # the same random teacher every time (seeded)
            count = n_batchnorms(module.teacher)
            x, y = first_batch(datamodule)
            torch.manual_seed(0)
            loss, _, logs = module.batch_loss(x, y)
            losses[fold, fused] = (loss.item(), logs["feat"].item())
            assert n_batchnorms(module.teacher) == (0 if fold else count)  # folded while training
            module.teardown("fit")
            assert n_batchnorms(module.teacher) == count  # and put back afterwards
    reference = losses[False, False]
    for value in losses.values():
        assert value == pytest.approx(reference, rel=1e-5)  # float32: the same loss on every path


# ---------------------------------------------------------------------------------- generations, teacher ablations


def teacher_stage(cfg: dict[str, Any]) -> dict[str, Any]:
    return stage_config(cfg, FeatureDistillation.role_config(cfg["strategy"], "teacher"))


def test_generation_k_is_taught_by_generation_k_minus_1_down_to_the_configured_teacher() -> None:
    cfg = tiny_cfg("self_distill", "strategy.generations=3", "strategy.lambda=0.3", "strategy.taps=[layer3]")
    validate(compose_cfg([*TINY, "strategy=self_distill", "strategy.generations=3"]))
    chain = [cfg]
    while chain[-1]["strategy"]["name"] == "self_distill":
        chain.append(teacher_stage(chain[-1]))
    assert [c["strategy"]["name"] for c in chain] == ["self_distill"] * 3 + ["vanilla"]
    assert [c["strategy"].get("generations") for c in chain] == [3, 2, 1, None]
    for student in chain[1:3]:  # every generation distils with the run's settings
        assert student["strategy"]["lambda"] == 0.3 and student["strategy"]["taps"] == ["layer3"]
    # only the generation count differs, so each generation is its own stage (key, seed) and nothing else
    assert {k: v for k, v in chain[1]["strategy"].items() if k != "generations"} == {
        k: v for k, v in cfg["strategy"].items() if k != "generations"
    }
    assert FeatureDistillation.method_label(cfg["strategy"]) == "self_distill:same:gen3"
    assert FeatureDistillation.method_label(chain[2]["strategy"]) == "self_distill:same"


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "two"])
def test_generations_must_be_a_positive_integer(value: Any) -> None:
    with pytest.raises(
        ConfigError, match=rf"strategy.generations={value!r} is not allowed: must be an integer >= 1"
    ):
        validate(compose_cfg([*TINY, "strategy=self_distill", f"strategy.generations={value}"]))


def test_teacher_ablations_are_plain_config() -> None:
    # a teacher at its own noise level: the shorthand and the explicit override give one stage config
    short = tiny_cfg("self_distill", "noise.sigma=0.2", "strategy.teacher_sigma=0.5")
    explicit = tiny_cfg("self_distill", "noise.sigma=0.2", "strategy.teacher.overrides={noise: {sigma: 0.5}}")
    assert teacher_stage(short)["noise"]["sigma"] == teacher_stage(explicit)["noise"]["sigma"] == 0.5
    trained_on = ("data", "noise", "model", "optim", "trainer", "seed")  # all a stage is, but its strategy
    assert {k: teacher_stage(short)[k] for k in trained_on} == {
        k: teacher_stage(explicit)[k] for k in trained_on
    }
    assert short["noise"]["sigma"] == 0.2  # the student keeps the run's noise
    # a weaker teacher (fewer epochs) and teachers of other architectures
    weak = tiny_cfg("self_distill", "strategy.teacher.overrides={trainer: {max_epochs: 1}}")
    assert teacher_stage(weak)["trainer"]["max_epochs"] == 1 and weak["trainer"]["max_epochs"] == 2
    deeper = tiny_cfg("self_distill", "strategy.teacher.overrides={model: {_target_: ssd.models.resnet56}}")
    assert (
        teacher_stage(deeper)["model"]["_target_"] == "ssd.models.resnet56"
    )  # same widths: no adapters needed
    for overrides in (
        ["noise.sigma=0.2", "strategy.teacher_sigma=0.5"],
        ["strategy.teacher.overrides={trainer: {max_epochs: 1}}"],
        ["strategy.teacher.overrides={model: {_target_: ssd.models.resnet56}}"],
        [
            "strategy.teacher.overrides={model: {_target_: ssd.models.resnet18_cifar}}",
            "strategy.adapter=true",
        ],
        ["strategy.teacher_sigma=0.3", "strategy.generations=2"],
    ):
        validate(compose_cfg([*TINY, "strategy=self_distill", *overrides]))
    assert method_label(short) == "self_distill:same:teacher_sigma=0.5"
    assert method_label(weak) == "self_distill:same:teacher[trainer.max_epochs=1]"
    assert method_label(tiny_cfg("student_teacher")) == "student_teacher"
    label = method_label(tiny_cfg("student_teacher", "strategy.teacher_input=same"))
    assert label == "student_teacher:same"
    assert (
        method_label(tiny_cfg("self_distill", "strategy.teacher.strategy=clean"))
        == "self_distill:same:teacher=clean"
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["strategy.teacher_sigma=-0.1"],
            "strategy.teacher_sigma=-0.1 is not allowed: must be null or a finite number in [0, 10]",
        ),
        (
            ["noise=poisson", "strategy.teacher_sigma=0.5"],
            "noise (ssd.noise.PoissonNoise) has no key 'sigma'",
        ),
        (
            ["strategy.teacher_sigma=0.5", "strategy.teacher.overrides={noise: {sigma: 0.3}}"],
            "strategy.teacher.overrides.noise.sigma is set too; keep one",
        ),
        (
            ["strategy.fold_teacher_bn=maybe"],
            "strategy.fold_teacher_bn='maybe' is not allowed: must be true or false",
        ),
    ],
)
def test_teacher_ablation_errors_name_the_key(overrides: list[str], message: str) -> None:
    tiny = [o for o in TINY if not o.startswith("noise.")]  # noise=poisson has no sigma to set
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg([*tiny, "strategy=self_distill", *overrides]))
    assert message in str(err.value)


@pytest.mark.slow  # ~40 s; generations' config and cache keys have fast tests
def test_generation_2_is_taught_by_generation_1_from_the_cache(tmp_path: Path) -> None:
    """Born-again chain end to end: a plain self_distill run IS generation 1, and generation 2 reuses it."""
    first = run_cli([*E2E, "strategy=self_distill", f"hydra.run.dir={tmp_path}/gen1"], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    gen1 = read_results(tmp_path / "gen1")
    second = run_cli(
        [*E2E, "strategy=self_distill", "strategy.generations=2", f"hydra.run.dir={tmp_path}/gen2"], tmp_path
    )
    assert second.returncode == 0, second.stderr[-3000:]
    gen2 = read_results(tmp_path / "gen2")
    assert gen2["method"] == "self_distill:same:gen2" and gen1["method"] == "self_distill:same"
    teacher = gen2["stages"]["teacher"]
    assert teacher["strategy"] == "self_distill" and teacher["source"] == "cache"
    assert teacher["sha256"] == sha256_file(tmp_path / "gen1" / "main" / "net.pt")  # generation 1's student
    assert teacher["key"] == gen1["stages"]["main"]["key"]
    assert teacher["requires"]["teacher"]["strategy"] == "vanilla"  # and its own teacher, the vanilla network
    assert teacher["requires"]["teacher"]["key"] == gen1["stages"]["teacher"]["key"]
    assert gen2["stages"]["main"]["stage_seed"] != gen1["stages"]["main"]["stage_seed"]  # its own streams
    assert not (tmp_path / "gen2" / "teacher" / "checkpoints").exists()  # nothing retrained
