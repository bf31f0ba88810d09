"""The ``debug`` presets (conf/debug/): each composes to what it promises, keeps its run apart from
real results, turns the stage cache off and says so (issue 20 item 3)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from ssd.paths import conf_dir
from tests.helpers import ONE_THREAD, compose_cfg, run_cli

PRESETS = ("tiny", "fdr", "profile", "overfit")


def test_every_preset_is_offered() -> None:
    offered = {p.stem for p in (conf_dir() / "debug").glob("*.yaml")} - {"default"}
    assert offered == set(PRESETS)


@pytest.mark.parametrize("preset", PRESETS)
def test_a_preset_never_touches_the_cache_and_runs_apart(preset: str, tmp_path) -> None:
    cfg = compose_cfg([f"debug={preset}"], tmp_path, return_hydra=True)
    assert cfg.cache == "off"
    assert list(cfg.logger) == ["csv"]  # no W&B run for a debug run
    assert OmegaConf.select(cfg, "hydra.callbacks.debug_notice._target_") == "ssd.console.DebugNotice"
    assert OmegaConf.to_container(cfg.hydra.run)["dir"].startswith("${paths.log_dir}/debug/")


@pytest.mark.parametrize(
    ("preset", "trainer"),
    [
        ("tiny", {"max_epochs": 1, "accelerator": "cpu"}),
        ("fdr", {"fast_dev_run": True}),
        ("profile", {"max_epochs": 1, "profiler": "simple"}),
        ("overfit", {"max_epochs": 20, "overfit_batches": 3}),
    ],
)
def test_each_preset_sets_its_trainer(preset: str, trainer: dict, tmp_path) -> None:
    cfg = compose_cfg([f"debug={preset}"], tmp_path)
    assert {k: cfg.trainer[k] for k in trainer} == trainer
    if preset == "tiny":
        assert cfg.data.name == "synthetic" and cfg.data.train == 64
    if preset == "overfit":
        assert cfg.callbacks.best_checkpoint is None


def test_a_debug_run_says_so_and_stores_nothing_in_the_cache(tmp_path) -> None:
    if "cache" not in compose_cfg([], tmp_path):
        pytest.skip("needs the `cache: off|read|readwrite` key (branch `cache`, issue 20)")
    proc = run_cli(["debug=tiny", "strategy=self_distill"], tmp_path, env=ONE_THREAD)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert out.count("debug=tiny: a debug run; stage cache off") == 1
    assert list((tmp_path / "outputs" / "debug").glob("debug-self_distill/*/results.json"))
    assert not (tmp_path / "outputs" / "runs").exists()
    assert not list((tmp_path / "cache").rglob("net.pt"))  # nothing published
