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
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from filelock import BaseFileLock, FileLock, SoftFileLock

from ssd.results import dir_mode, read_json, write_json_atomic

log = logging.getLogger(__name__)

#: a stage's weights: its network, and beside it what else its evaluation needs (an EMA teacher), if anything
NET_FILE, EXTRA_FILE = "net.pt", "extra.pt"
#: ``paths.cache_lock`` values: the lock class of each
LOCKS: dict[str, type[BaseFileLock]] = {"file": FileLock, "soft": SoftFileLock}


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
        return LOCKS[self.lock_kind](str(self.root / f"{name}.lock"), timeout=self.lock_timeout_s)

    def lookup(self, name: str) -> dict[str, Any] | None:
        """The entry's metadata (with ``net`` = path of the weights) if it is complete and intact."""
        folder = self.entry(name)
        if not folder.exists():
            return None
        meta = read_json(folder / "meta.json")
        weights, extra = folder / NET_FILE, folder / EXTRA_FILE
        intact = meta is not None and weights.exists() and sha256_file(weights) == meta.get("sha256")
        if intact and meta.get("extra_sha256") is not None:
            intact = extra.exists() and sha256_file(extra) == meta["extra_sha256"]
        if not intact:
            aside = folder.with_name(f"{folder.name}.corrupt-{int(time.time())}")
            log.warning(
                "stage cache: entry %s is incomplete or corrupt; moved to %s and retraining", folder, aside
            )
            os.replace(folder, aside)
            return None
        return {**meta, "net": str(weights)}

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
