"""A shared cache of trained stages (teachers, denoisers, clean classifiers).

An entry is a folder ``<root>/<name>/`` holding ``net.pt`` (the network's state_dict), where
the stage's evaluation needs more (an EMA teacher) ``extra.pt``, and ``meta.json`` (key, config,
metrics, sha256 of each weights file). Entries appear
atomically (written to a temporary folder, then renamed), and a file lock per key makes
concurrent sweep jobs - also on different nodes of a shared file system - train a
stage once: the first takes the lock and trains, the others wait and then hit.
A corrupt or half-written entry is detected by its checksum, moved aside and retrained.
Weights holding NaN or inf are refused: a diverged stage must never become a teacher.

``lock="soft"`` (``paths.cache_lock=soft``) uses marker files instead of ``fcntl`` locks, for
shared file systems without working POSIX locks (some NFS and Lustre mounts).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from filelock import BaseFileLock, FileLock, SoftFileLock, Timeout

from ssd.results import dir_mode, read_json, write_json_atomic

log = logging.getLogger(__name__)

#: a stage's weights: its network, and beside it what else its evaluation needs (an EMA teacher), if anything
NET_FILE, EXTRA_FILE = "net.pt", "extra.pt"
#: ``paths.cache_lock`` values: the lock class of each
LOCKS: dict[str, type[BaseFileLock]] = {"file": FileLock, "soft": SoftFileLock}
#: beside ``<name>.lock``: who holds it (pid, host, since), written by the holder, read by a waiter
HOLDER_SUFFIX = ".holder.json"
#: the ``cache`` switch of a run: off (neither read nor write), read (use entries, store none), readwrite
CACHE_MODES = ("off", "read", "readwrite")


class NonFiniteWeights(ValueError):
    """Weights with NaN or inf values: the stage diverged and must not be stored or reused."""


def non_finite_tensors(state: Any, prefix: str = "") -> list[str]:
    """Names of the floating-point tensors in a (nested) state dict that hold NaN or inf."""
    if isinstance(state, torch.Tensor):
        bad = state.is_floating_point() and not bool(torch.isfinite(state).all())
        return [prefix or "<tensor>"] if bad else []
    if isinstance(state, dict):
        return [n for k, v in state.items() for n in non_finite_tensors(v, f"{prefix}{k}.")]
    return []


def check_finite_weights(path: str | Path) -> None:
    """Raise NonFiniteWeights when the weights file ``path`` holds any NaN or inf value."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    bad = [name.rstrip(".") for name in non_finite_tensors(state)]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise NonFiniteWeights(f"{path}: non-finite (NaN/inf) values in {len(bad)} tensor(s): {shown}")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe_entry(meta: dict[str, Any]) -> str:
    """When and by which code an entry was trained: ``trained 2026-01-02T03:04:05 by commit 1a2b3c4d (dirty)``."""
    source = meta.get("source") or {}
    commit = source.get("commit")
    by = (
        "an unknown commit (trained outside git, or by an older ssd)"
        if not commit
        else f"commit {commit[:10]}"
    )
    if commit and source.get("dirty"):
        by += " (dirty: uncommitted changes)"
    return f"trained {meta.get('created', 'at an unknown time')} by {by}"


def holder_alive(holder: dict[str, Any]) -> bool | None:
    """Whether the process a holder record names still runs (None: it is on another host)."""
    if holder.get("host") != socket.gethostname():
        return None
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, TypeError, ValueError):
        return True
    return True


