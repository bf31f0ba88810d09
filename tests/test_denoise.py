"""The denoiser stage and the two-stage ``denoise`` strategy: targets, image metrics, config, runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from ssd.config import ConfigError
from ssd.fit import build_module, fit_stage
from ssd.parts import classifier_factory, denoiser_factory
from ssd.pipeline import load_data
from ssd.run import resolve_auto
from ssd.stages import stage_key
from ssd.strategies.denoise_classify import Denoise, DenoiseFrozen, DenoiseThenClassify
from ssd.strategies.denoiser import DenoisingEvaluation
from ssd.validate import validate
from ssd.viz import denoising_grid
from tests.helpers import TINY, compose_cfg, read_results, run_cli

# a denoiser small enough for tests
SMALL_DENOISER = ["denoiser.depth=3", "denoiser.width=8"]


def tiny_cfg(*overrides: str) -> dict[str, Any]:
    """A validated, resolved tiny config (synthetic data, sigma 0.1) as plain containers."""
    cfg = compose_cfg([*TINY, *SMALL_DENOISER, *overrides])
    validate(cfg)
    resolve_auto(cfg)
    return OmegaConf.to_container(cfg, resolve=True)


def tiny_data(cfg: dict[str, Any]) -> tuple[L.LightningDataModule, dict[str, Any]]:
    return load_data(cfg)


# --------------------------------------------------------------------------- denoiser stage


def test_noise2noise_target_is_an_independent_draw_of_the_same_image() -> None:
    cfg = tiny_cfg("strategy=denoiser", "strategy.target=noise2noise", "noise.sigma=0.2")
    _, info = tiny_data(cfg)
    module = build_module(cfg, info, {})
    x = torch.rand(64, 3, 16, 16)
    noisy, target = module.training_input(x), module.regression_target(x)  # the training step's two draws
    n1, n2 = (noisy - x).flatten(), (target - x).flatten()
    assert not torch.equal(noisy, target)
    for n in (n1, n2):  # both are x plus noise of the configured level, nothing else
        assert abs(n.std().item() - 0.2) < 0.01 and abs(n.mean().item()) < 0.01
    corr = torch.corrcoef(torch.stack([n1, n2]))[0, 1].item()
    assert abs(corr) < 0.03, f"the two draws are correlated ({corr:.3f})"


def test_clean_target_is_the_clean_image() -> None:
    cfg = tiny_cfg("strategy=denoiser")
    _, info = tiny_data(cfg)
    module = build_module(cfg, info, {})
    x = torch.rand(4, 3, 16, 16)
    noisy, target = module.training_input(x), module.regression_target(x)
    assert target is x and not torch.equal(noisy, x)


def test_identity_denoiser_psnr_equals_noisy_input_psnr(tmp_path: Path) -> None:
    """At init DnCNN is the identity, so its test PSNR must be exactly the noisy input's."""
    cfg = tiny_cfg("strategy=denoiser", "noise.sigma=0.1")
    datamodule, info = tiny_data(cfg)
    module = build_module(cfg, info, {})
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    (metrics,) = trainer.test(module, datamodule=datamodule, verbose=False)
    assert metrics["test/psnr"] == pytest.approx(metrics["test/psnr_noisy"], abs=1e-6)
    # -10 log10(sigma^2) for sigma 0.1 without clipping
    assert metrics["test/psnr_noisy"] == pytest.approx(20.0, abs=0.3)
    assert 0.0 < metrics["test/ssim"] < 1.0
    assert (tmp_path / "denoising_grid.png").exists()


def test_psnr_is_the_mean_of_per_image_psnr() -> None:
    evaluation = DenoisingEvaluation()
    clean = torch.rand(2, 3, 16, 16)
    denoised = clean.clone()
    denoised[0] += 0.1  # mse 0.01 -> 20 dB
    denoised[1] += 0.01  # mse 1e-4 -> 40 dB
    evaluation.update(clean, clean + 0.1, denoised)
    values = evaluation.compute_and_reset("test")
    assert values["test/psnr"].item() == pytest.approx(30.0, abs=1e-3)  # not the 23 dB of the pooled mse
    assert values["test/psnr_noisy"].item() == pytest.approx(20.0, abs=1e-3)
    assert evaluation.samples is not None and evaluation.samples[0].shape == (2, 3, 16, 16)


