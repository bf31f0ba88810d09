"""``joint`` (Liu et al.): the denoiser learns through a frozen (or jointly trained) classifier."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ssd.config import ConfigError
from ssd.fit import build_module
from ssd.parts import classifier_factory, denoiser_factory
from ssd.strategies.joint import Joint
from ssd.validate import validate
from tests.helpers import TINY, compose_cfg, read_results, run_cli
from tests.test_denoise import SMALL_DENOISER, tiny_cfg, tiny_data


def _snapshot(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _same(net: nn.Module, snapshot: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, snapshot[k]) for k, v in net.state_dict().items())


class _RecordModes(L.Callback):
    """Train/eval mode of the composite's parts at every training step."""

    def __init__(self) -> None:
        self.modes: list[tuple[bool, bool]] = []

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.modes.append((pl_module.net.denoiser.training, pl_module.net.classifier.training))


def _fit_joint(
    tmp_path: Path, *overrides: str
) -> tuple[Joint, dict[str, nn.Module], dict[str, dict[str, torch.Tensor]], L.Trainer, _RecordModes]:
    """A few optimisation steps of ``joint`` on synthetic data, from fresh stage networks."""
    cfg = tiny_cfg("strategy=joint", *overrides)
    datamodule, info = tiny_data(cfg)
    torch.manual_seed(0)
    frozen = {
        "denoiser": denoiser_factory(cfg["denoiser"])(),
        "classifier": classifier_factory(cfg["model"], info)(),
    }
    before = {role: _snapshot(net) for role, net in frozen.items()}
    module = build_module(cfg, info, frozen)
    modes = _RecordModes()
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=3,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[modes],
        default_root_dir=str(tmp_path),
    )
    trainer.fit(module, datamodule=datamodule)
    return module, frozen, before, trainer, modes


def test_frozen_classifier_is_unchanged_and_the_stage_nets_are_not_mutated(tmp_path: Path) -> None:
    module, frozen, before, trainer, modes = _fit_joint(tmp_path)
    assert module.net.classifier is frozen["classifier"] and module.net.denoiser is not frozen["denoiser"]
    # D trains; g stays in eval mode (its BatchNorm statistics must not move)
    assert modes.modes and all(d and not c for d, c in modes.modes)
    assert _same(frozen["classifier"], before["classifier"])  # weights and BN running stats
    assert _same(frozen["denoiser"], before["denoiser"])  # the cached stage net is untouched
    assert not _same(module.net.denoiser, before["denoiser"])  # its copy learnt
    (group,) = trainer.optimizers[0].param_groups
    assert {id(p) for p in group["params"]} == {id(p) for p in module.net.denoiser.parameters()}

    # checkpoints leave the frozen classifier out (recorded by reference) and still load strictly
    path = tmp_path / "joint.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    keys = checkpoint["state_dict"].keys()
    assert any(k.startswith("net.denoiser.") for k in keys)
    assert not any(k.startswith(("net.classifier.", "frozen.")) for k in keys)
    again = build_module(module.hparams["cfg"], module.data, dict(frozen))
    again.on_load_checkpoint(checkpoint)
    again.load_state_dict(checkpoint["state_dict"])
    assert _same(again.net.denoiser, _snapshot(module.net.denoiser))


def test_train_classifier_updates_both_with_their_own_learning_rates(tmp_path: Path) -> None:
    module, frozen, before, trainer, modes = _fit_joint(
        tmp_path, "strategy.train_classifier=true", "strategy.classifier_lr=0.05"
    )
    assert module.net.classifier is not frozen["classifier"]
    assert all(d and c for d, c in modes.modes)
    assert not _same(module.net.classifier, before["classifier"])  # g learnt ...
    assert not _same(module.net.denoiser, before["denoiser"])
    # ... on copies
    assert _same(frozen["classifier"], before["classifier"]) and _same(frozen["denoiser"], before["denoiser"])
    groups = trainer.optimizers[0].param_groups
    assert [g["initial_lr"] for g in groups] == [pytest.approx(1e-4), pytest.approx(0.05)]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in module.net.classifier.parameters()}


