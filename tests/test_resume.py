"""Resuming: a run killed mid-training and re-run into its folder ends exactly where an
uninterrupted run with the same seed ends (same weights, same metrics)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from ssd.callbacks import FailAtEpoch
from ssd.data.protocol import DataFacts
from ssd.parts import build_strategy
from ssd.results import read_json
from ssd.run import run_config
from tests.helpers import ONE_THREAD, SMALL, TINY, compose_cfg, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see tests.helpers.ONE_THREAD

RESUMABLE = [*SMALL, "data.val_size=16", "trainer.max_epochs=2"]


def _weights_equal(a: Path, b: Path) -> bool:
    sa, sb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _checkpoint_epoch(run_dir: Path) -> int:
    return int(
        torch.load(run_dir / "main" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)[
            "epoch"
        ]
    )


def test_killed_run_resumes_to_the_same_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = compose_cfg(RESUMABLE, tmp_path)
    straight = run_config(cfg.copy(), tmp_path / "straight", "g")

    killed_dir = tmp_path / "killed"
    # its own stage cache: with the straight run's, the killed run would find the network there and not train
    cfg = compose_cfg([*RESUMABLE, f"paths.cache_dir={tmp_path}/cache_killed"], tmp_path)
    monkeypatch.setenv(FailAtEpoch.ENV, "1")
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_config(cfg.copy(), killed_dir, "g")
    assert read_json(killed_dir / "results.json")["status"] == "failed"
    assert _checkpoint_epoch(killed_dir) == 0  # the epoch before the crash is on disk

    monkeypatch.delenv(FailAtEpoch.ENV)
    resumed = run_config(cfg.copy(), killed_dir, "g")
    assert resumed["stages"]["main"]["resumed_from"] == str(killed_dir / "main" / "checkpoints" / "last.ckpt")
    assert resumed["stages"]["main"]["epochs"] == straight["stages"]["main"]["epochs"] == 2
    for key in ("test_acc", "clean_acc", "robustness"):
        assert resumed[key] == straight[key], key
    assert _weights_equal(killed_dir / "main" / "net.pt", tmp_path / "straight" / "main" / "net.pt")


def test_training_noise_stream_is_rederived_per_epoch(tmp_path: Path) -> None:
    """The noise of epoch k does not depend on whether epochs < k ran in this process."""
    container = OmegaConf.to_container(compose_cfg(TINY, tmp_path), resolve=True)
    facts = DataFacts(4, 16, (0.5,) * 3, (0.25,) * 3)
    x = torch.full((2, 3, 16, 16), 0.5)

    def draw(epochs: list[int], rank: int = 0) -> torch.Tensor:
        module = build_strategy(container, facts, {}, seed=7)
        fake = SimpleNamespace(current_epoch=0, global_rank=rank)
        module.trainer = fake  # add_noise reads current_epoch and global_rank from it
        out = None
        for epoch in epochs:
            fake.current_epoch = epoch
            out = module.add_noise(x)
        return out

    direct = draw([2])
    assert torch.equal(draw([0, 1, 2]), direct)
    assert not torch.equal(draw([1]), direct)
    assert not torch.equal(draw([2], rank=1), direct)


@pytest.mark.slow
@pytest.mark.ddp
def test_killed_ddp_run_resumes_to_the_same_result(tmp_path: Path) -> None:
    """The same with 2 processes: every rank's streams are re-derived, not only rank 0's."""
    args = [*RESUMABLE, "trainer.devices=2", "data.val_size=0"]
    straight = run_cli(
        [*args, f"hydra.run.dir={tmp_path / 'straight'}"], tmp_path, timeout=300, env=ONE_THREAD
    )
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed = [*args, f"hydra.run.dir={tmp_path / 'killed'}", f"paths.cache_dir={tmp_path}/cache_killed"]
    crashed = run_cli(killed, tmp_path, timeout=300, env={**ONE_THREAD, FailAtEpoch.ENV: "1"})
    assert crashed.returncode != 0 and read_json(tmp_path / "killed" / "results.json")["status"] == "failed"
    assert _checkpoint_epoch(tmp_path / "killed") == 0  # saved without validation too
    resumed = run_cli(killed, tmp_path, timeout=300, env=ONE_THREAD)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = read_json(tmp_path / "straight" / "results.json"), read_json(tmp_path / "killed" / "results.json")
    assert b["stages"]["main"]["resumed_from"] and b["stages"]["main"]["world_size"] == 2
    for key in ("test_acc", "clean_acc", "robustness"):
        assert a[key] == b[key], key
    assert _weights_equal(tmp_path / "killed" / "main" / "net.pt", tmp_path / "straight" / "main" / "net.pt")


# ------------------------------------------------------------------ a folder holds one config


def _stage_entries(tmp_path: Path) -> list[str]:
    stages = tmp_path / "cache" / "stages"
    return sorted(p.name for p in stages.iterdir() if p.is_dir()) if stages.exists() else []


def test_resume_after_a_config_change_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A killed sigma=0.1 run re-run with sigma=0.3 must not resume the 0.1 checkpoint (nor publish it as 0.3)."""
    from ssd.config import ConfigError

    run_dir = tmp_path / "run"
    monkeypatch.setenv(FailAtEpoch.ENV, "1")
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_config(compose_cfg(RESUMABLE, tmp_path), run_dir, "g")
    monkeypatch.delenv(FailAtEpoch.ENV)
    resolved = (run_dir / "config.resolved.yaml").read_text()

    changed = compose_cfg([*RESUMABLE, "noise.sigma=0.3"], tmp_path)
    with pytest.raises(ConfigError, match=r"noise\.sigma: 0\.1 there, 0\.3 now") as err:
        run_config(changed, run_dir, "g")
    assert "resume=false" in str(err.value) and "hydra.run.dir" in str(err.value)
    assert _stage_entries(tmp_path) == []  # nothing published
    assert (run_dir / "config.resolved.yaml").read_text() == resolved  # never a config that did not run
    assert read_json(run_dir / "results.json")["status"] == "failed"  # the crash, unchanged

    # launch-only keys may change: the same run resumes on other hardware or with another logger
    done = run_config(compose_cfg([*RESUMABLE, "logger=csv", "trainer.devices=1"], tmp_path), run_dir, "g")
    assert done["status"] == "complete" and done["stages"]["main"]["resumed_from"]


