"""Resuming: a run killed mid-training and re-run into its folder ends exactly where an
uninterrupted run with the same seed ends (same weights, same metrics)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from ssd.callbacks import FailAtEpoch
from ssd.results import read_json
from ssd.run import train
from ssd.strategies.vanilla import Vanilla
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
    straight = train(cfg.copy(), tmp_path / "straight", "g")

    killed_dir = tmp_path / "killed"
    monkeypatch.setenv(FailAtEpoch.ENV, "1")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg.copy(), killed_dir, "g")
    assert read_json(killed_dir / "results.json")["status"] == "failed"
    assert _checkpoint_epoch(killed_dir) == 0  # the epoch before the crash is on disk

    monkeypatch.delenv(FailAtEpoch.ENV)
    resumed = train(cfg.copy(), killed_dir, "g")
    assert resumed["stages"]["main"]["resumed_from"] == str(killed_dir / "main" / "checkpoints" / "last.ckpt")
    assert resumed["stages"]["main"]["epochs"] == straight["stages"]["main"]["epochs"] == 2
    for key in ("test_acc", "clean_acc", "robustness"):
        assert resumed[key] == straight[key], key
    assert _weights_equal(killed_dir / "main" / "net.pt", tmp_path / "straight" / "main" / "net.pt")


def test_training_noise_stream_is_rederived_per_epoch(tmp_path: Path) -> None:
    """The noise of epoch k does not depend on whether epochs < k ran in this process."""
    container = OmegaConf.to_container(compose_cfg(TINY, tmp_path), resolve=True)
    info = {"num_classes": 4, "mean": [0.5] * 3, "std": [0.25] * 3, "image_size": 16}
    x = torch.full((2, 3, 16, 16), 0.5)

    def draw(epochs: list[int], rank: int = 0) -> torch.Tensor:
        module = Vanilla(container, info)
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
    killed = [*args, f"hydra.run.dir={tmp_path / 'killed'}"]
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