def test_loss_is_the_weighted_sum_and_w_rec_zero_trains_through_the_classifier() -> None:
    cfg = tiny_cfg("strategy=joint", "strategy.w_rec=0", "strategy.w_cls=2")
    _, info = tiny_data(cfg)
    frozen = {
        "denoiser": denoiser_factory(cfg["denoiser"])(),
        "classifier": classifier_factory(cfg["model"], info)(),
    }
    module = build_module(cfg, info, frozen).train()
    x, y = torch.rand(8, 3, 16, 16), torch.randint(0, 4, (8,))
    loss, logits, terms = module.batch_loss(x, y)
    assert loss.item() == pytest.approx(2 * F.cross_entropy(logits, y).item())
    assert terms["rec"].item() > 0 and terms["cls"].item() == pytest.approx(F.cross_entropy(logits, y).item())
    loss.backward()
    assert all(p.grad is not None for p in module.net.denoiser.parameters())
    assert all(p.grad is None for p in module.net.classifier.parameters())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["strategy.w_rec=0", "strategy.w_cls=0"], "at least one weight must be > 0"),
        (["strategy.w_rec=-1"], "strategy.w_rec=-1"),
        (["strategy.w_cls=abc"], "strategy.w_cls='abc'"),
        (["strategy.train_classifier=maybe"], "strategy.train_classifier='maybe'"),
        (["strategy.classifier_lr=0"], "strategy.classifier_lr=0"),
        (["denoiser._target_=bm3d.BM3D"], "denoiser._target_='bm3d.BM3D'"),
        (["strategy.denoiser.overrides.strategy.target=noisy"], "stage denoiser"),
    ],
)
def test_bad_joint_configs_name_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg([*TINY, "strategy=joint", *overrides]))
    assert message in str(err.value)


def test_joint_end_to_end_tiny(tmp_path: Path) -> None:
    """The whole pipeline at the smallest size: denoiser and clean classifier stages, then joint."""
    run_dir = tmp_path / "outputs" / "joint"
    args = [
        *TINY,
        *SMALL_DENOISER,
        "strategy=joint",
        "trainer.max_epochs=1",
        "data.train=64",
        "data.test=32",
        f"hydra.run.dir={run_dir}",
    ]
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = read_results(run_dir)
    assert res["status"] == "complete" and 0.0 <= res["test_acc"] <= 1.0 and 0.0 <= res["clean_acc"] <= 1.0
    assert res["psnr_noisy"] == pytest.approx(20.0, abs=1.0) and res["psnr"] > 0 and 0.0 < res["ssim"] <= 1.0
    assert set(res["stages"]) == {"denoiser", "classifier", "main"}
    assert {res["stages"][role]["strategy"] for role in ("denoiser", "classifier")} == {"denoiser", "clean"}
    assert (
        "test/psnr" in res["stages"]["denoiser"]["metrics"]
        and "test/acc" in res["stages"]["classifier"]["metrics"]
    )
    assert (run_dir / "main" / "denoising_grid.png").exists() and (
        run_dir / "denoiser" / "denoising_grid.png"
    ).exists()


@pytest.mark.slow
def test_denoise_then_joint_sweep_reuses_the_cached_stages(tmp_path: Path) -> None:
    """One sweep, both denoiser strategies: joint finds the denoiser and clean classifier of denoise in the cache."""
    args = [
        "hydra.mode=MULTIRUN",
        *TINY,
        *SMALL_DENOISER,
        "noise.sigma=0.2",
        "trainer.max_epochs=2",
        "strategy=denoise_frozen,joint",
        "+strategy.denoiser.overrides.strategy.optim.optimizer.lr=0.01",  # a denoiser that learns in 2 tiny epochs
    ]
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = {
        r["strategy"]: (r, Path(r["run_dir"]))
        for r in map(read_results, {p.parent for p in (tmp_path / "outputs").rglob("results.json")})
    }
    assert set(runs) == {"denoise_frozen", "joint"}
    (denoise, denoise_dir), (joint, joint_dir) = runs["denoise_frozen"], runs["joint"]
    for res, run_dir in runs.values():
        assert (
            res["status"] == "complete" and 0.0 <= res["test_acc"] <= 1.0 and 0.0 <= res["clean_acc"] <= 1.0
        )
        assert res["psnr_noisy"] == pytest.approx(14.0, abs=0.3)  # sigma 0.2: -10 log10(0.04)
        assert res["psnr"] > res["psnr_noisy"] + 0.2 and 0.0 < res["ssim"] <= 1.0
        assert (run_dir / "main" / "denoising_grid.png").exists()
    assert (denoise_dir / "denoiser" / "denoising_grid.png").exists()
    # denoise_frozen: nothing trained in its main stage; its PSNR is the denoiser stage's
    assert (
        denoise["stages"]["main"]["epochs"] == 0
        and not (denoise_dir / "main" / "checkpoints" / "last.ckpt").exists()
    )
    assert denoise["psnr"] == pytest.approx(denoise["stages"]["denoiser"]["metrics"]["test/psnr"], abs=1e-4)
    # joint: same stages, from the cache; its own (fine-tuned) denoiser is measured after training
    for role in ("denoiser", "classifier"):
        assert (
            joint["stages"][role]["source"] == "cache"
            and joint["stages"][role]["key"] == denoise["stages"][role]["key"]
        )
    assert (
        joint["stages"]["main"]["epochs"] == 2 and (joint_dir / "main" / "checkpoints" / "last.ckpt").exists()
    )
