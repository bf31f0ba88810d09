"""Failures that lose no work: a sweep runs every good job whatever the others do, and sums up."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ssd.rundir import SweepJob, sweep_summary, varying
from tests.helpers import SMALL, read_results, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow  # two sweeps of a 1-epoch job: ~25 s on 2 cores
def test_sweep_with_a_bad_first_job_runs_the_good_ones_and_fails(tmp_path: Path) -> None:
    """``-m seed=-1,0``: the bad job is named before any job starts, seed=0 still runs, the exit is non-zero."""
    done = run_cli(["hydra.mode=MULTIRUN", *SMALL, "sweep_name=s", "seed=-1,0"], tmp_path, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    err = done.stderr
    assert (
        "ssd: sweep job #0 (seed=-1) has a config error and will not run" in err
    )  # SweepCheck, before job #0
    sweep = tmp_path / "outputs" / "multiruns" / "s"
    good = next(p for p in sweep.iterdir() if "seed=0" in p.name)
    bad = next(p for p in sweep.iterdir() if "seed=-1" in p.name)
    assert read_results(good)["status"] == "complete"
    assert read_results(bad)["status"] == "failed" and read_results(bad)["exit_code"] == 2
    assert "ssd: sweep finished: 2 job(s): 1 complete, 1 failed, 0 skipped" in err
    assert "#0 failed (seed=-1): ConfigError: seed=-1 is not allowed" in err
    assert f"next: ssd-report {sweep}" in err
    # the rerun skips the complete job, still fails on the bad one
    again = run_cli(["hydra.mode=MULTIRUN", *SMALL, "sweep_name=s", "seed=-1,0"], tmp_path, timeout=300)
    assert again.returncode == 2 and "0 complete, 1 failed, 1 skipped" in again.stderr


@pytest.mark.slow  # a sweep of two 1- and 2-epoch jobs: ~30 s on 2 cores
def test_a_job_that_crashes_does_not_stop_the_sweep(tmp_path: Path) -> None:
    """A runtime failure (here a simulated crash in epoch 1 of the 2-epoch job) is recorded, the next job
    runs, and the sweep exits 1 with the crash in its summary."""
    env = {"SSD_DEBUG_FAIL_AT_EPOCH": "1"}
    done = run_cli(
        ["hydra.mode=MULTIRUN", *SMALL, "sweep_name=c", "trainer.max_epochs=2,1"], tmp_path, env=env
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert "1 complete, 1 failed, 0 skipped" in done.stderr
    assert "#0 failed (trainer.max_epochs=2): RuntimeError: SSD_DEBUG_FAIL_AT_EPOCH=1" in done.stderr
    sweep = tmp_path / "outputs" / "multiruns" / "c"
    statuses = {
        p.name.split("trainer.max_epochs=")[1][0]: read_results(p)["status"]
        for p in sweep.iterdir()
        if p.is_dir()
    }
    assert statuses == {"2": "failed", "1": "complete"}


def test_sweep_summary_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ok = SweepJob(1, ("seed=0", "x=1"), "complete", "", tmp_path / "a")
    skip = SweepJob(2, ("seed=1", "x=1"), "skipped", "already complete in its folder", tmp_path / "b")
    config = SweepJob(0, ("seed=-1", "x=1"), "failed", "ConfigError: seed=-1 is not allowed", tmp_path / "c")
    crash = SweepJob(3, ("seed=2", "x=1"), "failed", "RuntimeError: boom\nline two", tmp_path / "d")
    assert sweep_summary(tmp_path, [ok, skip]) == 0
    assert sweep_summary(tmp_path, [ok, config]) == 2
    assert sweep_summary(tmp_path, [crash, ok, config]) == 1
    out = capsys.readouterr().err
    assert "#3 failed (seed=2): RuntimeError: boom (more in its results.json)" in out
    assert "1 complete, 2 failed, 0 skipped" in out
    assert varying([["a=1", "b=1"], ["a=1", "b=2"]]) == ["b=1", "b=2"]


COMPOSE_CASES = [
    ("strategy=nope", "strategy=nope is not allowed: must be one of clean, denoise"),
    ("model=resnet99", "model=resnet99 is not allowed: must be one of resnet18, resnet20"),
    ("noise=speckle", "noise=speckle is not allowed: must be one of gaussian, none"),
    ("experiment=cpu_quik", "experiment=cpu_quik is not allowed: must be one of cifar100, cpu_compare"),
    ("optim/scheduler=cosin", "optim/scheduler=cosin is not allowed: must be one of constant, cosine"),
    ("trainer.foo=1", "trainer has no key 'foo'; fix the spelling, or add a new key with +trainer.foo=1"),
    ("data.nope=1", "data has no key 'nope'"),
    ("paths.data_dir=/tmp/a;b", "quote the value: 'paths.data_dir=\"/tmp/a;b\"'"),
    ("paths.data_dir=/tmp/ü", "quote the value: 'paths.data_dir=\"/tmp/ü\"'"),
]


@pytest.mark.parametrize(("override", "said"), COMPOSE_CASES, ids=[c[0] for c in COMPOSE_CASES])
def test_a_command_line_hydra_cannot_compose_is_a_config_error(
    override: str,
    said: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Unknown group options, keys a section lacks without ``+``, overrides Hydra's grammar rejects: exit 2, one line."""
    from ssd.run import main

    monkeypatch.setattr("sys.argv", ["ssd", f"paths.log_dir={tmp_path}", override])
    with pytest.raises(SystemExit) as exited:
        main()
    err = capsys.readouterr().err.strip().splitlines()
    assert exited.value.code == 2
    assert err == [err[-1]] and err[-1].startswith("ssd: config error: ") and said in err[-1], err
    assert not (tmp_path / "runs").exists()


