"""Process-rank facts that are needed before torch.distributed is initialised."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from ssd.results import read_json


def launch_rank() -> int:
    """Global rank of this process as set by the launcher (ssd, Lightning, torchrun or SLURM).

    Before Lightning initialises the process group, this is the only way to know which
    process decides things (cache look-ups, file writes) for the whole DDP group.
    """
    for var in ("RANK", "SLURM_PROCID"):
        if os.environ.get(var) not in (None, ""):
            return int(os.environ[var])
    if os.environ.get("NODE_RANK", "0") not in ("", "0"):
        return 1  # some rank on another node: not the decider
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def is_launch_rank_zero() -> bool:
    return launch_rank() == 0


def wait_for_json(path: Path, timeout_s: float = 3600.0, poll_s: float = 0.2) -> dict[str, Any]:
    """Block until rank 0 has written ``path`` (a decision shared with the other ranks)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        data = read_json(path)
        if data is not None:
            return data
        time.sleep(poll_s)
    raise TimeoutError(f"rank {launch_rank()}: rank 0 did not write {path} within {timeout_s:.0f}s")
