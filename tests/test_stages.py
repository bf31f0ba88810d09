"""Stages that share no randomness by accident, and cache keys that cannot hand a run the wrong network."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import ssd.fit
from ssd.pipeline import load_data
from ssd.run import run_config
from ssd.seeding import stage_seed
from ssd.stages import data_fingerprint, load_net_weights, net_state_dict, stage_config, stage_key
from tests.helpers import SMALL, classifier, compose_cfg

pytestmark = pytest.mark.usefixtures("one_thread")


def _record_stages(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, Any]]:
    """Patch ssd.fit.build_module to keep each stage's initial weights and first training-noise batch."""
    seen: dict[str, dict[str, Any]] = {}
    real_build = ssd.fit.build_module

    def build(cfg: Any, info: Any, frozen: Any, frozen_seeds: Any = None) -> Any:
        module = real_build(cfg, info, frozen, frozen_seeds)
        entry = seen.setdefault(cfg["strategy"]["name"], {})
        entry.setdefault("init", copy.deepcopy(module.net.state_dict()))
        real_add_noise = module.add_noise

        def add_noise(x: torch.Tensor) -> torch.Tensor:
            out = real_add_noise(x)
            entry.setdefault("first_noise", (out - x).detach().clone())
            entry.setdefault("first_images", x.detach().clone())
            return out

        module.add_noise = add_noise
        return module

    monkeypatch.setattr(ssd.fit, "build_module", build)
    return seen


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())


def test_student_and_teacher_draw_independent_streams(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _record_stages(monkeypatch)
    cfg = compose_cfg([*SMALL, "strategy=self_distill"], tmp_path)
    run_config(cfg, tmp_path / "run", "g")
    teacher, student = seen["vanilla"], seen["self_distill"]
    assert not _same_weights(teacher["init"], student["init"])  # another initialisation
    assert not torch.equal(teacher["first_images"], student["first_images"])  # another order / crops
    assert not torch.equal(teacher["first_noise"], student["first_noise"])  # another noise stream


def test_shared_stage_seeds_is_the_replay_ablation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _record_stages(monkeypatch)
    cfg = compose_cfg([*SMALL, "strategy=self_distill", "stage_seeds=shared"], tmp_path)
    run_config(cfg, tmp_path / "run", "g")
    teacher, student = seen["vanilla"], seen["self_distill"]
    assert _same_weights(teacher["init"], student["init"])
    assert torch.equal(teacher["first_images"], student["first_images"])
    assert torch.equal(teacher["first_noise"], student["first_noise"])


def test_the_same_seed_reproduces_a_run_bit_for_bit(tmp_path: Path) -> None:
    """Two runs of one config (separate caches, so both train) end with identical weights and metrics."""
    results = []
    for name in ("a", "b"):
        cfg = compose_cfg([*SMALL, "strategy=self_distill", f"paths.cache_dir={tmp_path}/cache_{name}"])
        results.append(run_config(cfg, tmp_path / name, "g"))
    a, b = results
    assert a["stages"]["main"]["source"] == b["stages"]["main"]["source"] == "train"
    for key in ("test_acc", "clean_acc", "robustness"):
        assert a[key] == b[key], key
    wa = torch.load(tmp_path / "a" / "main" / "net.pt", weights_only=True)
    wb = torch.load(tmp_path / "b" / "main" / "net.pt", weights_only=True)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_stage_seed_depends_on_what_is_trained_not_the_role() -> None:
    cfg = OmegaConf.to_container(compose_cfg([*SMALL, "strategy=student_teacher"]), resolve=True)
    as_teacher = stage_config(cfg, cfg["strategy"]["teacher"])  # the clean teacher of STL
    as_classifier = stage_config(cfg, {"strategy": "clean"})  # the clean classifier of denoise_frozen/joint
    assert stage_seed(as_teacher) == stage_seed(as_classifier) != stage_seed(cfg)
    other_seed = {**cfg, "seed": 1}
    assert stage_seed(other_seed) != stage_seed(cfg)


# ------------------------------------------------------------------------------------ cache keys


def _cifar_npz(path: Path, seed: int, n_train: int = 40) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        x_train=rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
        y_train=np.arange(n_train) % 10,
        x_test=rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8),
        y_test=np.arange(20) % 10,
    )


CIFAR_TINY = [
    "data=cifar10",
    "data.variant=auto",
    "data.val_size=0",
    "data.batch_size=20",
    "data.eval_batch_size=20",
    "model=resnet20",
    "logger=none",
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "trainer.precision=32-true",
    "trainer.enable_progress_bar=false",
    "noise.eval_levels=[0]",
]