def test_complete_folder_with_another_config_is_refused_then_superseded(tmp_path: Path) -> None:
    from ssd.config import ConfigError

    run_dir = tmp_path / "run"
    first = run_config(compose_cfg(SMALL, tmp_path), run_dir, "g")
    assert first["status"] == "complete"
    with pytest.raises(ConfigError, match=r"strategy\.name: 'vanilla' there, 'clean' now"):
        run_config(compose_cfg([*SMALL, "strategy=clean", "noise.sigma=0.5"], tmp_path), run_dir, "g")
    assert read_json(run_dir / "results.json")["test_acc"] == first["test_acc"]  # untouched

    # resume=false starts over: the earlier run is moved aside and marked superseded first
    again = run_config(
        compose_cfg([*SMALL, "strategy=clean", "noise.sigma=0.5", "resume=false"], tmp_path), run_dir, "g"
    )
    assert again["status"] == "complete" and again["strategy"] == "clean"
    (aside,) = run_dir.glob("superseded-*")
    old = read_json(aside / "results.json")
    assert old["status"] == "superseded" and old["superseded_status"] == "complete"
    assert old["test_acc"] == first["test_acc"] and (aside / "main" / "net.pt").exists()
    assert read_json(run_dir / "run.json")["config"]["strategy"]["name"] == "clean"


def test_resume_false_marks_the_old_result_before_anything_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resume=false rerun killed early never leaves the old "complete" beside its own partial files."""
    run_dir = tmp_path / "run"
    run_config(compose_cfg(RESUMABLE, tmp_path), run_dir, "g")
    monkeypatch.setenv(FailAtEpoch.ENV, "1")
    fresh = compose_cfg([*RESUMABLE, "resume=false", f"paths.cache_dir={tmp_path}/cache2"], tmp_path)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_config(fresh, run_dir, "g")
    assert read_json(run_dir / "results.json")["status"] == "failed"
    assert [read_json(p / "results.json")["status"] for p in run_dir.glob("superseded-*")] == ["superseded"]