def test_denoising_grid_layout() -> None:
    x = torch.rand(10, 3, 8, 8)
    grid = denoising_grid(x, x + 1.0, x - 1.0, max_images=4)
    assert grid.shape == (3, 3 * 10 + 2, 4 * 10 + 2)  # 3 rows x 4 columns of 8px images with 2px padding
    assert grid.min() >= 0.0 and grid.max() <= 1.0
    with pytest.raises(ValueError, match="shapes differ"):
        denoising_grid(x, x[:2], x)


def test_denoiser_stage_key_follows_the_denoiser_config_only_where_used() -> None:
    small = tiny_cfg("strategy=denoiser")
    deeper = tiny_cfg("strategy=denoiser", "denoiser.depth=4")
    assert stage_key(small, {}, {}) != stage_key(deeper, {}, {})
    vanilla_small, vanilla_deeper = tiny_cfg(), tiny_cfg("denoiser.depth=4")
    assert stage_key(vanilla_small, {}, {}) == stage_key(vanilla_deeper, {}, {})


# --------------------------------------------------------------------------- denoise strategy


def test_denoise_roles_and_what_it_trains() -> None:
    frozen = tiny_cfg("strategy=denoise_frozen")
    assert DenoiseFrozen.requires == ("denoiser", "classifier") and not DenoiseFrozen.trains
    train = tiny_cfg("strategy=denoise")  # the SPEC's baseline: g trained on D(x~)
    assert Denoise.requires == ("denoiser",) and Denoise.trains
    assert (
        Denoise.method_label(train["strategy"]) == "denoise:clean"
        and DenoiseFrozen.method_label(frozen["strategy"]) == "denoise_frozen:clean"
    )
    n2n = tiny_cfg("strategy=denoise", "strategy.target=noise2noise")
    assert n2n["strategy"]["denoiser"]["overrides"]["strategy"]["target"] == "noise2noise"


def test_denoise_train_mode_trains_the_classifier_only() -> None:
    cfg = tiny_cfg("strategy=denoise")
    _, info = tiny_data(cfg)
    denoiser = denoiser_factory(cfg["denoiser"])()
    torch.nn.init.normal_(denoiser.net[-1].weight, std=0.01)  # not the identity
    before = {k: v.clone() for k, v in denoiser.state_dict().items()}
    module = build_module(cfg, info, {"denoiser": denoiser})
    assert isinstance(module.net, DenoiseThenClassify) and module.net.denoiser is denoiser
    module.train()
    assert not denoiser.training and module.net.classifier.training
    x, y = torch.rand(8, 3, 16, 16), torch.randint(0, 4, (8,))
    loss, logits, _ = module.batch_loss(x, y)
    loss.backward()
    assert logits.shape == (8, 4)
    assert all(p.grad is None for p in denoiser.parameters())
    assert all(p.grad is not None for p in module.net.classifier.parameters())
    assert {id(p) for p in module.param_groups()} == {id(p) for p in module.net.classifier.parameters()}
    assert all(torch.equal(before[k], v) for k, v in denoiser.state_dict().items())


def test_denoise_frozen_mode_classifies_the_denoised_image() -> None:
    cfg = tiny_cfg("strategy=denoise_frozen")
    _, info = tiny_data(cfg)
    denoiser, classifier = denoiser_factory(cfg["denoiser"])(), classifier_factory(cfg["model"], info)()
    module = build_module(cfg, info, {"denoiser": denoiser, "classifier": classifier}).eval()
    x = torch.rand(4, 3, 16, 16)
    assert torch.equal(module.predict_logits(x), classifier(denoiser(x)))
    assert module.param_groups() == []
    with pytest.raises(ValueError, match=r"frozen\['classifier'\]"):
        build_module(cfg, info, {"denoiser": denoiser})


