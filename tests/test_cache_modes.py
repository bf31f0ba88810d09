"""The per-run switch cache=off|read|readwrite, the line a cache hit prints, and the lock-wait line."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from ssd.cache import StageCache, describe_entry
from ssd.config import ConfigError
from ssd.run import run_config
from ssd.validate import validate
from tests.helpers import ONE_THREAD, SMALL, compose_cfg, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")


def entries(tmp_path: Path) -> list[str]:
    return StageCache(tmp_path / "cache" / "stages").entries()


def test_read_reuses_and_stores_nothing_off_neither_and_a_hit_says_what_it_reused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = run_config(compose_cfg([*SMALL, "strategy=vanilla"], tmp_path), tmp_path / "a", "g")
    assert first["stages"]["main"]["source"] == "train" and len(entries(tmp_path)) == 1
    with caplog.at_level(logging.INFO, logger="ssd.pipeline"):
        read = run_config(
            compose_cfg([*SMALL, "strategy=vanilla", "cache=read"], tmp_path), tmp_path / "b", "g"
        )
    assert read["stages"]["main"]["source"] == "cache"
    line = next(r.getMessage() for r in caplog.records if "reusing" in r.getMessage())
    assert first["stages"]["main"]["name"] in line and "as the main: trained 20" in line and " by " in line
    # off: trains although the entry is there; read with a miss trains and stores nothing
    off = run_config(compose_cfg([*SMALL, "strategy=vanilla", "cache=off"], tmp_path), tmp_path / "c", "g")
    assert off["stages"]["main"]["source"] == "train"
    miss = run_config(
        compose_cfg([*SMALL, "strategy=vanilla", "seed=1", "cache=read"], tmp_path), tmp_path / "d", "g"
    )
    assert miss["stages"]["main"]["source"] == "train"
    assert len(entries(tmp_path)) == 1


def test_describe_entry_names_the_commit_and_dirty_flag() -> None:
    meta = {"created": "2026-01-02T03:04:05", "source": {"commit": "1a2b3c4d5e6f7a8b", "dirty": True}}
    assert (
        describe_entry(meta)
        == "trained 2026-01-02T03:04:05 by commit 1a2b3c4d5e (dirty: uncommitted changes)"
    )
    assert "unknown commit" in describe_entry({"created": "x"})


def test_a_bad_cache_value_is_a_config_error_naming_the_allowed_ones() -> None:
    with pytest.raises(
        ConfigError, match=r"cache='sometimes' is not allowed: must be one of off, read, readwrite"
    ):
        validate(compose_cfg([*SMALL, "cache=sometimes"]))


@pytest.mark.slow  # a subprocess importing torch; the in-process tests cover the logic
def test_a_bad_cache_value_exits_2_before_data_is_read(tmp_path: Path) -> None:
    proc = run_cli([*SMALL, "data.train=64", "cache=sometimes"], tmp_path, env=ONE_THREAD)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "off, read, readwrite" in proc.stderr + proc.stdout


@pytest.mark.parametrize("kind", ["file", "soft"])
def test_a_wait_for_a_lock_names_its_holder_once(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = StageCache(tmp_path / "stages", lock=kind)
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        lock = cache.lock("vanilla-k")
        cache.acquire(lock, "vanilla-k")
        held.set()
        time.sleep(0.4)
        cache.release(lock, "vanilla-k")
        done.set()

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait()
    waiter = cache.lock("vanilla-k")
    with caplog.at_level(logging.INFO, logger="ssd.cache"):
        cache.acquire(waiter, "vanilla-k")
    assert done.is_set()
    lines = [r.getMessage() for r in caplog.records if "waiting for" in r.getMessage()]
    assert len(lines) == 1
    assert f"waiting for vanilla-k, which pid {os.getpid()} on {socket.gethostname()} since 20" in lines[0]
    cache.release(waiter, "vanilla-k")
    thread.join()
    assert not (tmp_path / "stages" / "vanilla-k.lock.holder.json").exists()


def test_the_cache_switch_names_no_job_folder_and_is_not_a_run_folders_identity() -> None:
    from omegaconf import OmegaConf

    from ssd.rundir import run_identity

    cfg = compose_cfg(["cache=read", "seed=3"], return_hydra=True)
    assert cfg.hydra.job.override_dirname == "seed=3"
    read = OmegaConf.to_container(compose_cfg(["cache=read"]), resolve=True)
    both = OmegaConf.to_container(compose_cfg([]), resolve=True)
    assert run_identity(read) == run_identity(both)
