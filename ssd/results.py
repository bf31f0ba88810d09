"""Writing run outputs so that a crash never leaves a half-written file behind."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import IO, Any

PACKAGES = ("ssd", "torch", "torchvision", "lightning", "hydra-core", "omegaconf", "torchmetrics", "wandb")


def current_umask() -> int:
    """The process umask, read without changing it where Linux tells it (``/proc/self/status``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: the only portable way is to set it and put it back
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode ``open()`` gives a new file (0666 minus the umask): what a shared cache needs."""
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """The mode ``mkdir`` gives a new folder (0777 minus the umask)."""
    return 0o777 & ~current_umask()


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """``write(handle)`` into a temporary file in ``path``'s own folder, flushed to disk, then renamed over
    ``path``: ``path`` is the old file or the whole new one, never a part (a full disk included: the
    temporary file is removed and the error raised). The file gets the user's umask like any
    ``open()``ed file (``mkstemp`` alone makes it owner-only, which breaks a shared cache or results folder).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """``obj`` as JSON at ``path``, atomically (``write_atomic``)."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n"
    return write_atomic(path, lambda handle: handle.write(text.encode()))


def read_json(path: str | Path) -> dict[str, Any] | None:
    """The JSON object at ``path``, or None when it is missing or unreadable."""
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_complete_results(run_dir: str | Path) -> dict[str, Any] | None:
    """``results.json`` of a finished run, or None when the run is missing, failed or incomplete."""
    data = read_json(Path(run_dir) / "results.json")
    return data if data and data.get("status") == "complete" else None


def read_status(run_dir: str | Path) -> str | None:
    """The ``status`` of the run in ``run_dir`` (complete, failed, interrupted, superseded), None if none."""
    data = read_json(Path(run_dir) / "results.json")
    return data.get("status") if data else None


def runtime_facts() -> dict[str, Any]:
    """What a bit-exact comparison of two results needs besides the config: torch's thread counts."""
    import torch

    return {
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }


def package_versions() -> dict[str, str]:
    """Versions of the packages that determine a result, plus Python's."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def json_digest(obj: Any, length: int = 16) -> str:
    """A short sha256 of ``obj`` as canonical JSON (sorted keys): equal configs give equal digests."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]
