"""The stage key is deny-by-default: every config key and the training code are in it, less a tested list."""

from __future__ import annotations

import copy
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

import ssd.stages
from ssd.stages import KEY_EXCLUDED, TRAINING_SOURCES, code_files, key_config, stage_config, stage_key
from tests.helpers import SMALL, compose_cfg

pytestmark = pytest.mark.usefixtures("one_thread")


def resolved(*overrides: str) -> dict[str, Any]:
    return OmegaConf.to_container(compose_cfg([*SMALL, *overrides]), resolve=True)


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    return resolved("strategy=vanilla")


def key(cfg: dict[str, Any]) -> str:
    return stage_key(cfg, {}, {"content": "x", "splits": {"train": 64}})


def test_a_brand_new_config_key_is_in_the_key_by_default(base: dict[str, Any]) -> None:
    assert key(resolved("strategy=vanilla", "+trainer.foo=1")) != key(base)
    assert key(resolved("strategy=vanilla", "+data.bar=2")) != key(base)
    assert key(resolved("strategy=vanilla", "+strategy.baz=3")) != key(base)


@pytest.mark.parametrize(
    "override",
    [
        "+trainer.fast_dev_run=true",
        "+trainer.max_steps=3",
        "+trainer.accumulate_grad_batches=2",
        "+trainer.max_time=00:00:01:00",
        "trainer.limit_train_batches=0.5",
        "trainer.check_val_every_n_epoch=2",
        "deterministic=true",
        "trainer.precision=bf16-mixed",
        "init_from=/some/net.pt",
    ],
)
def test_settings_that_change_the_weights_change_the_key(base: dict[str, Any], override: str) -> None:
    assert key(resolved("strategy=vanilla", override)) != key(base), override


@pytest.mark.parametrize("dotted", sorted(KEY_EXCLUDED))
def test_each_excluded_key_leaves_the_key_alone(base: dict[str, Any], dotted: str) -> None:
    """Every entry of the exclusion list is a real path of the config (or hydra's) and is ignored."""
    changed = copy.deepcopy(base)
    *parents, leaf = dotted.split(".")
    node = changed
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = {"changed": 1}
    assert key(changed) == key(base)
    assert dotted.split(".")[0] in base or dotted in ("hydra", "cache"), f"{dotted} names no config key"


def test_the_teacher_of_a_student_sweep_is_shared_and_noise_free_stages_ignore_noise() -> None:
    cfg = resolved("strategy=self_distill")
    teacher = stage_config(cfg, cfg["strategy"]["teacher"])
    other = resolved("strategy=self_distill", "strategy.lambda=0.5", "logger=csv", "data.eval_batch_size=16")
    assert key(stage_config(other, other["strategy"]["teacher"])) == key(teacher)
    clean = resolved("strategy=clean")
    assert "noise" not in key_config(clean) and "denoiser" not in key_config(clean)
    assert key(resolved("strategy=clean", "noise.sigma=0.3")) == key(clean)


def test_an_edited_loss_gets_a_different_key(
    base: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy of ssd's training source stands in for the package; multiplying the feature loss changes the key."""
    copy_dir = tmp_path / "ssd"
    for rel in TRAINING_SOURCES:
        src = ssd.stages.PACKAGE_DIR / rel
        (copy_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, copy_dir / rel, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copyfile(src, copy_dir / rel)
    monkeypatch.setattr(ssd.stages, "PACKAGE_DIR", copy_dir)
    files = code_files(base)
    assert copy_dir / "strategies" / "losses.py" in files and copy_dir / "fit.py" in files
    before = key(base)
    losses = copy_dir / "strategies" / "losses.py"
    losses.write_text(losses.read_text() + "\n# loss * 100\n")
    assert key(base) != before


def test_a_user_module_reached_by_target_is_in_the_key(
    base: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "my_ssd_models.py"
    module.write_text("from ssd.models import resnet20 as net\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("my_ssd_models", None)
    cfg = copy.deepcopy(base)
    cfg["model"] = {"_target_": "my_ssd_models.net"}
    assert module.resolve() in code_files(cfg)
    before = key(cfg)
    module.write_text("from ssd.models import resnet20 as net  # edited\n")
    assert key(cfg) != before
    # torch and ssd targets are covered by their versions and TRAINING_SOURCES, not hashed again
    assert all("torch" not in p.parts for p in code_files(base))


def test_init_from_keys_the_main_stage_but_not_its_teacher() -> None:
    plain = resolved("strategy=self_distill")
    started = resolved("strategy=self_distill", "init_from=/some/net.pt")
    assert key(started) != key(plain)
    assert key(stage_config(started, started["strategy"]["teacher"])) == key(
        stage_config(plain, plain["strategy"]["teacher"])
    )
