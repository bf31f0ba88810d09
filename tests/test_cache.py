"""The stage cache: hits, misses, corrupt entries, reuse across strategies, and racing processes."""

from __future__ import annotations

import multiprocessing as mp
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

from ssd.cache import StageCache, sha256_file
from ssd.pipeline import Pipeline, load_data
from ssd.stages import data_fingerprint, stage_config, stage_key
from tests.helpers import ONE_THREAD, TINY, compose_cfg, read_results, run_cli

SMALL = [
    "trainer.max_epochs=1",
    "data.train=64",
    "data.test=16",
    "data.val_size=0",
    "noise.eval_levels=[0.1]",
]


def small_cfg(tmp_path: Path, strategy: str, *overrides: str) -> dict[str, Any]:
    cfg = compose_cfg([*TINY, *SMALL, f"strategy={strategy}", *overrides], tmp_path=tmp_path)
    return OmegaConf.to_container(cfg, resolve=True)


def teacher_record(cfg: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Obtain the teacher stage of ``cfg`` into ``run_dir/teacher`` (train, cache or run folder)."""
    pipeline = Pipeline(cfg, run_dir, "test")
    pipeline.datamodule, pipeline.facts = load_data(cfg)
    pipeline.fingerprint = data_fingerprint(pipeline.datamodule)
    _, records = pipeline.required(cfg, run_dir)
    return records["teacher"]


# ---------------------------------------------------------------------------------- StageCache


def write_weights(path: Path, value: float = 1.0) -> Path:
    torch.save({"w": torch.full((4,), value)}, path)
    return path


def test_publish_then_hit(tmp_path: Path) -> None:
    cache = StageCache(tmp_path / "stages")
    assert cache.lookup("teacher-x-1") is None  # miss
    cache.publish(
        "teacher-x-1", write_weights(tmp_path / "net.pt"), {"key": "1", "metrics": {"test/acc": 0.5}}
    )
    hit = cache.lookup("teacher-x-1")
    assert hit is not None and hit["key"] == "1" and hit["metrics"] == {"test/acc": 0.5}
    assert hit["sha256"] == sha256_file(hit["net"]) == sha256_file(tmp_path / "net.pt")
    assert [p.name for p in (tmp_path / "stages").iterdir() if not p.name.endswith(".lock")] == [
        "teacher-x-1"
    ]  # no temp left


@pytest.mark.parametrize("damage", ["bytes", "no_meta", "no_weights"])
def test_corrupt_or_half_written_entry_is_moved_aside(tmp_path: Path, damage: str) -> None:
    cache = StageCache(tmp_path / "stages")
    entry = cache.publish("teacher-x-1", write_weights(tmp_path / "net.pt"), {"key": "1"})
    if damage == "bytes":
        data = bytearray((entry / "net.pt").read_bytes())
        data[-1] ^= 0xFF
        (entry / "net.pt").write_bytes(bytes(data))
    else:
        (entry / ("meta.json" if damage == "no_meta" else "net.pt")).unlink()
    assert cache.lookup("teacher-x-1") is None
    assert not entry.exists()
    assert len(list((tmp_path / "stages").glob("teacher-x-1.corrupt-*"))) == 1
    cache.publish(
        "teacher-x-1", write_weights(tmp_path / "net.pt", 2.0), {"key": "1"}
    )  # retrained, stored again
    assert cache.lookup("teacher-x-1") is not None


# ---------------------------------------------------------------------------------- through the pipeline


def test_teacher_key_depends_on_what_determines_the_teacher(tmp_path: Path) -> None:
    def key(*overrides: str) -> str:
        cfg = small_cfg(tmp_path, "self_distill", *overrides)
        return stage_key(stage_config(cfg, cfg["strategy"]["teacher"]), {}, {})

    base = key()
    # student-side knobs (what a lambda / taps / teacher_input sweep varies) share the teacher
    assert key("strategy.lambda=0.5", "strategy.taps=[layer3]", "strategy.teacher_input=independent") == base
    assert key("trainer.devices=1", "data.eval_batch_size=16", "logger=csv") == base
    # anything that changes the teacher does not
    for changed in (
        "noise.sigma=0.2",
        "seed=1",
        "model=resnet32",
        "trainer.max_epochs=2",
        "strategy.teacher.strategy=clean",
    ):
        assert key(changed) != base, changed
    # a clean teacher never sees noise, so one clean teacher serves every noise level
    assert key("strategy.teacher.strategy=clean", "noise.sigma=0.3") == key("strategy.teacher.strategy=clean")


def test_vanilla_run_serves_as_teacher_then_corrupt_entry_is_retrained(tmp_path: Path) -> None:
    vanilla = small_cfg(tmp_path, "vanilla")
    Pipeline(vanilla, tmp_path / "vanilla", "test").run()
    published = tmp_path / "vanilla" / "main" / "net.pt"

    cfg = small_cfg(tmp_path, "self_distill")
    hit = teacher_record(cfg, tmp_path / "sd1")
    assert hit["source"] == "cache" and hit["sha256"] == sha256_file(published)
    assert hit["test_acc"] is not None and not (tmp_path / "sd1" / "teacher" / "checkpoints").exists()

    entry = Path(hit["net"]).parent
    (entry / "net.pt").write_bytes(b"half written")
    retrained = teacher_record(cfg, tmp_path / "sd2")
    assert retrained["source"] == "train" and retrained["key"] == hit["key"]
    assert len(list(entry.parent.glob(f"{entry.name}.corrupt-*"))) == 1
    assert StageCache(entry.parent).lookup(entry.name)["sha256"] == retrained["sha256"]

    again = teacher_record(cfg, tmp_path / "sd2")  # the same run folder: its own finished stage
    assert again["source"] == "run" and again["sha256"] == retrained["sha256"]


def _quick_train_stage(
    cfg: dict[str, Any],
    stage: str,
    stage_dir: Path,
    datamodule: Any,
    info: Any,
    frozen: Any,
    group: str,
    weights: Any = None,
    label: Any = None,
    frozen_seeds: Any = None,
    **shown: Any,
) -> Any:
    """Stands in for ssd.fit.fit_stage in the race: no fitting, but it holds the lock for a while."""
    from ssd.fit import build_module

    time.sleep(2.0)
    return build_module(cfg, info, frozen, frozen_seeds), {"metrics": {"test/acc": 0.5}, "test_acc": 0.5}


def _obtain_teacher(cfg: dict[str, Any], run_dir: str, barrier: Any, queue: Any) -> None:
    import ssd.pipeline

    ssd.pipeline.fit_stage = _quick_train_stage  # the race is about locking and publishing, not training
    barrier.wait()
    queue.put(teacher_record(cfg, Path(run_dir))["source"])


def test_two_processes_racing_train_one_teacher(tmp_path: Path) -> None:
    cfg = small_cfg(tmp_path, "self_distill")
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(target=_obtain_teacher, args=(cfg, str(tmp_path / f"run{i}"), barrier, queue))
        for i in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    assert sorted(queue.get(timeout=5) for _ in procs) == ["cache", "train"]
    entries = [p for p in (tmp_path / "cache" / "stages").iterdir() if p.is_dir()]
    assert len(entries) == 1 and entries[0].name.startswith("vanilla-")


@pytest.mark.slow
def test_two_cli_jobs_racing_on_one_cache_key(tmp_path: Path) -> None:
    """Two sweep jobs (lambda 0.1 and 0.3) started together: one trains the teacher, the other waits and reuses it."""

    def job(i: int, lam: float) -> subprocess.CompletedProcess:
        args = [
            *TINY,
            *SMALL,
            "strategy=self_distill",
            f"strategy.lambda={lam}",
            f"hydra.run.dir={tmp_path}/job{i}",
        ]
        return run_cli(args, tmp_path, env=ONE_THREAD)

    with ThreadPoolExecutor(max_workers=2) as pool:  # both subprocesses run at once
        done = list(pool.map(job, (0, 1), (0.1, 0.3)))
    assert all(p.returncode == 0 for p in done), [p.stderr[-2000:] for p in done]
    sources = sorted(read_results(tmp_path / f"job{i}")["stages"]["teacher"]["source"] for i in range(2))
    assert sources == ["cache", "train"]
    shas = {read_results(tmp_path / f"job{i}")["stages"]["teacher"]["sha256"] for i in range(2)}
    assert len(shas) == 1


# ---------------------------------------------------------------------------------- what never enters the cache


def test_publish_refuses_non_finite_weights(tmp_path: Path) -> None:
    from ssd.cache import NonFiniteWeights

    cache = StageCache(tmp_path / "stages")
    for bad in (float("nan"), float("inf")):
        with pytest.raises(NonFiniteWeights, match="non-finite"):
            cache.publish("teacher-x-1", write_weights(tmp_path / "net.pt", bad), {"key": "1"})
        with pytest.raises(NonFiniteWeights):  # best effort is about the disk, not about the weights
            cache.try_publish("teacher-x-1", tmp_path / "net.pt", {"key": "1"})
    assert not (tmp_path / "stages").exists()  # refused before anything was written


def test_try_publish_logs_and_returns_none_when_the_cache_cannot_be_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    cache = StageCache(blocker / "stages")  # a folder under a file: every write fails, also for root
    with caplog.at_level("WARNING"):
        assert cache.try_publish("teacher-x-1", write_weights(tmp_path / "net.pt"), {"key": "1"}) is None
    assert "stage cache not updated" in caplog.text and "teacher-x-1" in caplog.text


def test_soft_lock_option(tmp_path: Path) -> None:
    from filelock import SoftFileLock

    cache = StageCache(tmp_path / "stages", lock="soft")
    lock = cache.lock("teacher-x-1")
    assert isinstance(lock, SoftFileLock)
    with lock:
        cache.publish("teacher-x-1", write_weights(tmp_path / "net.pt"), {"key": "1"})
    assert cache.lookup("teacher-x-1") is not None
    with pytest.raises(ValueError, match="paths.cache_lock='nfs' is not allowed"):
        StageCache(tmp_path / "stages", lock="nfs")


def test_entries_and_results_honour_the_umask(tmp_path: Path) -> None:
    """A group-shared cache (umask 002) gets group-writable entries, not mkstemp's owner-only files."""
    import os
    import stat

    from ssd.results import write_json_atomic

    old = os.umask(0o002)
    try:
        entry = StageCache(tmp_path / "stages").publish("teacher-x-1", write_weights(tmp_path / "net.pt"), {})
        written = write_json_atomic(tmp_path / "results.json", {"status": "complete"})
    finally:
        os.umask(old)
    assert stat.S_IMODE(entry.stat().st_mode) == 0o775
    assert stat.S_IMODE((entry / "meta.json").stat().st_mode) == 0o664
    assert stat.S_IMODE((entry / "net.pt").stat().st_mode) == 0o664
    assert stat.S_IMODE(written.stat().st_mode) == 0o664