def _disk_full_after(limit: int):
    """A stand-in for a file's ``write`` that fails with ENOSPC once ``limit`` bytes are written."""
    import errno

    written = {"n": 0}

    def write(real_write, data) -> int:
        if written["n"] + len(data) > limit:
            real_write(bytes(data)[: max(0, limit - written["n"])])
            written["n"] = limit
            raise OSError(errno.ENOSPC, "No space left on device")
        written["n"] += len(data)
        return real_write(data)

    return write


@pytest.mark.slow  # one tiny run: ~20 s on 2 busy cores
def test_disk_full_leaves_no_truncated_file_at_a_final_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every file ssd writes goes through ``ssd.results.write_atomic``: with the disk full midway through a
    checkpoint, the run fails, says ``status: failed`` with the reason, and leaves no partial file."""
    import io

    import torch

    import ssd.results
    from ssd.run import run_config
    from tests.helpers import compose_cfg

    real_fdopen = ssd.results.os.fdopen

    def fdopen(fd, mode="r", *args, **kwargs):
        handle = real_fdopen(fd, mode, *args, **kwargs)
        if "b" in mode and "w" in mode:
            full = _disk_full_after(20_000)  # a JSON file fits; a ResNet-20 checkpoint (~1 MB) does not
            real_write = handle.write
            handle.write = lambda data: full(real_write, data)  # type: ignore[method-assign]
        return handle

    monkeypatch.setattr(ssd.results.os, "fdopen", fdopen)
    cfg = compose_cfg([*SMALL, "data.train=32", "data.test=16"], tmp_path)
    run_dir = tmp_path / "run"
    with pytest.raises((OSError, RuntimeError)):  # torch's zip writer reports ENOSPC as a RuntimeError
        run_config(cfg, run_dir, "g")
    monkeypatch.setattr(ssd.results.os, "fdopen", real_fdopen)
    recorded = read_results(run_dir)
    assert recorded["status"] == "failed" and recorded["error"], recorded
    leftovers = [p for p in run_dir.rglob("*") if p.is_file() and p.name.endswith(".tmp")]
    assert leftovers == []
    for weights in [*run_dir.rglob("*.ckpt"), *run_dir.rglob("*.pt")]:
        torch.load(io.BytesIO(weights.read_bytes()), weights_only=False)  # whole, or not there at all


def test_a_damaged_last_checkpoint_falls_back_then_restarts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    import torch

    from ssd.fit import resume_checkpoint

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    torch.save({"epoch": 1}, folder / "best.ckpt")
    torch.save({"epoch": 2, "w": torch.zeros(1000)}, folder / "last.ckpt")
    whole = (folder / "last.ckpt").read_bytes()
    (folder / "last.ckpt").write_bytes(whole[: len(whole) // 2])
    with caplog.at_level(logging.WARNING, logger="ssd.fit"):
        assert resume_checkpoint(folder, "main") == folder / "best.ckpt"
    assert "last.ckpt is damaged" in caplog.text and not (folder / "last.ckpt").exists()
    (folder / "best.ckpt").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="ssd.fit"):
        assert resume_checkpoint(folder, "main") is None
    assert "training restarts from epoch 0" in caplog.text
    assert len(list(folder.glob("*.corrupt-*"))) == 2


@pytest.mark.parametrize("deferred", [False, True])
@pytest.mark.parametrize(
    ("first", "later", "fails"), [(1.0, 1.0, False), (1e6, 1e6, False), (1.0, 1e8, True)]
)
def test_a_huge_finite_loss_fails_the_run(
    tmp_path: Path, deferred: bool, first: float, later: float, fails: bool
) -> None:
    """FiniteLossGuard: a loss DIVERGED_GROWTH times the stage's first (finite) is a diverged run, on the
    per-step and the deferred (accelerator) path alike; a loss that starts huge (raw feature losses) and
    an ordinary one are left alone."""
    import lightning as L
    import torch

    from ssd.callbacks import FiniteLossGuard, TrainingDiverged

    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 2)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.layer(x), y) * (later if batch_idx else first)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    data = torch.utils.data.TensorDataset(torch.randn(16, 4), torch.randint(0, 2, (16,)))
    quiet = dict.fromkeys(
        ("logger", "enable_checkpointing", "enable_progress_bar", "enable_model_summary"), False
    )
    guard = FiniteLossGuard(deferred=deferred, sync_every=1)
    trainer = L.Trainer(
        max_epochs=1, callbacks=[guard], accelerator="cpu", default_root_dir=tmp_path, **quiet
    )
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    if fails:
        with pytest.raises(TrainingDiverged, match=re.escape("x the stage's first loss) training loss")):
            trainer.fit(Tiny(), loader)
    else:
        trainer.fit(Tiny(), loader)


def test_recorded_precision_is_the_one_used() -> None:
    """Lightning runs 16-mixed on a CPU as bf16-mixed; the resolved config (what results.json records) says so."""
    from ssd.validate import resolve_auto
    from tests.helpers import TINY, compose_cfg

    for asked, used in (("16-mixed", "bf16-mixed"), ("16", "bf16-mixed"), ("32-true", "32-true")):
        cfg = compose_cfg([*TINY, f"trainer.precision={asked}"])
        assert resolve_auto(cfg)["trainer"]["precision"] == used


def test_a_limit_the_data_cannot_meet_fails() -> None:
    from types import SimpleNamespace

    from ssd.config import ConfigError
    from ssd.data.splits import check_limits_met

    splits = {"train": 50, "val": 10, "test": 20}
    check_limits_met(SimpleNamespace(limit_train=60, limit_test=20), splits)
    check_limits_met(object(), splits)  # a datamodule without limits
    with pytest.raises(
        ConfigError, match="data.limit_train=61 is not allowed: the data has only 60 training"
    ):
        check_limits_met(SimpleNamespace(limit_train=61, limit_test=None), splits)
    with pytest.raises(ConfigError, match="data.limit_test=1000000 is not allowed: .* only 20 test images"):
        check_limits_met(SimpleNamespace(limit_train=None, limit_test=1_000_000), splits)
