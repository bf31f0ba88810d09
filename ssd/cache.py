"""A shared cache of trained stages (teachers, denoisers, clean classifiers).

An entry is a folder ``<root>/<name>/`` holding ``net.pt`` (the network's state_dict)
and ``meta.json`` (key, config, metrics, sha256 of ``net.pt``). Entries appear
atomically (written to a temporary folder, then renamed), and a file lock per key makes
concurrent sweep jobs - also on different nodes of a shared file system - train a
stage once: the first takes the lock and trains, the others wait and then hit.
A corrupt or half-written entry is detected by its checksum, moved aside and retrained.
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

from filelock import FileLock

from ssd.results import read_json, write_json_atomic

log = logging.getLogger(__name__)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class StageCache:
    """Trained stages by key under ``root``."""

    def __init__(self, root: str | Path, lock_timeout_s: float = 7 * 24 * 3600):
        self.root = Path(root)
        self.lock_timeout_s = lock_timeout_s

    def entry(self, name: str) -> Path:
        return self.root / name

    def lock(self, name: str) -> FileLock:
        """A lock held while one process trains ``name``; waits (does not fail) while another holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / f"{name}.lock"), timeout=self.lock_timeout_s)

    def lookup(self, name: str) -> dict[str, Any] | None:
        """The entry's metadata (with ``net`` = path of the weights) if it is complete and intact."""
        folder = self.entry(name)
        if not folder.exists():
            return None
        meta = read_json(folder / "meta.json")
        weights = folder / "net.pt"
        if meta is None or not weights.exists() or sha256_file(weights) != meta.get("sha256"):
            aside = folder.with_name(f"{folder.name}.corrupt-{int(time.time())}")
            log.warning(
                "stage cache: entry %s is incomplete or corrupt; moved to %s and retraining", folder, aside
            )
            os.replace(folder, aside)
            return None
        return {**meta, "net": str(weights)}

    def publish(self, name: str, weights: str | Path, meta: dict[str, Any]) -> Path:
        """Copy ``weights`` into a new entry ``name`` atomically; return the entry folder."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=self.root))
        try:
            shutil.copyfile(weights, tmp / "net.pt")
            write_json_atomic(tmp / "meta.json", {**meta, "sha256": sha256_file(tmp / "net.pt")})
            final = self.entry(name)
            if final.exists():  # only reachable for a corrupt entry replaced under the lock
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("stage cache: stored %s", final)
        return final
