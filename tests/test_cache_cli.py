"""``ssd-cache ls | show | rm | verify | gc`` on a temporary cache."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from ssd.cache import HOLDER_SUFFIX, StageCache
from ssd.cache_cli import main
from tests.helpers import REPO


def publish(cache: StageCache, name: str, tmp_path: Path, value: float = 1.0) -> Path:
    weights = tmp_path / f"{name}.pt"
    torch.save({"w": torch.full((4,), value)}, weights)
    meta = {
        "key": name.rsplit("-", 1)[1],
        "created": "2026-01-02T03:04:05",
        "source": {"commit": "abcdef1234567", "dirty": False},
    }
    return cache.publish(name, weights, meta)


@pytest.fixture
def cache(tmp_path: Path) -> StageCache:
    cache = StageCache(tmp_path / "c" / "stages")
    publish(cache, "vanilla-aaaa1111", tmp_path)
    publish(cache, "clean-bbbb2222", tmp_path, 2.0)
    return cache


def cli(tmp_path: Path, *args: str) -> int:
    return main(["--cache-dir", str(tmp_path / "c"), *args])


def test_ls_and_show(tmp_path: Path, cache: StageCache, capsys: pytest.CaptureFixture) -> None:
    assert cli(tmp_path, "ls") == 0
    out = capsys.readouterr().out
    assert "vanilla-aaaa1111  trained 2026-01-02T03:04:05 by commit abcdef1234" in out
    assert "clean-bbbb2222" in out and "2 entries" in out
    assert cli(tmp_path, "show", "aaaa") == 0  # a prefix of the key
    out = capsys.readouterr().out
    assert out.startswith("vanilla-aaaa1111: trained") and '"sha256"' in out


def test_an_unknown_or_ambiguous_key_exits_2_naming_it(
    tmp_path: Path, cache: StageCache, capsys: pytest.CaptureFixture
) -> None:
    assert cli(tmp_path, "show", "zzzz") == 2
    assert "KEY 'zzzz' matches no entry" in capsys.readouterr().err
    publish(cache, "vanilla-aaaa9999", tmp_path)
    assert cli(tmp_path, "rm", "vanilla-aaaa") == 2
    assert "ambiguous" in capsys.readouterr().err
    assert len(cache.entries()) == 3  # nothing removed


def test_rm_removes_and_is_refused_while_locked(tmp_path: Path, cache: StageCache) -> None:
    assert cli(tmp_path, "rm", "clean-bbbb2222") == 0
    assert cache.entries() == ["vanilla-aaaa1111"]
    lock = cache.lock("vanilla-aaaa1111")
    held, go = threading.Event(), threading.Event()

    def hold() -> None:
        cache.acquire(lock, "vanilla-aaaa1111")
        held.set()
        go.wait()
        cache.release(lock, "vanilla-aaaa1111")

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait()
    try:
        assert cli(tmp_path, "rm", "vanilla-aaaa1111") == 1
    finally:
        go.set()
        thread.join()
    assert cache.entries() == ["vanilla-aaaa1111"]


def test_verify_rehashes_every_entry(
    tmp_path: Path, cache: StageCache, capsys: pytest.CaptureFixture
) -> None:
    assert cli(tmp_path, "verify") == 0
    assert "2 entries verified, 0 bad" in capsys.readouterr().out
    net = cache.entry("clean-bbbb2222") / "net.pt"
    net.write_bytes(net.read_bytes()[:-10])  # truncated
    assert cli(tmp_path, "verify") == 1
    out = capsys.readouterr().out
    assert "BAD  clean-bbbb2222: net.pt does not match its sha256" in out and "ok   vanilla-aaaa1111" in out
    assert net.exists()  # verify reports, it does not delete


def test_gc_removes_leftovers_only(tmp_path: Path, cache: StageCache, capsys: pytest.CaptureFixture) -> None:
    root = cache.root
    (root / "vanilla-x.corrupt-123").mkdir()
    old_tmp, new_tmp = root / ".vanilla-y.abc", root / ".vanilla-z.def"
    old_tmp.mkdir()
    new_tmp.mkdir()  # a publish in progress right now
    os.utime(old_tmp, (time.time() - 7200, time.time() - 7200))
    # a lock whose holder died (a pid that is not running), and a free fcntl lock
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    (root / "vanilla-dead.lock").write_text("")
    Path(f"{root / 'vanilla-dead.lock'}{HOLDER_SUFFIX}").write_text(
        f'{{"pid": {int(dead.stdout)}, "host": "{socket.gethostname()}", "since": "x"}}'
    )
    (root / "clean-free.lock").write_text("")
    assert cli(tmp_path, "gc") == 0
    left = sorted(p.name for p in root.iterdir())
    assert left == [".vanilla-z.def", "clean-bbbb2222", "vanilla-aaaa1111"], left
    assert "4 leftovers removed" in capsys.readouterr().out


def test_gc_keeps_a_soft_lock_of_a_live_holder(tmp_path: Path) -> None:
    cache = StageCache(tmp_path / "c" / "stages", lock="soft")
    lock = cache.lock("vanilla-k")
    cache.acquire(lock, "vanilla-k")
    try:
        assert main(["--cache-dir", str(tmp_path / "c"), "--lock", "soft", "gc"]) == 0
        assert (cache.root / "vanilla-k.lock").exists()
    finally:
        cache.release(lock, "vanilla-k")


@pytest.mark.slow  # a subprocess importing torch; the in-process tests cover the logic
def test_the_module_runs_as_a_command(tmp_path: Path, cache: StageCache) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ssd.cache_cli", "--cache-dir", str(tmp_path / "c"), "ls"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "2 entries" in proc.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "ssd.cache_cli", "frobnicate"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "invalid choice: 'frobnicate'" in bad.stderr