class StageCache:
    """Trained stages by key under ``root``."""

    def __init__(self, root: str | Path, lock_timeout_s: float = 7 * 24 * 3600, lock: str = "file"):
        if lock not in LOCKS:
            raise ValueError(f"paths.cache_lock={lock!r} is not allowed: must be one of {', '.join(LOCKS)}")
        self.root = Path(root)
        self.lock_timeout_s = lock_timeout_s
        self.lock_kind = lock

    def entry(self, name: str) -> Path:
        return self.root / name

    def lock(self, name: str) -> BaseFileLock:
        """A lock held while one process trains ``name``; waits (does not fail) while another holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        return LOCKS[self.lock_kind](str(self.lock_path(name)), timeout=self.lock_timeout_s)

    def lock_path(self, name: str) -> Path:
        return self.root / f"{name}.lock"

    def acquire(self, lock: BaseFileLock, name: str) -> None:
        """Take ``lock`` (of entry ``name``); when another run holds it, say so once, naming the holder
        (pid, host, since when), then wait. The holder record is written once the lock is ours."""
        try:
            lock.acquire(timeout=0)
        except Timeout:
            holder = read_json(Path(f"{self.lock_path(name)}{HOLDER_SUFFIX}")) or {}
            who = (
                f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"
                if holder
                else "another run (no holder record)"
            )
            log.info("stage cache: waiting for %s, which %s is training", name, who)
            lock.acquire()
        write_json_atomic(
            Path(f"{self.lock_path(name)}{HOLDER_SUFFIX}"),
            {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S")},
        )

    def release(self, lock: BaseFileLock, name: str) -> None:
        """Give ``lock`` back (after removing the holder record it wrote)."""
        if lock.is_locked:
            Path(f"{self.lock_path(name)}{HOLDER_SUFFIX}").unlink(missing_ok=True)
            lock.release()

    def problem(self, name: str) -> str | None:
        """What is wrong with entry ``name`` (re-hashing its files), or None when it is complete and intact."""
        folder = self.entry(name)
        meta = read_json(folder / "meta.json")
        if meta is None:
            return "no readable meta.json"
        for file, field in ((NET_FILE, "sha256"), (EXTRA_FILE, "extra_sha256")):
            if field == "extra_sha256" and meta.get(field) is None:
                continue
            if not (folder / file).is_file():
                return f"{file} is missing"
            if sha256_file(folder / file) != meta.get(field):
                return f"{file} does not match its sha256 in meta.json (truncated or changed)"
        return None

    def entries(self) -> list[str]:
        """The names of the entries (folders) in the cache, sorted; temporary and set-aside folders excluded."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and not p.name.startswith(".") and ".corrupt-" not in p.name
        )

    def lookup(self, name: str, repair: bool = True) -> dict[str, Any] | None:
        """The entry's metadata (with ``net`` = path of the weights) if it is complete and intact.

        A corrupt entry is a miss; ``repair`` moves it aside (to ``<name>.corrupt-<time>``) to be retrained."""
        folder = self.entry(name)
        if not folder.exists():
            return None
        problem = self.problem(name)
        if problem is not None:
            if not repair:
                log.warning(
                    "stage cache: entry %s is incomplete or corrupt (%s); not using it", folder, problem
                )
                return None
            aside = folder.with_name(f"{folder.name}.corrupt-{int(time.time())}")
            log.warning(
                "stage cache: entry %s is incomplete or corrupt (%s); moved to %s and retraining",
                folder,
                problem,
                aside,
            )
            os.replace(folder, aside)
            return None
        return {**read_json(folder / "meta.json"), "net": str(folder / NET_FILE)}

    def publish(self, name: str, weights: str | Path, meta: dict[str, Any]) -> Path:
        """Copy ``weights`` (and an ``extra.pt`` beside it) into a new entry ``name`` atomically; return
        the entry folder.

        Raises NonFiniteWeights (nothing is written) when the weights hold NaN or inf.
        """
        check_finite_weights(weights)
        extra = Path(weights).parent / EXTRA_FILE
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=self.root))
        try:
            os.chmod(tmp, dir_mode())  # mkdtemp makes it owner-only; a group may share the cache
            shutil.copyfile(weights, tmp / NET_FILE)
            sums = {"sha256": sha256_file(tmp / NET_FILE)}
            if extra.is_file():
                check_finite_weights(extra)
                shutil.copyfile(extra, tmp / EXTRA_FILE)
                sums["extra_sha256"] = sha256_file(tmp / EXTRA_FILE)
            write_json_atomic(tmp / "meta.json", {**meta, **sums})
            final = self.entry(name)
            if final.exists():  # only reachable for a corrupt entry replaced under the lock
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("stage cache: stored %s", final)
        return final

    def try_publish(self, name: str, weights: str | Path, meta: dict[str, Any]) -> Path | None:
        """``publish``, best effort: when the cache cannot be written (read-only, full, gone), log a
        warning and return None, so a finished run keeps its own result. Non-finite weights still raise."""
        try:
            return self.publish(name, weights, meta)
        except OSError as err:
            log.warning("stage cache not updated: %s was not stored in %s (%s)", name, self.root, err)
            return None