def test_frozen_classifier_main_stage_is_evaluation_only(tmp_path: Path) -> None:
    """fit_stage skips fit when the strategy trains nothing, and still tests accuracy and PSNR."""
    cfg = tiny_cfg("strategy=denoise_frozen", "data.test=32")
    datamodule, info = tiny_data(cfg)
    frozen = {
        "denoiser": denoiser_factory(cfg["denoiser"])(),
        "classifier": classifier_factory(cfg["model"], info)(),
    }
    module, result = fit_stage(cfg, "main", tmp_path / "main", datamodule, info, frozen, "test")
    assert result["epochs"] == 0 and result["train_images_per_s"] == 0.0
    assert not (tmp_path / "main" / "checkpoints" / "last.ckpt").exists()
    assert 0.0 <= result["test_acc"] <= 1.0 and set(result["robustness"]) >= {"sigma=0", "sigma=0.1"}
    metrics = result["metrics"]
    assert metrics["test/psnr"] == pytest.approx(metrics["test/psnr_noisy"])  # identity D at init
    assert (tmp_path / "main" / "denoising_grid.png").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["strategy=denoise", "strategy.target=n2n"], "strategy.target='n2n'"),
        (["strategy=denoise", "+strategy.classifier_mode=both"], "strategy.classifier_mode='both'"),
        (["strategy=denoise", "denoiser._target_=bm3d.BM3D"], "denoiser._target_='bm3d.BM3D'"),
        (["strategy=denoiser", "strategy.target=noisy"], "strategy.target='noisy'"),
        (
            ["strategy=denoiser", "strategy.optim.scheduler._target_=ssd.schedules.linear"],
            "strategy.optim.scheduler._target_='ssd.schedules.linear'",
        ),
        (
            ["strategy=denoise", "strategy.denoiser.overrides.strategy.target=x"],
            "stage denoiser (strategy.denoiser): strategy.target='x'",
        ),
        (
            ["strategy=denoise_frozen", "strategy.classifier.strategy=nope"],
            "strategy.classifier.strategy='nope'",
        ),
    ],
)
def test_bad_denoise_configs_name_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg([*TINY, *overrides]))
    assert message in str(err.value)


def test_cpu_quick_uses_the_small_dncnn_unless_told_otherwise() -> None:
    cfg = compose_cfg(["experiment=cpu_quick", "strategy=denoise"])
    validate(cfg)
    assert (cfg.denoiser._target_, cfg.denoiser.depth, cfg.denoiser.width) == ("ssd.models.DnCNN", 8, 32)
    assert compose_cfg(["experiment=cpu_quick", "denoiser=unet"]).denoiser._target_ == "ssd.models.UNet"


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_denoise_end_to_end_noise2noise_with_a_trained_classifier(tmp_path: Path) -> None:
    """The clean-image-free variant: N2N denoiser, then a classifier trained on its outputs.

    (The clean-target, frozen-classifier pipeline runs in tests/test_joint.py's sweep.)
    """
    run_dir = tmp_path / "outputs" / "n2n"
    args = [
        *TINY,
        *SMALL_DENOISER,
        "noise.sigma=0.2",
        "strategy=denoise",
        "strategy.target=noise2noise",
        "+strategy.denoiser.overrides.strategy.optim.optimizer.lr=0.01",
    ]
    proc = run_cli([*args, f"hydra.run.dir={run_dir}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = read_results(run_dir)
    assert res["status"] == "complete" and 0.0 <= res["test_acc"] <= 1.0 and 0.0 <= res["clean_acc"] <= 1.0
    assert set(res["stages"]) == {"denoiser", "main"}  # no clean classifier: no clean image anywhere
    assert res["psnr_noisy"] == pytest.approx(14.0, abs=0.3)  # sigma 0.2: -10 log10(0.04)
    assert res["psnr"] > res["psnr_noisy"] + 0.2 and 0.0 < res["ssim"] <= 1.0
    # the main stage measures the same frozen D under the same fixed noise as its stage
    assert res["psnr"] == pytest.approx(res["stages"]["denoiser"]["metrics"]["test/psnr"], abs=1e-4)
    assert res["stages"]["main"]["epochs"] == 2 and (run_dir / "main" / "checkpoints" / "last.ckpt").exists()
    assert (run_dir / "main" / "denoising_grid.png").exists() and (
        run_dir / "denoiser" / "denoising_grid.png"
    ).exists()
    metas = [
        json.loads(f.read_text()) for f in (tmp_path / "cache").rglob("meta.json")
    ]  # every stage is published
    (meta,) = [m for m in metas if m["config"]["strategy"]["name"] == "denoiser"]
    assert meta["config"]["strategy"]["target"] == "noise2noise"  # strategy.target reached the stage