def test_a_subset_teacher_is_never_served_to_a_full_set_run(tmp_path: Path) -> None:
    """variant=auto finds the subset on one machine and the full set on another: never one cache entry."""
    _cifar_npz(tmp_path / "subset_only" / "cifar10_subset.npz", seed=0)
    _cifar_npz(tmp_path / "full_too" / "cifar10.npz", seed=1)
    cache = f"paths.cache_dir={tmp_path}/cache"
    subset = compose_cfg([*CIFAR_TINY, cache, f"data.root={tmp_path}/subset_only", "strategy=vanilla"])
    first = run_config(subset, tmp_path / "subset_run", "g")
    assert first["stages"]["main"]["source"] == "train"
    full = compose_cfg([*CIFAR_TINY, cache, f"data.root={tmp_path}/full_too", "strategy=self_distill"])
    second = run_config(full, tmp_path / "full_run", "g")
    assert second["stages"]["teacher"]["source"] == "train"  # not the subset's vanilla network
    assert second["stages"]["teacher"]["key"] != first["stages"]["main"]["key"]
    assert first["data"]["content"] != second["data"]["content"]
    # and the subset run again, in another folder, finds its own network
    again = run_config(subset, tmp_path / "subset_again", "g")
    assert again["stages"]["main"]["source"] == "cache"


def test_stage_key_covers_the_data_fingerprint(tmp_path: Path) -> None:
    cfg = OmegaConf.to_container(compose_cfg([*SMALL, "strategy=vanilla"], tmp_path), resolve=True)
    fingerprint = data_fingerprint(load_data(cfg)[0])
    assert stage_key(cfg, {}, fingerprint) != stage_key(cfg, {}, {**fingerprint, "content": "other"})
    bigger = OmegaConf.to_container(compose_cfg([*SMALL, "data.train=96"], tmp_path), resolve=True)
    assert data_fingerprint(load_data(bigger)[0]) != fingerprint


def test_stage_data_overrides_are_rejected(tmp_path: Path) -> None:
    from ssd.config import ConfigError
    from ssd.validate import validate

    cfg = compose_cfg(
        [*SMALL, "strategy=self_distill", "+strategy.teacher.overrides={data: {batch_size: 8}}"]
    )
    with pytest.raises(ConfigError, match="overrides.data"):
        validate(cfg)


def test_one_clean_classifier_serves_stl_denoise_and_joint_and_every_sigma(tmp_path: Path) -> None:
    cache = [f"paths.cache_dir={tmp_path}/cache", "denoiser.depth=2", "denoiser.width=8"]
    stl = run_config(compose_cfg([*SMALL, *cache, "strategy=student_teacher"]), tmp_path / "stl", "g")
    assert stl["stages"]["teacher"]["source"] == "train"
    clean_key = stl["stages"]["teacher"]["key"]
    frozen = run_config(compose_cfg([*SMALL, *cache, "strategy=denoise_frozen"]), tmp_path / "df", "g")
    assert frozen["stages"]["classifier"]["source"] == "cache"
    assert frozen["stages"]["classifier"]["key"] == clean_key
    joint = run_config(compose_cfg([*SMALL, *cache, "strategy=joint"]), tmp_path / "joint", "g")
    assert joint["stages"]["classifier"]["source"] == "cache"
    assert joint["stages"]["denoiser"]["source"] == "cache"  # denoise_frozen's MSE denoiser
    # a `clean` run is the same network again, at any sigma; its test still runs at its own sigma
    for sigma in (0.1, 0.3):
        run = run_config(
            compose_cfg([*SMALL, *cache, "strategy=clean", f"noise.sigma={sigma}"]),
            tmp_path / f"c{sigma}",
            "g",
        )
        assert run["stages"]["main"]["source"] == "cache" and run["stages"]["main"]["key"] == clean_key
        assert run["noise"]["level"] == sigma
        # the reused network's training cost is carried into the run's record (compute accounting)
        assert run["stages"]["main"]["fit_seconds"] == stl["stages"]["teacher"]["fit_seconds"]


def test_compiled_weights_load_into_an_uncompiled_network() -> None:
    net = classifier("resnet20", 10, (0.5,) * 3, (0.25,) * 3)
    compiled = torch.compile(net)  # the wrapper only; nothing is traced until it is called
    state = net_state_dict(compiled)
    assert not any(k.startswith("_orig_mod.") for k in state)
    fresh = classifier("resnet20", 10, (0.5,) * 3, (0.25,) * 3)
    fresh.load_state_dict(state)
    # a net.pt written by an older ssd from a compiled network (prefixed names) loads too
    legacy = {f"_orig_mod.{k}": v for k, v in compiled.state_dict().items() if not k.startswith("_orig_mod.")}
    legacy = legacy or dict(compiled.state_dict())
    path = Path(__import__("tempfile").mkdtemp()) / "net.pt"
    torch.save(legacy, path)
    other = classifier("resnet20", 10, (0.5,) * 3, (0.25,) * 3)
    load_net_weights(other, path)
    assert all(
        torch.equal(a, b) for a, b in zip(other.state_dict().values(), net.state_dict().values(), strict=True)
    )
